"""The JSON Lines protocol that the IOC bench speaks to `spire ioc ... --jsonl`."""

from __future__ import annotations

import json

import pytest

from phantom_spire.cti.ioc_protocol import answer, serve_jsonl


def test_extract_answers_found_values_by_type() -> None:
    reply = answer("extract", {"id": "e1", "text": "C2 at 8.8.8[.]8 and evil[.]example[.]com"})

    assert reply["id"] == "e1"
    assert reply["found"] == {"ipv4": ["8.8.8.8"], "domain": ["evil.example.com"]}
    assert "registry_key" in reply["types"]


def test_fang_and_classify_answer_as_the_bench_expects() -> None:
    assert answer("fang", {"id": 1, "defanged": "hxxp://a[.]com"}) == {
        "id": 1,
        "fanged": "http://a.com",
    }
    assert answer("classify", {"id": 2, "value": "CVE-2021-44228"}) == {
        "id": 2,
        "type": "cve",
        "normalized": "CVE-2021-44228",
    }
    assert answer("classify", {"id": 3, "value": "nope"}) == {
        "id": 3,
        "type": None,
        "normalized": None,
    }


def test_serve_jsonl_answers_each_line_and_reports_bad_ones() -> None:
    lines = ['{"id": "a", "value": "1.2.3.4"}', "", "not json", '{"id": "b"}']
    replies = [json.loads(line) for line in serve_jsonl("classify", lines)]

    assert replies[0] == {"id": "a", "type": "ipv4", "normalized": "1.2.3.4"}
    assert "invalid JSON" in replies[1]["error"]
    assert replies[2]["id"] == "b" and "expected a string 'value'" in replies[2]["error"]


def test_unknown_mode_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown mode 'scan'"):
        answer("scan", {})
