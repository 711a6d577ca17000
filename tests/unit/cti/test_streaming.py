"""STIX and MISP files are streamed: memory stays flat, later references are still resolved."""

from __future__ import annotations

import json
import tracemalloc
from pathlib import Path
from typing import Any

import pytest

from phantom_spire.cti.errors import FeedFormatError
from phantom_spire.cti.feeds import read_feed


def uuid(n: int) -> str:
    return f"00000000-0000-4000-8000-{n:012x}"


def indicator(n: int, value: str, **extra: Any) -> dict[str, Any]:
    return {
        "type": "indicator",
        "spec_version": "2.1",
        "id": f"indicator--{uuid(n)}",
        "created": "2024-01-01T00:00:00Z",
        "modified": "2024-01-01T00:00:00Z",
        "pattern": f"[ipv4-addr:value = '{value}']",
        "pattern_type": "stix",
        "valid_from": "2024-01-01T00:00:00Z",
        **extra,
    }


def write_bundle(path: Path, objects: list[dict[str, Any]], *, bom: bool = False) -> Path:
    text = json.dumps({"type": "bundle", "id": f"bundle--{uuid(0)}", "objects": objects})
    path.write_bytes((b"\xef\xbb\xbf" if bom else b"") + text.encode("utf-8"))
    return path


def peak_bytes_while_reading(path: Path, fmt: str) -> tuple[int, int]:
    tracemalloc.start()
    try:
        count = sum(1 for item in read_feed(path, fmt) if item.kind == "indicator")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return count, peak


# -- STIX: references resolved in a second pass ----------------------------------------------


def test_stix_relationship_and_malware_after_the_indicator_are_resolved(tmp_path: Path) -> None:
    path = write_bundle(
        tmp_path / "late.json",
        [
            indicator(1, "203.0.113.1", created_by_ref=f"identity--{uuid(9)}"),
            {
                "type": "relationship",
                "id": f"relationship--{uuid(2)}",
                "relationship_type": "indicates",
                "source_ref": f"indicator--{uuid(1)}",
                "target_ref": f"malware--{uuid(3)}",
            },
            {"type": "malware", "id": f"malware--{uuid(3)}", "name": "LateLoader"},
            {"type": "identity", "id": f"identity--{uuid(9)}", "name": "Feed Team"},
        ],
    )

    first = next(iter(read_feed(path, "stix")))

    assert first.context["created_by"] == "Feed Team"
    assert first.context["related"] == [
        {
            "relationship": "indicates",
            "type": "malware",
            "name": "LateLoader",
            "id": f"malware--{uuid(3)}",
        }
    ]


def test_stix_relationship_to_an_object_absent_from_the_bundle_keeps_its_id(
    tmp_path: Path,
) -> None:
    path = write_bundle(
        tmp_path / "dangling.json",
        [
            indicator(1, "203.0.113.1"),
            {
                "type": "relationship",
                "id": f"relationship--{uuid(2)}",
                "relationship_type": "attributed-to",
                "source_ref": f"threat-actor--{uuid(5)}",
                "target_ref": f"indicator--{uuid(1)}",
            },
        ],
    )

    related = next(iter(read_feed(path, "stix"))).context["related"]

    assert related == [
        {
            "relationship": "attributed-to",
            "type": "threat-actor",
            "name": None,
            "id": f"threat-actor--{uuid(5)}",
        }
    ]


def test_stix_tlp_marking_defined_at_the_end_applies_to_earlier_objects(tmp_path: Path) -> None:
    marking = f"marking-definition--{uuid(7)}"
    path = write_bundle(
        tmp_path / "marking.json",
        [
            indicator(1, "203.0.113.1", object_marking_refs=[marking]),
            {"type": "marking-definition", "id": marking, "name": "TLP:AMBER"},
        ],
    )
    assert next(iter(read_feed(path, "stix"))).context["tlp"] == "amber"


def test_stix_resume_still_sees_references_before_the_start(tmp_path: Path) -> None:
    path = write_bundle(
        tmp_path / "resume.json",
        [
            {"type": "malware", "id": f"malware--{uuid(3)}", "name": "EarlyLoader"},
            {
                "type": "relationship",
                "id": f"relationship--{uuid(2)}",
                "relationship_type": "indicates",
                "source_ref": f"indicator--{uuid(1)}",
                "target_ref": f"malware--{uuid(3)}",
            },
            indicator(1, "203.0.113.1"),
        ],
    )
    (item,) = list(read_feed(path, "stix", start=2))
    assert item.context["related"][0]["name"] == "EarlyLoader"


def test_stix_bundle_memory_does_not_grow_with_the_file(tmp_path: Path) -> None:
    peaks = {}
    for n in (5_000, 20_000):
        objects = [indicator(i, f"10.{i // 65536}.{i // 256 % 256}.{i % 256}") for i in range(n)]
        path = write_bundle(tmp_path / f"bundle{n}.json", objects)
        count, peaks[n] = peak_bytes_while_reading(path, "stix")
        assert count == n

    # Four times the file, (nearly) the same peak; loading it whole would cost several times
    # the file's size (5.6 MB here).
    assert peaks[20_000] < peaks[5_000] * 1.25, peaks
    assert peaks[20_000] < 2 * 2**20, peaks


def test_stix_with_bom_big_integers_and_custom_properties_reads(tmp_path: Path) -> None:
    path = write_bundle(
        tmp_path / "bom.json",
        [
            indicator(1, "203.0.113.1", x_custom_size=10**30, x_ratio=0.5),
            {"type": "x-custom-thing", "id": f"x-custom-thing--{uuid(4)}", "n": "HUGE"},
        ],
        bom=True,
    )
    # A number no float can hold, as a feed may write it.
    path.write_bytes(path.read_bytes().replace(b'"HUGE"', b"1e400"))
    kinds = [item.kind for item in read_feed(path, "stix")]
    assert kinds == ["indicator", "skipped"]


def test_truncated_stix_is_refused_before_any_item(tmp_path: Path) -> None:
    full = write_bundle(tmp_path / "full.json", [indicator(n, "203.0.113.1") for n in range(50)])
    cut = tmp_path / "cut.json"
    cut.write_bytes(full.read_bytes()[:-200])

    seen = []
    with pytest.raises(FeedFormatError, match=r"cut\.json.*truncated JSON"):
        for item in read_feed(cut, "stix"):
            seen.append(item)
    assert seen == []


def test_bundle_whose_objects_is_not_a_list_names_what_it_is(tmp_path: Path) -> None:
    path = tmp_path / "odd.json"
    path.write_text('{"type": "bundle", "id": "bundle--1", "objects": {"a": 1}}')
    with pytest.raises(FeedFormatError, match="bundle 'objects' is dict, expected a list"):
        list(read_feed(path, "stix"))


# -- MISP ------------------------------------------------------------------------------------


def misp_attribute(n: int) -> dict[str, Any]:
    return {
        "uuid": uuid(n),
        "type": "ip-dst",
        "category": "Network activity",
        "to_ids": True,
        "value": f"10.{n // 65536}.{n // 256 % 256}.{n % 256}",
    }


def test_misp_event_tags_after_the_attributes_still_apply(tmp_path: Path) -> None:
    # Key order is free in JSON: here the event's tags and info come after its attributes.
    text = (
        '{"Event": {"Attribute": ' + json.dumps([misp_attribute(1)]) + ', "Object": ['
        '{"name": "file", "uuid": "o-1", "Attribute": [{"type": "md5", "value": '
        '"44d88612fea8a8f36de82e1278abb02f"}]}], "info": "late fields", "uuid": "e-1", '
        '"Tag": [{"name": "tlp:green"}, {"name": "apt"}]}}'
    )
    path = tmp_path / "late_tags.json"
    path.write_text(text)

    items = list(read_feed(path, "misp"))

    assert [i.indicator.type for i in items if i.indicator] == ["ipv4", "md5"]
    assert items[0].context["tags"] == ["tlp:green", "apt"]
    assert items[0].context["tlp"] == "green"
    assert items[0].context["event_info"] == "late fields"
    assert items[1].context["object_name"] == "file"


def test_misp_large_event_memory_does_not_grow_with_the_file(tmp_path: Path) -> None:
    peaks = {}
    for n in (5_000, 20_000):
        event = {"info": "big", "uuid": "e-1", "Attribute": [misp_attribute(i) for i in range(n)]}
        path = tmp_path / f"misp{n}.json"
        path.write_text(json.dumps({"Event": event}))
        count, peaks[n] = peak_bytes_while_reading(path, "misp")
        assert count == n

    assert peaks[20_000] < peaks[5_000] * 1.25, peaks
    assert peaks[20_000] < 2 * 2**20, peaks


def test_misp_response_list_and_bom_read_event_by_event(tmp_path: Path) -> None:
    response = {
        "response": [
            {"Event": {"uuid": "e-1", "Attribute": [misp_attribute(1)]}},
            {"Event": {"uuid": "e-2", "Attribute": [misp_attribute(2)]}},
        ]
    }
    path = tmp_path / "response.json"
    path.write_bytes(b"\xef\xbb\xbf" + json.dumps(response).encode())

    items = list(read_feed(path, "misp"))

    assert [(i.position, i.context["misp_event_uuid"]) for i in items] == [(0, "e-1"), (1, "e-2")]


def test_empty_misp_response_yields_nothing(tmp_path: Path) -> None:
    path = tmp_path / "empty_response.json"
    path.write_text('{"response": []}')
    assert list(read_feed(path, "misp")) == []


def test_truncated_misp_is_refused_before_any_item(tmp_path: Path) -> None:
    event = {"uuid": "e-1", "Attribute": [misp_attribute(n) for n in range(50)]}
    path = tmp_path / "cut_misp.json"
    path.write_text(json.dumps({"Event": event})[:-300])

    seen = []
    with pytest.raises(FeedFormatError, match=r"cut_misp\.json.*truncated JSON"):
        for item in read_feed(path, "misp"):
            seen.append(item)
    assert seen == []


def test_json_that_is_not_misp_is_refused_naming_the_shapes(tmp_path: Path) -> None:
    path = tmp_path / "other.json"
    path.write_text('{"type": "x", "data": []}')
    with pytest.raises(FeedFormatError, match=r"not MISP: expected \{\"Event\""):
        list(read_feed(path, "misp"))


def test_large_json_is_detected_from_its_first_events(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from phantom_spire.cti import feeds

    # Every file counts as large: detection must not parse it whole.
    monkeypatch.setattr(feeds, "_FULL_JSON_CHECK_BYTES", 10)
    shapes = {
        "bundle.json": {"type": "bundle", "id": f"bundle--{uuid(0)}", "objects": []},
        "event.json": {"Event": {"uuid": "e-1", "Attribute": [misp_attribute(1)]}},
        "bare_event.json": {"info": "bare", "Attribute": [misp_attribute(1)]},
        "other.json": {"status": "ok", "data": [{"ip": "8.8.8.8"}]},
    }
    detected = {}
    for name, document in shapes.items():
        (tmp_path / name).write_text(json.dumps(document))
        detected[name] = feeds.detect_format(tmp_path / name)

    assert detected == {
        "bundle.json": "stix",
        "event.json": "misp",
        "bare_event.json": "misp",
        "other.json": "json",
    }
