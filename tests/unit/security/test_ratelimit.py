"""Per-key token buckets: bursts, refill, Retry-After, overrides and bounded memory."""

from __future__ import annotations

import threading

import pytest
from hypothesis import given
from hypothesis import strategies as st

from phantom_spire.security import RateDecision, RateLimit, TokenBucketLimiter, retry_after_header


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def limiter(
    rate: float = 1.0, burst: float = 3, **kwargs: object
) -> tuple[TokenBucketLimiter, FakeClock]:
    clock = FakeClock()
    return TokenBucketLimiter(RateLimit(rate, burst), clock=clock, **kwargs), clock  # type: ignore[arg-type]


def test_a_burst_is_allowed_then_the_next_request_must_wait() -> None:
    limit, _ = limiter(rate=2.0, burst=3)

    decisions = [limit.acquire("k1") for _ in range(4)]

    assert [d.allowed for d in decisions] == [True, True, True, False]
    assert [d.remaining for d in decisions[:3]] == [2, 1, 0]
    assert decisions[3].retry_after == pytest.approx(0.5)


def test_tokens_come_back_at_the_configured_rate() -> None:
    limit, clock = limiter(rate=2.0, burst=3)
    for _ in range(3):
        limit.acquire("k1")

    clock.now += 0.49
    assert not limit.acquire("k1").allowed
    clock.now += 0.01
    assert limit.acquire("k1").allowed


def test_the_bucket_never_holds_more_than_the_burst() -> None:
    limit, clock = limiter(rate=10.0, burst=2)
    limit.acquire("k1")
    clock.now += 3600
    assert [limit.acquire("k1").allowed for _ in range(3)] == [True, True, False]


def test_keys_have_separate_buckets() -> None:
    limit, _ = limiter(rate=1.0, burst=1)
    assert limit.acquire("k1").allowed
    assert not limit.acquire("k1").allowed
    assert limit.acquire("k2").allowed


def test_retry_after_is_the_time_until_enough_tokens_for_the_cost() -> None:
    limit, _ = limiter(rate=0.5, burst=4)
    limit.acquire("k1", cost=3)
    decision = limit.acquire("k1", cost=4)
    assert not decision.allowed and decision.retry_after == pytest.approx(6.0)


def test_a_refused_request_takes_no_tokens() -> None:
    limit, clock = limiter(rate=1.0, burst=2)
    limit.acquire("k1", cost=2)
    for _ in range(5):
        assert not limit.acquire("k1").allowed
    clock.now += 1.0
    assert limit.acquire("k1").allowed


@pytest.mark.parametrize(
    ("seconds", "header"), [(0.0, "1"), (0.2, "1"), (1.0, "1"), (1.01, "2"), (59.5, "60")]
)
def test_retry_after_header_rounds_up_to_whole_seconds(seconds: float, header: str) -> None:
    assert retry_after_header(RateDecision(False, seconds, 0)) == header


def test_an_override_gives_one_key_its_own_limit() -> None:
    clock = FakeClock()
    limit = TokenBucketLimiter(
        RateLimit(1, 1), overrides={"robot": RateLimit(100, 50)}, clock=clock
    )
    assert sum(limit.acquire("robot").allowed for _ in range(60)) == 50
    assert sum(limit.acquire("human").allowed for _ in range(60)) == 1


def test_a_clock_stepping_back_neither_adds_nor_removes_tokens() -> None:
    limit, clock = limiter(rate=1.0, burst=2)
    limit.acquire("k1", cost=2)
    clock.now -= 100
    assert not limit.acquire("k1").allowed
    clock.now += 100.5
    assert not limit.acquire("k1").allowed
    clock.now += 0.5
    assert limit.acquire("k1").allowed


def test_reset_forgets_a_keys_bucket() -> None:
    limit, _ = limiter(rate=1.0, burst=1)
    limit.acquire("k1")
    limit.reset("k1")
    assert limit.acquire("k1").allowed


@pytest.mark.parametrize("cost", [0, -1, 4])
def test_a_cost_that_could_never_be_met_is_refused(cost: float) -> None:
    limit, _ = limiter(rate=1.0, burst=3)
    with pytest.raises(ValueError, match=rf"burst 3.*got {cost}"):
        limit.acquire("k1", cost=cost)


@pytest.mark.parametrize(
    ("rate", "burst", "fragment"),
    [
        (0, 1, "rate.*0"),
        (-1, 1, "rate.*-1"),
        (float("inf"), 1, "rate.*inf"),
        (1, 0.5, "burst.*0.5"),
        ("5", 1, "rate.*'5'"),
        (True, 1, "rate.*True"),
    ],
)
def test_a_bad_limit_is_refused_naming_the_value(
    rate: object, burst: object, fragment: str
) -> None:
    with pytest.raises(ValueError, match=fragment):
        RateLimit(rate, burst)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("text", "rate", "burst"),
    [
        ("120/minute", 2.0, 120.0),
        ("5/s", 5.0, 5.0),
        ("3600 / hours", 1.0, 3600.0),
        ("1/day", 1 / 86400, 1.0),
    ],
)
def test_rate_limits_parse_from_settings(text: str, rate: float, burst: float) -> None:
    parsed = RateLimit.parse(text)
    assert parsed.rate == pytest.approx(rate) and parsed.burst == burst


def test_a_parsed_limit_may_set_its_own_burst() -> None:
    assert RateLimit.parse("60/min", burst=10).burst == 10


@pytest.mark.parametrize("text", ["fast", "10", "10/ms", "10/fortnight", "-1/s", "/s", "0/s"])
def test_a_malformed_rate_setting_names_the_text(text: str) -> None:
    with pytest.raises(ValueError, match=repr(text) if text != "0/s" else "positive"):
        RateLimit.parse(text)


def test_max_keys_must_be_positive() -> None:
    with pytest.raises(ValueError, match=r"max_keys.*0"):
        TokenBucketLimiter(RateLimit(1, 1), max_keys=0)


def test_memory_stays_bounded_by_dropping_full_buckets_first() -> None:
    limit, clock = limiter(rate=1.0, burst=2, max_keys=3)
    limit.acquire("busy", cost=2)
    limit.acquire("idle-1")
    limit.acquire("idle-2")
    clock.now += 1.0  # the idle buckets are full again, the busy one is not

    limit.acquire("new")

    assert len(limit) == 2
    assert not limit.acquire("busy", cost=2).allowed, "a busy key must not be forgiven"


def test_when_every_bucket_is_busy_the_least_recently_used_is_evicted() -> None:
    limit, clock = limiter(rate=0.001, burst=1, max_keys=2)
    limit.acquire("old")
    clock.now += 1
    limit.acquire("recent")
    clock.now += 1
    limit.acquire("new")

    assert len(limit) == 2
    assert not limit.acquire("recent").allowed
    assert limit.acquire("old").allowed, "the evicted key starts again with a full bucket"


def test_concurrent_requests_never_exceed_the_burst() -> None:
    limit = TokenBucketLimiter(RateLimit(1e-9, 100), clock=lambda: 0.0)
    allowed: list[bool] = []
    lock = threading.Lock()

    def hammer() -> None:
        for _ in range(50):
            ok = limit.acquire("shared").allowed
            with lock:
                allowed.append(ok)

    threads = [threading.Thread(target=hammer) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert sum(allowed) == 100 and len(allowed) == 400


@given(
    rate=st.floats(0.1, 100),
    burst=st.integers(1, 20),
    steps=st.lists(st.floats(0, 5), min_size=1, max_size=40),
)
def test_allowed_requests_never_exceed_burst_plus_rate_times_elapsed(
    rate: float, burst: int, steps: list[float]
) -> None:
    limit, clock = limiter(rate=rate, burst=burst)
    start = clock.now
    allowed = 0
    for step in steps:
        clock.now += step
        decision = limit.acquire("k")
        allowed += decision.allowed
        if not decision.allowed:
            assert decision.retry_after > 0
            clock.now += decision.retry_after
            assert limit.acquire("k").allowed, "waiting retry_after must be enough"
            allowed += 1
    assert allowed <= burst + rate * (clock.now - start) + 1e-6
