"""Store-knowledge and warning-list providers."""

from __future__ import annotations

import asyncio
from typing import Any

from phantom_spire.cti.enrichment import Enricher, KnownIndicatorProvider, WarningListProvider
from phantom_spire.cti.indicators import parse_indicator
from phantom_spire.cti.warninglists import WarningList, WarningLists


def test_known_provider_with_sync_and_async_lookups() -> None:
    rows: dict[tuple[str, str], dict[str, Any]] = {
        ("ipv4", "203.0.113.7"): {
            "id": 5,
            "sources": ["feed-a", "feed-b", "feed-c"],
            "count": 4,
            "first_seen": 1.0,
            "last_seen": 2.0,
            "confidence": None,
            "tags": [],
        },
        ("domain", "cdn.example"): {"sources": ["a"], "tags": ["warninglist:cdns"]},
    }

    def known(kind: str, value: str) -> dict[str, Any] | None:
        return rows.get((kind, value))

    async def known_async(kind: str, value: str) -> dict[str, Any] | None:
        return rows.get((kind, value))

    for fn in (known, known_async):
        provider = KnownIndicatorProvider(fn, wall_clock=lambda: 42.0)
        result = asyncio.run(provider.lookup(parse_indicator("203.0.113.7")))
        assert result is not None
        assert (result.verdict, result.score, result.fetched_at) == ("suspicious", 60.0, 42.0)
        assert result.raw["sources"] == ["feed-a", "feed-b", "feed-c"]
        assert "id" not in result.raw
        assert asyncio.run(provider.lookup(parse_indicator("198.51.100.1"))) is None
        benign = asyncio.run(provider.lookup(parse_indicator("cdn.example")))
        assert benign is not None and (benign.verdict, benign.score) == ("benign", None)


def test_stored_confidence_is_the_score() -> None:
    provider = KnownIndicatorProvider(lambda t, v: {"sources": ["x"], "confidence": 85})
    result = asyncio.run(provider.lookup(parse_indicator("evil.example")))
    assert result is not None and (result.verdict, result.score) == ("malicious", 85.0)


def test_warning_list_match_caps_the_combined_score() -> None:
    lists = WarningLists(
        [
            WarningList.from_entries("google-dns", "cidr", ["8.8.8.0/24"]),
            WarningList.from_entries("top-domains", "hostname", ["example.com"]),
        ]
    )
    warn = WarningListProvider(lists)
    store = KnownIndicatorProvider(lambda t, v: {"sources": ["a", "b", "c", "d", "e", "f"]})
    enricher = Enricher([warn, store])
    results = asyncio.run(
        enricher.enrich(
            [
                parse_indicator("8.8.8.8"),
                parse_indicator("www.example.com"),
                parse_indicator("evil.example"),
            ]
        )
    )
    dns, www, evil = results
    assert dns.outcomes["warninglists"].result.tags == ("warninglist:google-dns",)  # type: ignore[union-attr]
    assert (dns.score, dns.verdict) == (15.0, "benign")
    assert "warninglist:top-domains" in www.to_dict()["tags"]
    assert evil.outcomes["warninglists"].status == "unknown"
    assert (evil.score, evil.verdict) == (90.0, "malicious")
