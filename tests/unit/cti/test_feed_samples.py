"""read_feed and detect_format on the sample feeds kept in tests/data/feeds."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from phantom_spire.cti import feeds
from phantom_spire.cti.errors import CTIError
from phantom_spire.cti.feeds import FeedFormatError, FeedItem, detect_format, read_feed


def _indicator_types(items: list[FeedItem]) -> Counter[str]:
    return Counter(item.indicator.type for item in items if item.indicator is not None)


def _kinds(items: list[FeedItem]) -> Counter[str]:
    return Counter(item.kind for item in items)


@pytest.mark.parametrize(
    ("name", "fmt"),
    [
        ("sample_stix21.json", "stix"),
        ("sample_misp_event.json", "misp"),
        ("sample_iocs.csv", "csv"),
    ],
)
def test_detect_format_recognises_each_sample_feed(sample_feeds: Path, name: str, fmt: str) -> None:
    assert detect_format(sample_feeds / name) == fmt


def test_stix_sample_yields_its_indicators_and_skips_objects_without_one(
    sample_feeds: Path,
) -> None:
    items = list(read_feed(sample_feeds / "sample_stix21.json"))

    assert len({item.position for item in items}) == 10
    assert _kinds(items) == {"indicator": 6, "skipped": 4, "rejected": 1}
    assert _indicator_types(items) == {"ipv4": 2, "sha256": 1, "md5": 1, "domain": 1, "url": 1}


def test_stix_or_pattern_yields_one_indicator_per_comparison_at_one_position(
    sample_feeds: Path,
) -> None:
    items = [i for i in read_feed(sample_feeds / "sample_stix21.json") if i.position == 2]

    assert [(i.indicator.type if i.indicator else None) for i in items] == ["sha256", "md5"]
    assert items[0].raw_type == "file:hashes.'SHA-256'"
    assert items[0].indicator is not None
    assert items[0].indicator.value == items[0].indicator.value.lower()


def test_stix_complex_pattern_is_skipped_with_the_pattern_in_context(sample_feeds: Path) -> None:
    item = next(i for i in read_feed(sample_feeds / "sample_stix21.json") if i.position == 4)

    assert item.kind == "skipped"
    assert item.reason is not None and "pattern not a simple comparison" in item.reason
    assert "AND" in item.context["pattern"]


def test_stix_invalid_value_is_rejected_naming_the_object_and_value(sample_feeds: Path) -> None:
    item = next(i for i in read_feed(sample_feeds / "sample_stix21.json") if i.kind == "rejected")

    assert item.reason is not None
    assert "indicator--d1e2f3a4-2222-4b3c-9d8e-abcdefabcdef" in item.reason
    assert "'999.1.1.1'" in item.reason


def test_stix_context_carries_id_confidence_tlp_and_validity(sample_feeds: Path) -> None:
    item = next(i for i in read_feed(sample_feeds / "sample_stix21.json") if i.position == 1)

    assert item.context["stix_id"] == "indicator--8e2e2d2b-17d4-4cbf-938f-98ee46b3cd3f"
    assert item.context["confidence"] == 80
    assert item.context["tlp"] == "green"
    assert item.context["first_seen"] == "2024-01-10T09:00:00Z"
    assert item.context["tags"] == ["malicious-activity"]


def test_misp_sample_splits_composites_and_skips_text(sample_feeds: Path) -> None:
    items = list(read_feed(sample_feeds / "sample_misp_event.json"))

    assert len({item.position for item in items}) == 9
    assert _kinds(items) == {"indicator": 9, "skipped": 1, "rejected": 1}
    assert _indicator_types(items) == {
        "ipv4": 2, "domain": 1, "url": 1, "filename": 1, "sha256": 1, "email": 1, "sha1": 1,
        "registry_key": 1,
    }  # fmt: skip
    composite = [i for i in items if i.position == 1]
    assert [i.raw_type for i in composite] == ["domain", "ip"]


def test_misp_context_has_uuid_tags_galaxies_tlp_and_to_ids(sample_feeds: Path) -> None:
    items = list(read_feed(sample_feeds / "sample_misp_event.json"))
    email = next(i for i in items if i.indicator and i.indicator.type == "email")
    sha1 = next(i for i in items if i.indicator and i.indicator.type == "sha1")

    assert email.context["misp_uuid"] == "a0000001-0000-4000-8000-000000000005"
    assert email.context["to_ids"] is False
    assert email.context["tlp"] == "amber"
    assert "phishing" in email.context["tags"]
    assert 'misp-galaxy:threat-actor="Example Panda"' in email.context["tags"]
    assert sha1.context["object_name"] == "file"


def test_csv_sample_refangs_values_and_rejects_the_bad_one(sample_feeds: Path) -> None:
    items = list(read_feed(sample_feeds / "sample_iocs.csv"))

    assert len({item.position for item in items}) == 8
    assert _kinds(items) == {"indicator": 7, "rejected": 1}
    assert _indicator_types(items) == {
        "ipv4": 2, "domain": 1, "url": 1, "sha256": 1, "md5": 1, "email": 1,
    }  # fmt: skip
    rejected = next(i for i in items if i.kind == "rejected")
    assert rejected.reason is not None and "'300.1.2.3'" in rejected.reason
    url = next(i for i in items if i.indicator and i.indicator.type == "url")
    assert url.context["fields"]["comment"] == "dropper download\nseen in two campaigns"


@pytest.mark.parametrize(
    "name", ["sample_stix21.json", "sample_misp_event.json", "sample_iocs.csv"]
)
def test_every_item_context_is_json_serialisable(sample_feeds: Path, name: str) -> None:
    for item in read_feed(sample_feeds / name):
        json.dumps(item.context)
        assert {"tags", "confidence", "tlp", "first_seen", "last_seen"} <= set(item.context)


@pytest.mark.parametrize(
    "name", ["sample_stix21.json", "sample_misp_event.json", "sample_iocs.csv"]
)
def test_start_resumes_at_the_given_record_position(sample_feeds: Path, name: str) -> None:
    everything = list(read_feed(sample_feeds / name))
    resumed = list(read_feed(sample_feeds / name, start=3))

    assert resumed == [item for item in everything if item.position >= 3]
    assert min(item.position for item in resumed) == 3


def test_start_past_the_end_yields_nothing(sample_feeds: Path) -> None:
    assert list(read_feed(sample_feeds / "sample_iocs.csv", start=1000)) == []


@pytest.mark.parametrize(
    ("name", "problem"),
    [
        ("bad_truncated.json", "truncated JSON"),
        ("bad_empty.json", "file is empty"),
        ("bad_binary.bin", "binary data"),
        ("bad_no_indicator_column.csv", "no indicator column"),
    ],
)
def test_bad_feeds_raise_feed_format_error_naming_file_and_problem(
    sample_feeds: Path, name: str, problem: str
) -> None:
    with pytest.raises(FeedFormatError) as caught:
        list(read_feed(sample_feeds / name))

    assert name in str(caught.value)
    assert problem in str(caught.value)
    assert isinstance(caught.value, CTIError)


def test_truncated_json_is_refused_by_detect_format_too(sample_feeds: Path) -> None:
    with pytest.raises(FeedFormatError, match=r"truncated JSON: .* at line 1 column 199"):
        detect_format(sample_feeds / "bad_truncated.json")


def test_json_that_is_neither_stix_nor_misp_is_generic_json(tmp_path: Path) -> None:
    path = tmp_path / "other.json"
    path.write_text('{"status": "ok", "data": [{"ip": "8.8.8.8"}]}')

    assert detect_format(path) == "json"
    assert [i.indicator.value for i in read_feed(path) if i.indicator] == ["8.8.8.8"]


def test_json_without_any_array_of_records_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "other.json"
    path.write_text('{"status": "ok", "message": "nothing"}')

    with pytest.raises(FeedFormatError, match="no array of records found"):
        list(read_feed(path))


def test_missing_file_is_a_feed_format_error(tmp_path: Path) -> None:
    with pytest.raises(FeedFormatError, match="cannot read file"):
        detect_format(tmp_path / "absent.csv")


def test_read_feed_rejects_an_unknown_format_name(sample_feeds: Path) -> None:
    with pytest.raises(ValueError, match="unknown feed format 'yaml'"):
        read_feed(sample_feeds / "sample_iocs.csv", "yaml")


def test_read_feed_with_an_explicit_format_still_refuses_binary(sample_feeds: Path) -> None:
    with pytest.raises(FeedFormatError, match="binary data"):
        list(read_feed(sample_feeds / "bad_binary.bin", "csv"))


def test_public_names_are_exported() -> None:
    assert {"detect_format", "read_feed", "FeedItem", "FeedFormatError"} <= set(feeds.__all__)
