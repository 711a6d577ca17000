"""read_feed on the JSON, list, XML, RSS and text files of the shared corpus (MANIFEST.md).

Readings of the manifest: generic JSON records are the manifest's "entries"/"records"
(OTX: the 95 indicators inside the 5 pulses); a list's records are its non-comment lines;
OpenIOC records are IndicatorItem elements and STIX 1.x records are Observable elements (the
manifest counts elements anywhere in the tree, so it includes idref-only Observables, which we
yield as skipped records); RSS/Atom records are entries. For text reports the manifest's counts
are regex counts, so we check the exact sets of unique hashes / CVE ids against the same regex,
made case-insensitive: the manifest's regexes are lower-case only, but some reports write
hashes in upper case (talos: 2, winnti: several), and those are hashes too.
"""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

import pytest

from phantom_spire.cti.feeds import FeedItem, detect_format, read_feed

pytestmark = pytest.mark.corpus

RECORD_COUNTS = {
    "json/eset_dnsbirthday_blocklist.json": ("json", 503),
    "json/alienvault_otx_pulses.json": ("json", 95),
    "json/cznic_proki.json": ("json", 1),
    "json/microsoft_bing_murls.json": ("json", 2),
    "json/unit42_stix2_reports_index.json": ("json", 81),
    "lists/misp_warninglist_eicar_hashes.json": ("json", 15),
    "lists/misp_warninglist_empty_hashes.json": ("json", 6),
    "lists/spamhaus_drop_sample.txt": ("csv", 2),
    "lists/dshield_block_sample.txt": ("csv", 2),
    "lists/eset_oceanlotus_samples.sha256": ("text", 39),
    "lists/unit42_coin_mining_urls_pandb.txt": ("text", 6908),
    "lists/abusech_feodo_domain_blocklist_2016.txt": ("text", 1),
    "xml/fireeye_openioc10_apt28_a438caeb.ioc": ("openioc", 3),
    "xml/fireeye_openioc10_apt3_db0b6ac6.ioc": ("openioc", 30),
    "xml/fireeye_openioc10_fin4_fb0699e2.ioc": ("openioc", 12),
    "xml/elevator_stix1_mandiant_apt1.xml": ("xml", 12),
    "xml/elevator_stix1_malicious_email_attachment.xml": ("xml", 4),
    "xml/pymisp_stix1_utf8.xml": ("xml", 1),
    "rss/mdnc_kafeine_atom_custom.xml": ("rss", 10),
    "rss/mssplab_jekyll_atom_feed.xml": ("rss", 10),
}


def _positions(items: list[FeedItem]) -> list[int]:
    return sorted({item.position for item in items})


@pytest.mark.parametrize(("name", "expected"), RECORD_COUNTS.items(), ids=list(RECORD_COUNTS))
def test_corpus_file_is_detected_and_yields_the_manifest_record_count(
    corpus: Path, name: str, expected: tuple[str, int]
) -> None:
    fmt, records = expected
    path = corpus / name

    assert detect_format(path) == fmt
    assert _positions(list(read_feed(path))) == list(range(records))


def test_otx_indicator_types_follow_the_type_field(corpus: Path) -> None:
    items = list(read_feed(corpus / "json/alienvault_otx_pulses.json"))

    assert Counter(item.raw_type for item in items) == {
        "FileHash-MD5": 26, "FileHash-SHA256": 24, "hostname": 14, "IPv4": 9,
        "FileHash-SHA1": 8, "URL": 5, "domain": 5, "URI": 2, "email": 1, "CVE": 1,
    }  # fmt: skip


def test_oceanlotus_sample_list_is_39_sha256(corpus: Path) -> None:
    items = list(read_feed(corpus / "lists/eset_oceanlotus_samples.sha256"))

    assert Counter(i.indicator.type for i in items if i.indicator) == {"sha256": 39}


@pytest.mark.parametrize(
    ("name", "kind", "pattern"),
    [
        ("text/talos_gophish_powerrat_dcrat.txt", "sha256", r"\b[0-9a-f]{64}\b"),
        ("text/unit42_conti_iocs_defanged.txt", "sha256", r"\b[0-9a-f]{64}\b"),
        ("text/unit42_echobot_2019-08-06.md", "sha256", r"\b[0-9a-f]{64}\b"),
        ("text/eset_winnti_group_readme.adoc", "sha1", r"\b[0-9a-f]{40}\b"),
        ("text/unit42_echobot_2019-08-06.md", "cve", r"\bCVE-\d{4}-\d{4,}\b"),
    ],
)
def test_text_report_yields_exactly_the_unique_values_the_manifest_regex_finds(
    corpus: Path, name: str, kind: str, pattern: str
) -> None:
    path = corpus / name
    text = path.read_text(encoding="utf-8")
    expected = {value.lower() for value in re.findall(pattern, text, flags=re.IGNORECASE)}
    found = {i.indicator.value for i in read_feed(path) if i.indicator and i.indicator.type == kind}

    assert detect_format(path) == "text"
    assert {value.lower() for value in found} == expected


def test_winnti_report_has_the_manifest_count_of_unique_sha1(corpus: Path) -> None:
    items = read_feed(corpus / "text/eset_winnti_group_readme.adoc")

    assert (
        len({i.indicator.value for i in items if i.indicator and i.indicator.type == "sha1"}) == 119
    )


def test_echobot_report_has_39_unique_cves(corpus: Path) -> None:
    items = read_feed(corpus / "text/unit42_echobot_2019-08-06.md")

    assert (
        len({i.indicator.value for i in items if i.indicator and i.indicator.type == "cve"}) == 39
    )
