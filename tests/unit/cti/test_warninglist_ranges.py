"""CIDR warning lists: membership by range, for addresses and networks, at list scale."""

from __future__ import annotations

import time

import pytest

from phantom_spire.cti.indicators import parse_indicator
from phantom_spire.cti.warninglists import WarningList

RANGES = WarningList.from_entries(
    "ranges", "cidr", ["192.0.2.0/24", "198.51.100.128/25", "2001:db8::/32", "203.0.113.7"]
)


@pytest.mark.parametrize(
    ("value", "listed"),
    [
        ("192.0.2.55", True),
        ("192.0.2.0/28", True),
        ("192.0.0.0/16", False),  # wider than the listed range: not inside it
        ("198.51.100.200", True),
        ("198.51.100.100", False),
        ("203.0.113.7", True),
        ("203.0.113.8", False),
        ("2001:db8:1::5", True),
        ("2001:db9::1", False),
        ("::ffff:192.0.2.1", False),  # an IPv6 address is not in an IPv4 range
    ],
)
def test_address_or_network_inside_a_listed_range_matches(value: str, listed: bool) -> None:
    assert RANGES.matches(parse_indicator(value)) is listed


def test_a_domain_never_matches_a_range_list() -> None:
    assert not RANGES.matches(parse_indicator("example-bad.com"))


def test_thousands_of_ranges_are_checked_by_lookup_not_by_scan() -> None:
    # Cloud-provider lists hold thousands of ranges; a scan per indicator would make ingestion
    # with them crawl.
    entries = [f"10.{i // 256}.{i % 256}.0/24" for i in range(20_000)]
    big = WarningList.from_entries("cloud", "cidr", entries)
    probes = [parse_indicator(f"10.{i // 256 % 256}.{i % 256}.9") for i in range(5_000)]

    started = time.perf_counter()
    hits = sum(big.matches(p) for p in probes)
    elapsed = time.perf_counter() - started

    assert hits == 5_000
    assert elapsed < 2.0, elapsed
