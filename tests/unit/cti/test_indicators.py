"""Behaviour of indicators.classify and indicators.parse_indicator."""

from __future__ import annotations

import pytest

from phantom_spire.cti import indicators
from phantom_spire.cti.errors import CTIError
from phantom_spire.cti.indicators import Indicator, InvalidIndicator, classify, parse_indicator


@pytest.mark.parametrize(
    ("value", "kind", "canonical"),
    [
        ("8.8.8.8", "ipv4", "8.8.8.8"),
        ("2001:0DB8:0000:0000:0000:0000:0000:0001", "ipv6", "2001:db8::1"),
        ("10.0.0.0/8", "cidr", "10.0.0.0/8"),
        ("Example.COM.", "domain", "example.com"),
        ("HTTPS://Example.com/Path?Q=1", "url", "https://example.com/Path?Q=1"),
        ("Bob@Example.COM", "email", "Bob@example.com"),
        ("D41D8CD98F00B204E9800998ECF8427E", "md5", "d41d8cd98f00b204e9800998ecf8427e"),
        (
            "da39a3ee5e6b4b0d3255bfef95601890afd80709",
            "sha1",
            "da39a3ee5e6b4b0d3255bfef95601890afd80709",
        ),
        ("96:a9Zl2ZmZ/XpUr:a9ZMZm/Ar", "ssdeep", "96:a9Zl2ZmZ/XpUr:a9ZMZm/Ar"),
        ("cve-2021-44228", "cve", "CVE-2021-44228"),
        ("ASN 13335", "asn", "AS13335"),
        ("1BvBMSEYstWetqTFn5Au4m4GFg7xJaNVN2", "bitcoin", "1BvBMSEYstWetqTFn5Au4m4GFg7xJaNVN2"),
        ("t1059.001", "attack_technique", "T1059.001"),
        ("invoice.exe", "filename", "invoice.exe"),
        ("HKLM\\Software\\Run\\", "registry_key", "HKLM\\Software\\Run"),
        ("AA-BB-CC-DD-EE-FF", "mac", "aa:bb:cc:dd:ee:ff"),
        ("bücher.de", "domain", "xn--bcher-kva.de"),
    ],
)
def test_parse_indicator_classifies_and_canonicalises_each_type(
    value: str, kind: str, canonical: str
) -> None:
    indicator = parse_indicator(value)
    assert (indicator.type, indicator.value) == (kind, canonical)
    assert classify(value) == kind


def test_empty_file_ssdeep_is_an_ipv6_address_unless_the_feed_says_ssdeep() -> None:
    assert parse_indicator("3::").type == "ipv6"
    assert parse_indicator("3::", "ssdeep") == Indicator("ssdeep", "3::", ())


def test_classify_refangs_before_classifying() -> None:
    assert classify("hxxp://evil[.]example[.]com/x") == "url"


@pytest.mark.parametrize(
    "value",
    ["", "   ", "hello world", "1.2.3", "256.1.1.1", "x.x.x.x", "TA0001", "12:30:45", "co.uk"],
)
def test_classify_returns_none_for_values_that_are_not_indicators(value: str) -> None:
    assert classify(value) is None


@pytest.mark.parametrize(
    ("value", "tags"),
    [
        ("10.0.0.1", ("private",)),
        ("127.0.0.1", ("loopback",)),
        ("169.254.10.1", ("link_local",)),
        ("224.0.0.251", ("multicast",)),
        ("0.0.0.0", ("reserved",)),
        ("192.0.2.1", ("reserved",)),
        ("fd00::1", ("private",)),
        ("8.8.8.8", ()),
        ("http://192.168.0.1/admin", ("private",)),
    ],
)
def test_parse_indicator_tags_special_use_addresses(value: str, tags: tuple[str, ...]) -> None:
    assert parse_indicator(value).tags == tags


def test_invalid_indicator_names_the_value_and_the_reason() -> None:
    with pytest.raises(InvalidIndicator) as caught:
        parse_indicator("not an indicator")
    assert caught.value.value == "not an indicator"
    assert "not a recognised indicator" in caught.value.reason
    assert "'not an indicator'" in str(caught.value)
    assert isinstance(caught.value, CTIError)


def test_parse_indicator_rejects_an_empty_value() -> None:
    with pytest.raises(InvalidIndicator, match="empty value"):
        parse_indicator("   ")


def test_parse_indicator_rejects_a_value_that_is_not_a_string() -> None:
    with pytest.raises(InvalidIndicator, match="expected a string, got int"):
        parse_indicator(42)  # type: ignore[arg-type]


def test_parse_indicator_rejects_an_overlong_value_without_echoing_it_whole() -> None:
    with pytest.raises(InvalidIndicator, match="at most") as caught:
        parse_indicator("a" * 100_000)
    assert len(str(caught.value)) < 300


@pytest.mark.parametrize(
    ("raw", "hint", "kind", "canonical"),
    [
        ("example[.]com", "domain-name", "domain", "example.com"),
        ("203.0.113.9", "ip-dst", "ipv4", "203.0.113.9"),
        ("203.0.113.0/24", "ipv4-addr", "cidr", "203.0.113.0/24"),
        (
            "E3B0C44298FC1C149AFBF4C8996FB92427AE41E4649B934CA495991B7852B855",
            "SHA256",
            "sha256",
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        ),
        ("13335", "AS", "asn", "AS13335"),
        ("/usr/bin/ssd", "filename", "filename", "/usr/bin/ssd"),
        ("HKLM", "regkey", "registry_key", "HKLM"),
        ("0050.56c0.0001", "mac-addr", "mac", "00:50:56:c0:00:01"),
        ("a1b2c3d4e5f6", "mac-address", "mac", "a1:b2:c3:d4:e5:f6"),
        ("146.4.21.94", "url", "ipv4", "146.4.21.94"),
        ("Example.com/path/x.php", "url", "url", "example.com/path/x.php"),
        (
            "44d88612fea8a8f36de82e1278abb02f",
            "FileHash-MD5",
            "md5",
            "44d88612fea8a8f36de82e1278abb02f",
        ),
    ],
)
def test_parse_indicator_uses_the_feed_type_label_as_a_hint(
    raw: str, hint: str, kind: str, canonical: str
) -> None:
    indicator = parse_indicator(raw, hint)
    assert (indicator.type, indicator.value) == (kind, canonical)


def test_parse_indicator_rejects_a_value_that_contradicts_its_hint() -> None:
    sha256 = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    with pytest.raises(InvalidIndicator) as caught:
        parse_indicator(sha256, "md5")
    assert "'md5' expects md5" in caught.value.reason
    assert "looks like sha256" in caught.value.reason


def test_parse_indicator_classifies_when_the_hint_is_unknown() -> None:
    assert parse_indicator("8.8.4.4", "Name").type == "ipv4"


def test_indicators_are_hashable_and_equal_by_canonical_value() -> None:
    assert parse_indicator("EXAMPLE[.]com") == parse_indicator("example.com.")
    assert len({parse_indicator("2001:db8:0:0::1"), parse_indicator("2001:DB8::1")}) == 1


def test_indicator_types_are_exactly_the_documented_names() -> None:
    assert set(indicators.TYPES) == {
        "ipv4", "ipv6", "cidr", "domain", "url", "email", "md5", "sha1", "sha256", "sha512",
        "ssdeep", "cve", "asn", "bitcoin", "attack_technique", "filename", "registry_key", "mac",
    }  # fmt: skip
