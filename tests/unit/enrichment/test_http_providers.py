"""HTTP providers against httpx.MockTransport and a real fake service on 127.0.0.1."""

from __future__ import annotations

import asyncio
import json
import logging
from datetime import UTC, datetime
from email.utils import format_datetime

import httpx
import pytest

from phantom_spire.cti.enrichment import (
    AbuseIPDBProvider,
    Enricher,
    ProviderConfig,
    ProviderError,
    ProviderRateLimited,
    VirusTotalProvider,
    build_provider,
    parse_retry_after,
)
from phantom_spire.cti.indicators import parse_indicator
from tests.unit.enrichment.conftest import API_KEY
from tests.unit.enrichment.fakeserver import FakeReputationService, Scripted

IP = parse_indicator("198.51.100.23")
STATS = {"malicious": 12, "suspicious": 2, "harmless": 50, "undetected": 16}


def vt_config(url: str, **extra: object) -> ProviderConfig:
    return ProviderConfig.model_validate(
        {"name": "vt", "kind": "virustotal", "url": url, "apiKey": API_KEY, **extra}
    )


def abuse_config(url: str, **extra: object) -> ProviderConfig:
    return ProviderConfig.model_validate(
        {"name": "abuse", "kind": "abuseipdb", "url": url, "apiKey": API_KEY, **extra}
    )


# --- unit level: MockTransport -------------------------------------------------------------


def test_virustotal_paths_header_and_scoring() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(
            200, json={"data": {"attributes": {"last_analysis_stats": STATS, "tags": ["c2"]}}}
        )

    provider = VirusTotalProvider(
        "vt", "http://127.0.0.1:9", API_KEY, transport=httpx.MockTransport(handler)
    )
    values = [
        "198.51.100.23",
        "2001:db8::1",
        "evil.example",
        "D41D8CD98F00B204E9800998ECF8427E",
        "http://evil.example/a?b=c",
    ]

    async def go() -> list[object]:
        return [await provider.lookup(parse_indicator(v)) for v in values]

    results = asyncio.run(go())
    assert [r.url.path for r in seen] == [
        "/api/v3/ip_addresses/198.51.100.23",
        "/api/v3/ip_addresses/2001:db8::1",
        "/api/v3/domains/evil.example",
        "/api/v3/files/d41d8cd98f00b204e9800998ecf8427e",
        "/api/v3/urls/aHR0cDovL2V2aWwuZXhhbXBsZS9hP2I9Yw",
    ]
    assert all(r.headers["x-apikey"] == API_KEY for r in seen)
    result = results[0]
    assert result.provider == "vt" and result.verdict == "malicious"  # type: ignore[attr-defined]
    # (12 + 2/2) of 80 engines is 16 %, raised to 70 because 12 >= 3 engines say malicious.
    assert result.score == 70.0  # type: ignore[attr-defined]
    assert result.tags == ("c2",)  # type: ignore[attr-defined]


def test_abuseipdb_query_header_and_scoring() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(
            200, json={"data": {"abuseConfidenceScore": 42, "totalReports": 7, "isTor": True}}
        )

    provider = AbuseIPDBProvider(
        "abuse", "http://127.0.0.1:9/", API_KEY, transport=httpx.MockTransport(handler)
    )
    result = asyncio.run(provider.lookup(IP))
    assert seen[0].url.path == "/api/v2/check"
    assert dict(seen[0].url.params) == {"ipAddress": IP.value, "maxAgeInDays": "90"}
    assert seen[0].headers["Key"] == API_KEY
    assert result is not None
    assert (result.verdict, result.score, result.tags) == ("suspicious", 42.0, ("tor",))
    assert result.raw["totalReports"] == 7


@pytest.mark.parametrize(
    ("status", "headers", "expected"),
    [
        (404, {}, None),
        (429, {"Retry-After": "17"}, ProviderRateLimited),
        (500, {}, ProviderError),
        (503, {}, ProviderError),
        (401, {}, ProviderError),
        (302, {"Location": "http://127.0.0.1:10/elsewhere"}, ProviderError),
    ],
)
def test_status_mapping(status: int, headers: dict[str, str], expected: object) -> None:
    transport = httpx.MockTransport(lambda request: httpx.Response(status, headers=headers))
    provider = VirusTotalProvider("vt", "http://127.0.0.1:9", API_KEY, transport=transport)
    if expected is None:
        assert asyncio.run(provider.lookup(IP)) is None
        return
    with pytest.raises(expected) as info:  # type: ignore[call-overload]
        asyncio.run(provider.lookup(IP))
    assert API_KEY not in str(info.value)
    if status == 429:
        assert info.value.retry_after == 17.0


def test_retry_after_forms() -> None:
    now = 1_700_000_000.0
    date = format_datetime(datetime.fromtimestamp(now + 90, UTC), usegmt=True)
    assert parse_retry_after("5", now) == 5.0
    assert parse_retry_after(date, now) == pytest.approx(90.0)
    assert parse_retry_after(None, now) == 60.0
    assert parse_retry_after("soon", now) == 60.0
    assert parse_retry_after("-3", now) == 0.0
    assert parse_retry_after("1e12", now) == 86_400.0


def test_bad_bodies_are_provider_errors() -> None:
    bodies = [b"not json", b"[1, 2]", json.dumps({"data": {}}).encode()]
    for body in bodies:
        transport = httpx.MockTransport(
            lambda request, body=body: httpx.Response(200, content=body)
        )
        provider = AbuseIPDBProvider("abuse", "http://127.0.0.1:9", API_KEY, transport=transport)
        with pytest.raises(ProviderError, match="'abuse'"):
            asyncio.run(provider.lookup(IP))


def test_config_validates_and_hides_the_key() -> None:
    config = vt_config("http://127.0.0.1:9", rateLimit="4/minute")
    assert API_KEY not in repr(config) and API_KEY not in str(config.model_dump())
    assert config.policy().rate_limit is not None
    spec = build_provider(config)
    assert API_KEY not in repr(spec) and API_KEY not in repr(spec.provider)
    with pytest.raises(ValueError, match="http"):
        vt_config("ftp://127.0.0.1/")
    with pytest.raises(ValueError, match="credentials"):
        vt_config("http://user:pw@127.0.0.1/")
    with pytest.raises(ValueError, match="not '<count>/<period>'"):
        vt_config("http://127.0.0.1:9", rateLimit="lots")


# --- against a real server on 127.0.0.1 ----------------------------------------------------


def test_loopback_server_answers_unknowns_429_500_and_slow(
    service: FakeReputationService, base_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    service.vt[IP.value] = {"last_analysis_stats": STATS, "reputation": -40}
    service.abuse[IP.value] = {"abuseConfidenceScore": 100, "totalReports": 311}
    service.abuse["198.51.100.24"] = {"abuseConfidenceScore": 0, "isWhitelisted": True}
    service.scripted["192.0.2.1"] = Scripted(429, {"Retry-After": "3600"})
    service.scripted["192.0.2.2"] = Scripted(500, body={"error": "boom"})
    service.scripted["192.0.2.3"] = Scripted(200, body={"data": {}}, delay=3.0)
    # The service echoes the key back: it must not reach the result.
    service.vt["198.51.100.24"] = {"last_analysis_stats": {"harmless": 3}, "as_owner": API_KEY}

    enricher = Enricher(
        [
            build_provider(vt_config(base_url, timeoutSeconds=1.0)),
            build_provider(abuse_config(base_url, timeoutSeconds=1.0)),
        ],
        max_rate_wait=0,
    )
    values = ["198.51.100.23", "198.51.100.24", "203.0.113.99", "192.0.2.2", "192.0.2.3"]

    async def go():  # type: ignore[no-untyped-def]
        first = await enricher.enrich([parse_indicator(v) for v in values])
        limited = await enricher.enrich([parse_indicator("192.0.2.1")])
        after = await enricher.enrich([parse_indicator("203.0.113.100")], providers=["vt"])
        for spec_name in enricher.names:
            await enricher.spec(spec_name).provider.aclose()  # type: ignore[attr-defined]
        return first, limited, after

    with caplog.at_level(logging.DEBUG):
        first, limited, after = asyncio.run(go())
    by_value = {r.indicator.value: r for r in first}

    known = by_value["198.51.100.23"]
    assert known.outcomes["vt"].status == "ok" and known.outcomes["abuse"].status == "ok"
    assert known.outcomes["abuse"].result.score == 100.0  # type: ignore[union-attr]
    assert known.verdict == "malicious"
    whitelisted = by_value["198.51.100.24"]
    assert whitelisted.outcomes["abuse"].result.verdict == "benign"  # type: ignore[union-attr]
    assert by_value["203.0.113.99"].outcomes["vt"].status == "unknown"  # 404
    assert by_value["203.0.113.99"].verdict == "unknown"
    assert by_value["192.0.2.2"].outcomes["vt"].status == "error"
    assert "HTTP 500" in (by_value["192.0.2.2"].outcomes["vt"].error or "")
    assert by_value["192.0.2.3"].outcomes["abuse"].status == "timeout"

    # 429 with Retry-After: 3600 backs the provider off; later lookups are not even sent.
    [hit] = limited
    assert hit.outcomes["vt"].status == "rate_limited"
    assert hit.outcomes["vt"].retry_after == pytest.approx(3600.0)
    vt_calls = service.calls("/api/v3/")
    [later] = after
    assert later.outcomes["vt"].status == "rate_limited"
    assert service.calls("/api/v3/") == vt_calls

    # Key sent in headers only; never in results, errors or logs.
    assert all(h.get("x-apikey") == API_KEY or h.get("key") == API_KEY for _, h in service.requests)
    dumped = json.dumps([r.to_dict() for r in [*first, *limited, *after]])
    assert API_KEY not in dumped
    assert "[redacted]" in dumped
    assert API_KEY not in caplog.text
    assert all(API_KEY not in path for path, _ in service.requests)


def test_loopback_wrong_key_is_an_error_without_the_key(
    service: FakeReputationService, base_url: str
) -> None:
    service.vt[IP.value] = {"last_analysis_stats": STATS}
    config = ProviderConfig.model_validate(
        {"name": "vt", "kind": "virustotal", "url": base_url, "apiKey": "wrong-secret-key"}
    )
    enricher = Enricher([build_provider(config)])
    [result] = asyncio.run(enricher.enrich([IP]))
    assert result.outcomes["vt"].status == "error"
    assert "HTTP 401" in (result.outcomes["vt"].error or "")
    assert "wrong-secret-key" not in json.dumps(result.to_dict())


def test_unreachable_service_is_an_error() -> None:
    # Port 9 (discard) on 127.0.0.1: nothing listens there on test machines.
    enricher = Enricher([build_provider(vt_config("http://127.0.0.1:9"))])
    [result] = asyncio.run(enricher.enrich([IP]))
    assert result.outcomes["vt"].status == "error"
    assert "ConnectError" in (result.outcomes["vt"].error or "")
