"""JSON, JSON Lines, XML, RSS and text feeds; warning lists; extraction; dedup keys."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from phantom_spire.cti import indicators
from phantom_spire.cti.feeds import detect_format, read_feed
from phantom_spire.cti.formats.jsonfeed import JsonMapping, read_json
from phantom_spire.cti.formats.xmlfeed import XmlMapping, read_xml
from phantom_spire.cti.indicators import dedup_key, parse_indicator
from phantom_spire.cti.warninglists import WarningList, WarningListError, WarningLists


def _types(items: list) -> Counter[str]:  # type: ignore[type-arg]
    return Counter(i.indicator.type for i in items if i.indicator is not None)


def test_json_records_nested_in_pulses_carry_the_pulse_context(tmp_path: Path) -> None:
    path = tmp_path / "pulses.json"
    path.write_text(
        '[{"name": "P1", "tags": ["apt"], "indicators": ['
        '{"indicator": "evil.example.com", "type": "domain"},'
        '{"indicator": "d41d8cd98f00b204e9800998ecf8427e", "type": "FileHash-MD5"}]},'
        '{"name": "P2", "indicators": [{"indicator": "not-an-ip", "type": "IPv4"}]}]'
    )
    items = list(read_feed(path))

    assert detect_format(path) == "json"
    assert [(i.position, i.kind) for i in items] == [
        (0, "indicator"),
        (1, "indicator"),
        (2, "rejected"),
    ]
    assert items[0].context["parent"]["name"] == "P1"
    assert items[0].context["tags"] == ["apt"]


def test_json_explicit_mapping_selects_records_and_fields(tmp_path: Path) -> None:
    path = tmp_path / "custom.json"
    path.write_text('{"result": {"rows": [{"c2": {"addr": "8.8.8.8"}, "seen": "2024-01-02"}]}}')
    mapping = JsonMapping("result.rows", value_fields={"c2.addr": "ip"}, first_seen_field="seen")
    (item,) = list(read_json(path, mapping=mapping))

    assert item.indicator == parse_indicator("8.8.8.8")
    assert item.context["first_seen"] == "2024-01-02T00:00:00Z"


def test_json_lines_reject_a_bad_line_and_go_on(tmp_path: Path) -> None:
    path = tmp_path / "feed.jsonl"
    path.write_text('{"ioc": "8.8.8.8"}\n{"ioc": oops}\n{"ioc": "hxxp://x[.]example[.]com/a"}\n')
    items = list(read_feed(path))

    assert detect_format(path) == "jsonl"
    assert [i.kind for i in items] == ["indicator", "rejected", "indicator"]
    assert items[2].indicator is not None and items[2].indicator.value == "http://x.example.com/a"


def test_generic_xml_is_read_with_a_mapping(tmp_path: Path) -> None:
    path = tmp_path / "feed.xml"
    path.write_text("<feed><entry><ip>8.8.8.8</ip><note>x</note></entry><entry/></feed>")
    items = list(read_xml(path, mapping=XmlMapping("entry", {"ip": "ip"})))

    assert [(i.position, i.kind) for i in items] == [(0, "indicator"), (1, "skipped")]


def test_text_lists_strip_inline_comments_and_read_schemeless_urls(tmp_path: Path) -> None:
    path = tmp_path / "list.txt"
    path.write_text("; header\n1.4.0.0/17 ; SBL1\nexample.com/path/x.php\nsome prose here\n")
    items = list(read_feed(path, "text"))

    assert [(i.kind, i.indicator.type if i.indicator else None) for i in items] == [
        ("indicator", "cidr"),
        ("indicator", "url"),
        ("skipped", None),
    ]


def test_extract_finds_refanged_indicators_once_each() -> None:
    text = "C2 hxxp://bad[.]example[.]com/x and bad[.]example[.]com, again 8.8.8[.]8 and 8.8.8.8"
    found = [(i.type, i.value) for i in indicators.extract(text)]

    assert found == [
        ("url", "http://bad.example.com/x"),
        ("domain", "bad.example.com"),
        ("ipv4", "8.8.8.8"),
    ]


def test_extract_does_not_report_url_paths_as_domains_or_hashes() -> None:
    text = "https://example.com/d41d8cd98f00b204e9800998ecf8427e/other.com"

    assert {i.type for i in indicators.extract(text)} == {"url", "domain"}


def test_dedup_key_is_the_same_for_every_spelling_of_one_indicator() -> None:
    spellings = ["2001:DB8:0:0::1", "2001:db8::1", "2001:0db8:0000:0000:0000:0000:0000:0001"]
    assert {dedup_key(parse_indicator(s)) for s in spellings} == {"ipv6:2001:db8::1"}
    assert dedup_key(parse_indicator("HXXP://EXAMPLE[.]COM/A")) == "url:http://example.com/A"
    assert dedup_key(parse_indicator("BÜCHER.de")) == "domain:xn--bcher-kva.de"


def test_cidr_warning_list_matches_addresses_and_networks_inside_a_range() -> None:
    lists = WarningLists([WarningList.from_entries("rfc1918", "cidr", ["10.0.0.0/8"])])

    assert lists.matches(parse_indicator("10.9.8.7")) == ["rfc1918"]
    assert lists.matches(parse_indicator("10.9.0.0/16")) == ["rfc1918"]
    assert lists.matches(parse_indicator("11.0.0.1")) == []
    assert lists.matches(parse_indicator("10.0.0.0/7")) == []


def test_hostname_warning_list_matches_subdomains_and_url_hosts() -> None:
    warning_list = WarningList.from_entries("top", "hostname", ["Google.com."])

    assert warning_list.matches(parse_indicator("mail.google.com"))
    assert warning_list.matches(parse_indicator("https://www.google.com/search"))
    assert not warning_list.matches(parse_indicator("evilgoogle.com"))


def test_string_warning_list_entries_are_canonicalised() -> None:
    warning_list = WarningList.from_entries("h", "string", ["D41D8CD98F00B204E9800998ECF8427E"])

    assert warning_list.matches(parse_indicator("d41d8cd98f00b204e9800998ecf8427e"))


def test_warning_list_file_without_a_list_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "broken.json"
    path.write_text('{"name": "x"}')

    with pytest.raises(WarningListError, match="has no 'list' array"):
        WarningList.from_file(path)
