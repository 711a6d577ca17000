from __future__ import annotations

import random

import pytest
from pydantic import ValidationError

from phantom_spire.engine.lifecycle import ExecutionStatus, TaskStatus
from phantom_spire.engine.retry import BackoffStrategy, RetryPolicy, compute_delay
from phantom_spire.engine.worker import AttemptOutcome, decide_next_status


def policy(strategy: str, **kw: object) -> RetryPolicy:
    return RetryPolicy.model_validate(
        {"backoffStrategy": strategy, "initialDelay": 1000, "maxDelay": 60_000, "jitter": 0, **kw}
    )


@pytest.mark.parametrize(
    ("strategy", "expected"),
    [
        ("fixed", [1.0, 1.0, 1.0, 1.0]),
        ("linear", [1.0, 2.0, 3.0, 4.0]),
        ("exponential", [1.0, 2.0, 4.0, 8.0]),
    ],
)
def test_backoff_strategies_give_their_documented_delays(
    strategy: str, expected: list[float]
) -> None:
    p = policy(strategy)
    assert [compute_delay(p, n) for n in range(1, 5)] == expected


@pytest.mark.parametrize("strategy", list(BackoffStrategy))
def test_delay_is_capped_at_max_delay_even_for_attempt_1000(strategy: BackoffStrategy) -> None:
    p = policy(strategy, maxDelay=30_000)
    assert compute_delay(p, 1000) <= 30.0


def test_exponential_backoff_at_attempt_1000_returns_the_cap_without_overflow() -> None:
    p = policy("exponential", maxDelay=300_000)
    assert compute_delay(p, 1000) == 300.0
    assert compute_delay(p, 10**9) == 300.0


def test_jitter_only_shortens_a_delay_and_varies_it() -> None:
    p = policy("exponential", jitter=0.5)
    rng = random.Random(7)
    delays = [compute_delay(p, 3, rng) for _ in range(200)]
    assert all(2.0 <= d <= 4.0 for d in delays)
    assert len(set(delays)) > 100


def test_max_delay_below_initial_delay_is_refused_with_both_values() -> None:
    with pytest.raises(ValidationError, match=r"maxDelay \(10\).*initialDelay \(1000\)"):
        policy("fixed", maxDelay=10)


def test_attempt_numbers_below_one_are_refused() -> None:
    with pytest.raises(ValueError, match="got 0"):
        compute_delay(policy("fixed"), 0)


def test_retryable_failure_waits_then_dead_letters_when_attempts_run_out() -> None:
    p = policy("fixed", maxAttempts=2)
    failed = AttemptOutcome(ExecutionStatus.FAILED, error="boom")

    assert decide_next_status(failed, 1, p, now=100.0) == (TaskStatus.RETRY_WAIT, 101.0)
    assert decide_next_status(failed, 2, p, now=100.0) == (TaskStatus.DEAD_LETTERED, None)


def test_non_retryable_failure_fails_at_once() -> None:
    outcome = AttemptOutcome(ExecutionStatus.FAILED, error="bad input", retryable=False)
    assert decide_next_status(outcome, 1, policy("fixed"), now=0.0) == (TaskStatus.FAILED, None)


def test_timeout_is_retried_like_a_failure() -> None:
    outcome = AttemptOutcome(ExecutionStatus.TIMED_OUT, error="slow")
    status, at = decide_next_status(outcome, 1, policy("fixed"), now=0.0)
    assert status is TaskStatus.RETRY_WAIT and at == 1.0
