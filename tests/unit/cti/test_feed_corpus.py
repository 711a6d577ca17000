"""read_feed on the real files of the shared corpus, against the counts of its MANIFEST.md.

How the manifest is read (where it could be read two ways):

* A *record* is what the manifest counts: a STIX object in the bundle / array, a MISP attribute
  (event attributes and object attributes), a CSV data row. Several items may share a record's
  position (a MISP composite, a CSV row with several indicator columns, a STIX OR pattern),
  so records are counted as distinct positions.
* CSV: the column header is not a record, whether it is a plain first row or a ``#`` comment
  (abuse.ch); comment and blank lines are not records; a quoted field spanning lines is one
  record (dearjoohn: 14 physical lines, 9 records).
* STIX: the per-type counts of the manifest are checked against ``context["stix_type"]``; for
  MISP, against ``context["misp_type"]``, the attribute's own type; for the Unit 42
  ``Type,Indicator`` CSV, against the ``Type`` column, which is the items' ``raw_type``.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from phantom_spire.cti.feeds import FeedItem, detect_format, read_feed

pytestmark = pytest.mark.corpus


def _records(items: list[FeedItem], key: str) -> Counter[str]:
    """Count records (distinct positions) by a context key."""
    first_of_each = {item.position: item for item in reversed(items)}
    return Counter(str(item.context.get(key)) for item in first_of_each.values())


STIX_FILES = {
    "stix/oasis_stix21_apt1_report.json": {
        "attack-pattern": 7, "identity": 4, "indicator": 12, "intrusion-set": 1, "malware": 6,
        "relationship": 30, "report": 1, "threat-actor": 5, "tool": 10,
    },
    "stix/oasis_stix21_indicators_c2_with_coa.json": {
        "course-of-action": 1, "identity": 1, "indicator": 2, "malware": 1, "relationship": 3,
    },
    "stix/stix2lib_stix21_sco_examples_bundle.json": {
        "artifact": 3, "autonomous-system": 1, "directory": 3, "domain-name": 3, "email-addr": 6,
        "email-message": 2, "file": 15, "ipv4-addr": 22, "ipv6-addr": 2, "mac-addr": 1,
        "mutex": 1, "network-traffic": 11, "process": 3, "software": 1, "url": 1,
        "user-account": 3, "windows-registry-key": 2, "x509-certificate": 2,
    },
    "stix/validator_stix21_identity_custom_props.json": {"identity": 1},
    "stix/talos_stix20_lazarus_collectionrat.json": {
        "identity": 1, "indicator": 15, "marking-definition": 1, "observed-data": 1, "report": 1,
        "threat-actor": 1, "x-misp-attribute": 3,
    },
    "stix/unit42_stix20_darkgate_2024-03-19.json": {"indicator": 14, "report": 1},
    "stix/mitre_ics_attack_v17.1_stix21.json": {
        "attack-pattern": 95, "campaign": 8, "course-of-action": 52, "identity": 1,
        "intrusion-set": 16, "malware": 30, "marking-definition": 1, "relationship": 1367,
        "x-mitre-asset": 14, "x-mitre-collection": 1, "x-mitre-data-component": 36,
        "x-mitre-data-source": 17, "x-mitre-matrix": 1, "x-mitre-tactic": 12,
    },
}  # fmt: skip

MISP_FILES = {
    "misp/eset_misp_sshdoor_endor.json": {"email-dst": 1, "filename": 7, "sha1": 11, "text": 12},
    "misp/eset_misp_turla_outlook.json": {"filename": 4, "regkey": 3, "sha1": 4, "url": 1},
    "misp/eset_misp_oceanlotus_macos.json": {
        "domain": 3, "filename": 3, "sha1": 1, "text": 1, "uri": 1,
    },
    # 4 event attributes (attachment, comment, link, sha256) + 6 object attributes
    # (datetime, link, md5, sha1, sha256, text).
    "misp/pymisp_event_galaxy_1.json": {
        "attachment": 1, "comment": 1, "link": 2, "sha256": 2, "datetime": 1, "md5": 1,
        "sha1": 1, "text": 1,
    },
    "misp/pymisp_event_obj_attr_tag.json": {"filename": 1, "url": 1},
}  # fmt: skip

CSV_FILES = {
    "csv/unit42_oilrig_defanged.csv": 108,
    "csv/unit42_dearjoohn_iocs.csv": 9,
    "csv/abusech_urlhaus_tld_feed_2019.csv": 2,
    "csv/abusech_ransomwaretracker.csv": 3,
    "csv/certeu_example.csv": 2,
    "csv/pymisp_valid_fieldnames.csv": 3,
    "csv/abusech_feodo_c2_blocklist_2021.csv": 2,
}


@pytest.mark.parametrize(("name", "types"), STIX_FILES.items(), ids=list(STIX_FILES))
def test_stix_corpus_file_yields_one_record_per_object(
    corpus: Path, name: str, types: dict[str, int]
) -> None:
    path = corpus / name
    items = list(read_feed(path))

    assert detect_format(path) == "stix"
    assert len({item.position for item in items}) == sum(types.values())
    assert _records(items, "stix_type") == types


@pytest.mark.parametrize(("name", "types"), MISP_FILES.items(), ids=list(MISP_FILES))
def test_misp_corpus_file_yields_one_record_per_attribute(
    corpus: Path, name: str, types: dict[str, int]
) -> None:
    path = corpus / name
    items = list(read_feed(path))

    assert detect_format(path) == "misp"
    assert len({item.position for item in items}) == sum(types.values())
    assert _records(items, "misp_type") == types


@pytest.mark.parametrize(("name", "records"), CSV_FILES.items(), ids=list(CSV_FILES))
def test_csv_corpus_file_yields_one_record_per_data_row(
    corpus: Path, name: str, records: int
) -> None:
    path = corpus / name
    items = list(read_feed(path))

    assert detect_format(path) == "csv"
    assert sorted({item.position for item in items}) == list(range(records))
    assert not [item.reason for item in items if item.kind == "rejected"]


def test_unit42_oilrig_types_follow_the_type_column(corpus: Path) -> None:
    items = list(read_feed(corpus / "csv/unit42_oilrig_defanged.csv"))

    assert Counter(item.raw_type for item in items) == {
        "SHA256": 63,
        "Domain": 25,
        "IP": 12,
        "Filename": 8,
    }
    assert Counter(i.indicator.type for i in items if i.indicator) == {
        "sha256": 63,
        "domain": 25,
        "ipv4": 12,
        "filename": 8,
    }


def test_pymisp_hash_columns_yield_md5_sha1_and_sha256_for_every_row(corpus: Path) -> None:
    items = list(read_feed(corpus / "csv/pymisp_valid_fieldnames.csv"))

    assert Counter(i.indicator.type for i in items if i.indicator) == {
        "md5": 3,
        "sha1": 3,
        "sha256": 3,
    }


def test_stix_apt1_simple_patterns_become_indicators_and_x509_patterns_are_skipped(
    corpus: Path,
) -> None:
    items = list(read_feed(corpus / "stix/oasis_stix21_apt1_report.json"))
    from_indicators = [i for i in items if i.context["stix_type"] == "indicator"]

    assert Counter(i.kind for i in from_indicators) == {"indicator": 10, "skipped": 2}
    assert Counter(i.indicator.type for i in from_indicators if i.indicator) == {
        "cidr": 4,
        "domain": 3,
        "md5": 3,
    }


def test_ics_attack_bundle_has_no_indicators(corpus: Path) -> None:
    items = read_feed(corpus / "stix/mitre_ics_attack_v17.1_stix21.json")

    assert {item.kind for item in items} == {"skipped"}


def test_misp_text_attributes_are_skipped_and_sha1s_kept(corpus: Path) -> None:
    items = list(read_feed(corpus / "misp/eset_misp_sshdoor_endor.json"))

    assert Counter(i.kind for i in items) == {"indicator": 19, "skipped": 12}
    assert Counter(i.indicator.type for i in items if i.indicator) == {
        "sha1": 11,
        "filename": 7,
        "email": 1,
    }
