"""The enricher's controls: cache, TTL, timeouts, quota, single flight, failure isolation."""

from __future__ import annotations

import asyncio
import logging

import pytest

from phantom_spire.cti.enrichment import (
    Enricher,
    EnrichmentResult,
    EnrichmentState,
    ProviderError,
    ProviderOutcome,
    ProviderPolicy,
    ProviderRateLimited,
    ProviderSpec,
    combine,
)
from phantom_spire.cti.indicators import Indicator, parse_indicator
from phantom_spire.security.ratelimit import RateLimit
from tests.unit.enrichment.conftest import FakeClock, FakeProvider

IP = parse_indicator("203.0.113.7")
DOMAIN = parse_indicator("evil[.]example")


def run(coro):  # type: ignore[no-untyped-def]
    return asyncio.run(coro)


def test_second_lookup_is_a_cache_hit(clock: FakeClock) -> None:
    provider = FakeProvider(answers={IP.value: 80.0})
    enricher = Enricher([provider], clock=clock)

    async def go() -> tuple[ProviderOutcome, ProviderOutcome]:
        return await enricher.lookup(IP, "fake"), await enricher.lookup(IP, "fake")

    first, second = run(go())
    assert (first.status, first.cached) == ("ok", False)
    assert (second.status, second.cached) == ("ok", True)
    assert second.result == first.result
    assert provider.calls == [IP.value]


def test_unknown_answers_are_cached_too(clock: FakeClock) -> None:
    provider = FakeProvider()
    enricher = Enricher([provider], clock=clock)

    async def go() -> list[ProviderOutcome]:
        return [await enricher.lookup(IP, "fake") for _ in range(3)]

    assert [o.status for o in run(go())] == ["unknown"] * 3
    assert len(provider.calls) == 1


def test_cache_entry_expires_after_its_ttl(clock: FakeClock) -> None:
    provider = FakeProvider(answers={IP.value: 10.0})
    enricher = Enricher([ProviderSpec(provider, ProviderPolicy(cache_ttl=60))], clock=clock)

    async def go() -> list[bool]:
        cached = [(await enricher.lookup(IP, "fake")).cached]
        clock.advance(59.9)
        cached.append((await enricher.lookup(IP, "fake")).cached)
        clock.advance(0.1)
        cached.append((await enricher.lookup(IP, "fake")).cached)
        return cached

    assert run(go()) == [False, True, False]
    assert len(provider.calls) == 2


def test_zero_ttl_and_use_cache_false_go_upstream(clock: FakeClock) -> None:
    no_cache = FakeProvider("nocache", answers={IP.value: 1.0})
    cached = FakeProvider("cached", answers={IP.value: 1.0})
    enricher = Enricher([ProviderSpec(no_cache, ProviderPolicy(cache_ttl=0)), cached], clock=clock)

    async def go() -> None:
        for _ in range(2):
            await enricher.enrich([IP])
        await enricher.enrich([IP], use_cache=False)

    run(go())
    assert len(no_cache.calls) == 3
    assert len(cached.calls) == 2  # first call, then the use_cache=False one


def test_slow_provider_times_out_and_the_other_answers() -> None:
    slow = FakeProvider("slow", answers={IP.value: 90.0}, delay=5)
    fast = FakeProvider("fast", answers={IP.value: 90.0})
    enricher = Enricher([ProviderSpec(slow, ProviderPolicy(timeout=0.05)), fast])

    [result] = run(enricher.enrich([IP]))
    assert result.outcomes["slow"].status == "timeout"
    assert "'slow'" in (result.outcomes["slow"].error or "")
    assert result.outcomes["fast"].status == "ok"
    assert result.score == 90.0 and result.verdict == "malicious"


def test_per_batch_timeout_overrides_the_policy() -> None:
    slow = FakeProvider("slow", answers={IP.value: 90.0}, delay=0.2)
    enricher = Enricher([ProviderSpec(slow, ProviderPolicy(timeout=30))])
    [result] = run(enricher.enrich([IP], timeout=0.02))
    assert result.outcomes["slow"].status == "timeout"


def test_timeouts_are_not_cached(clock: FakeClock) -> None:
    slow = FakeProvider("slow", answers={IP.value: 90.0}, delay=0.2)
    enricher = Enricher([ProviderSpec(slow, ProviderPolicy(timeout=0.02))], clock=clock)

    async def go() -> list[str]:
        return [(await enricher.lookup(IP, "slow")).status for _ in range(2)]

    assert run(go()) == ["timeout", "timeout"]
    assert len(slow.calls) == 2


def test_quota_refuses_beyond_max_wait(clock: FakeClock) -> None:
    provider = FakeProvider(answers={IP.value: 50.0, DOMAIN.value: 50.0})
    policy = ProviderPolicy(rate_limit=RateLimit.parse("1/minute"), cache_ttl=0)
    enricher = Enricher(
        [ProviderSpec(provider, policy)], clock=clock, sleep=clock.sleep, max_rate_wait=0
    )

    async def go() -> list[ProviderOutcome]:
        return [await enricher.lookup(IP, "fake"), await enricher.lookup(DOMAIN, "fake")]

    first, second = run(go())
    assert first.status == "ok"
    assert second.status == "rate_limited"
    assert second.retry_after == pytest.approx(60.0)
    assert "'fake'" in (second.error or "")
    assert provider.calls == [IP.value]
    # A minute later the bucket has a token again.
    clock.advance(60)
    assert run(enricher.lookup(DOMAIN, "fake")).status == "ok"


def test_quota_waits_when_allowed_to(clock: FakeClock) -> None:
    provider = FakeProvider(answers={IP.value: 50.0, DOMAIN.value: 50.0})
    policy = ProviderPolicy(rate_limit=RateLimit.parse("2/minute", burst=1))
    enricher = Enricher(
        [ProviderSpec(provider, policy)], clock=clock, sleep=clock.sleep, max_rate_wait=120
    )
    start = clock.now

    async def go() -> list[ProviderOutcome]:
        return [await enricher.lookup(IP, "fake"), await enricher.lookup(DOMAIN, "fake")]

    outcomes = run(go())
    assert [o.status for o in outcomes] == ["ok", "ok"]
    assert clock.slept == [pytest.approx(30.0)]  # one token per 30 s
    assert clock.now - start == pytest.approx(30.0)
    assert provider.calls == [IP.value, DOMAIN.value]


def test_quota_is_per_provider_and_shared_through_state(clock: FakeClock) -> None:
    limited = FakeProvider("limited", answers={IP.value: 50.0})
    free = FakeProvider("free", answers={IP.value: 50.0})
    state = EnrichmentState(clock)
    specs = [
        ProviderSpec(limited, ProviderPolicy(rate_limit=RateLimit.parse("1/hour"), cache_ttl=0)),
        ProviderSpec(free, ProviderPolicy(cache_ttl=0)),
    ]
    # Two enrichers (two tasks) on one state draw on one quota.
    first = Enricher(specs, state=state, sleep=clock.sleep, max_rate_wait=0)
    second = Enricher(specs, state=state, sleep=clock.sleep, max_rate_wait=0)

    [a] = run(first.enrich([IP]))
    [b] = run(second.enrich([IP]))
    assert a.outcomes["limited"].status == "ok"
    assert b.outcomes["limited"].status == "rate_limited"
    assert b.outcomes["free"].status == "ok"


def test_429_backs_the_provider_off_for_retry_after(clock: FakeClock) -> None:
    provider = FakeProvider(fail=ProviderRateLimited("'fake' answered HTTP 429", 120.0))
    enricher = Enricher([provider], clock=clock, sleep=clock.sleep, max_rate_wait=0)

    outcome = run(enricher.lookup(IP, "fake"))
    assert outcome.status == "rate_limited" and outcome.retry_after == 120.0
    assert len(provider.calls) == 1
    # Within the back-off the provider is not called at all, for any value.
    clock.advance(119)
    outcome = run(enricher.lookup(DOMAIN, "fake"))
    assert outcome.status == "rate_limited"
    assert outcome.retry_after == pytest.approx(1.0)
    assert len(provider.calls) == 1
    clock.advance(1)
    provider.fail = None
    assert run(enricher.lookup(DOMAIN, "fake")).status == "unknown"
    assert len(provider.calls) == 2


def test_429_with_short_retry_after_is_retried_once_after_waiting(clock: FakeClock) -> None:
    class Flaky(FakeProvider):
        async def lookup(self, indicator: Indicator) -> EnrichmentResult | None:
            self.calls.append(indicator.value)
            if len(self.calls) == 1:
                raise ProviderRateLimited("429", 2.0)
            return EnrichmentResult(self.name, "benign", 0.0, fetched_at=1.0)

    provider = Flaky()
    enricher = Enricher([provider], clock=clock, sleep=clock.sleep, max_rate_wait=10)
    assert run(enricher.lookup(IP, "fake")).status == "ok"
    assert clock.slept == [pytest.approx(2.0)]
    assert len(provider.calls) == 2


def test_single_flight_100_concurrent_lookups_one_upstream_call(clock: FakeClock) -> None:
    provider = FakeProvider(answers={IP.value: 75.0}, delay=0.05)
    enricher = Enricher([provider], clock=clock)

    async def go() -> list[ProviderOutcome]:
        return await asyncio.gather(*(enricher.lookup(IP, "fake") for _ in range(100)))

    outcomes = run(go())
    assert len(provider.calls) == 1
    assert {o.status for o in outcomes} == {"ok"}
    assert len({id(o.result) for o in outcomes}) == 1
    assert not enricher.state.inflight  # forgotten once done


def test_single_flight_without_cache_still_shares_the_call(clock: FakeClock) -> None:
    provider = FakeProvider(answers={IP.value: 75.0}, delay=0.05)
    enricher = Enricher([ProviderSpec(provider, ProviderPolicy(cache_ttl=0))], clock=clock)

    async def go() -> None:
        await asyncio.gather(*(enricher.lookup(IP, "fake") for _ in range(100)))

    run(go())
    assert len(provider.calls) == 1
    run(go())
    assert len(provider.calls) == 2  # nothing cached: a later burst makes one new call


def test_cancelled_waiter_does_not_cancel_the_shared_call(clock: FakeClock) -> None:
    provider = FakeProvider(answers={IP.value: 75.0}, delay=0.05)
    enricher = Enricher([provider], clock=clock)

    async def go() -> ProviderOutcome:
        impatient = asyncio.create_task(enricher.lookup(IP, "fake"))
        patient = asyncio.create_task(enricher.lookup(IP, "fake"))
        await asyncio.sleep(0.01)
        impatient.cancel()
        return await patient

    assert run(go()).status == "ok"
    assert len(provider.calls) == 1


def test_one_failing_provider_does_not_fail_the_others(caplog: pytest.LogCaptureFixture) -> None:
    broken = FakeProvider("broken", fail=ProviderError("'broken' failed with HTTP 500"))
    buggy = FakeProvider("buggy", fail=KeyError("oops"))
    good = FakeProvider("good", answers={IP.value: 80.0, DOMAIN.value: 20.0})
    enricher = Enricher([broken, buggy, good])

    with caplog.at_level(logging.INFO):
        results = run(enricher.enrich([IP, DOMAIN]))
    for result in results:
        assert result.outcomes["broken"].status == "error"
        assert result.outcomes["broken"].error == "'broken' failed with HTTP 500"
        assert result.outcomes["buggy"].status == "error"
        assert "KeyError" in (result.outcomes["buggy"].error or "")
        assert result.outcomes["good"].status == "ok"
    assert [r.score for r in results] == [80.0, 20.0]
    assert [r.verdict for r in results] == ["malicious", "benign"]


def test_errors_are_not_cached(clock: FakeClock) -> None:
    broken = FakeProvider("broken", fail=ProviderError("down"))
    enricher = Enricher([broken], clock=clock)

    async def go() -> None:
        await enricher.lookup(IP, "broken")
        await enricher.lookup(IP, "broken")

    run(go())
    assert len(broken.calls) == 2


def test_enrich_deduplicates_and_skips_unsupported_types(clock: FakeClock) -> None:
    ip_only = FakeProvider("ip", answers={IP.value: 40.0}, types=frozenset({"ipv4"}))
    enricher = Enricher([ip_only], clock=clock)
    results = run(enricher.enrich([IP, DOMAIN, parse_indicator("203.0.113[.]7")]))
    assert [r.indicator for r in results] == [IP, DOMAIN]
    assert results[1].outcomes["ip"].status == "unsupported"
    assert (results[1].score, results[1].verdict) == (None, "unknown")
    assert ip_only.calls == [IP.value]


def test_unknown_provider_name_is_named() -> None:
    enricher = Enricher([FakeProvider("a")])
    with pytest.raises(ValueError, match=r"unknown enrichment provider 'nope'.*known providers: a"):
        run(enricher.enrich([IP], providers=["nope"]))
    with pytest.raises(ValueError, match="two enrichment providers are named 'a'"):
        Enricher([FakeProvider("a"), FakeProvider("a")])


def test_combine_weights_and_warning_list_cap() -> None:
    def ok(name: str, verdict: str, score: float | None) -> ProviderOutcome:
        return ProviderOutcome(name, "ok", EnrichmentResult(name, verdict, score))  # type: ignore[arg-type]

    assert combine([ok("a", "malicious", 90), ok("b", "benign", 30)]) == (60.0, "suspicious")
    assert combine([ok("a", "malicious", 90), ok("b", "benign", 30)], {"a": 3, "b": 1}) == (
        75.0,
        "malicious",
    )
    assert combine([ok("a", "malicious", 90), ok("w", "benign", None)]) == (15.0, "benign")
    assert combine([ok("w", "benign", None)]) == (0.0, "benign")
    assert combine([ProviderOutcome("a", "error", error="x")]) == (None, "unknown")


def test_cache_is_bounded() -> None:
    from phantom_spire.cti.enrichment import TTLCache

    clock = FakeClock()
    cache = TTLCache(clock, max_entries=2)
    for n in range(3):
        cache.put(("p", "ipv4", f"10.0.0.{n}"), None, 60)
    assert len(cache) == 2
    assert cache.get(("p", "ipv4", "10.0.0.0")) == (False, None)
    assert cache.get(("p", "ipv4", "10.0.0.2")) == (True, None)
