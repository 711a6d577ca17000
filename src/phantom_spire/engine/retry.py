"""Retry policy: how many attempts, and how long to wait before the next one."""

from __future__ import annotations

import random
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydantic.alias_generators import to_camel

__all__ = ["BackoffStrategy", "RetryPolicy", "compute_delay"]


class BackoffStrategy(StrEnum):
    FIXED = "fixed"
    LINEAR = "linear"
    EXPONENTIAL = "exponential"


class RetryPolicy(BaseModel):
    """When and how often a failed attempt is tried again. Delays are in milliseconds."""

    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, frozen=True, extra="forbid"
    )

    max_attempts: int = Field(default=3, ge=1, le=1000)
    backoff_strategy: BackoffStrategy = BackoffStrategy.EXPONENTIAL
    initial_delay: int = Field(default=1000, ge=0, description="Delay before attempt 2, in ms.")
    max_delay: int = Field(default=300_000, ge=0, description="Upper bound of any delay, in ms.")
    jitter: float = Field(
        default=0.1, ge=0.0, le=1.0, description="Random share subtracted from each delay."
    )

    @model_validator(mode="after")
    def _check_bounds(self) -> RetryPolicy:
        if self.max_delay < self.initial_delay:
            raise ValueError(
                f"maxDelay ({self.max_delay}) must be at least initialDelay ({self.initial_delay})"
            )
        return self


def compute_delay(
    policy: RetryPolicy, failed_attempt: int, rng: random.Random | None = None
) -> float:
    """Seconds to wait after ``failed_attempt`` (1-based) before the next one.

    The delay never exceeds ``max_delay`` and is computed without overflow for any
    attempt number: the exponent is capped before the power is taken. Jitter only ever
    shortens a delay, so the cap stays a true upper bound.
    """
    if failed_attempt < 1:
        raise ValueError(f"failed_attempt must be >= 1, got {failed_attempt!r}")

    base_ms = _base_delay_ms(policy, failed_attempt)

    if policy.jitter:
        rng = rng or random.Random()
        base_ms -= base_ms * policy.jitter * rng.random()

    return base_ms / 1000.0


def _base_delay_ms(policy: RetryPolicy, n: int) -> float:
    initial, cap = float(policy.initial_delay), float(policy.max_delay)
    if policy.backoff_strategy is BackoffStrategy.FIXED:
        return min(initial, cap)
    if policy.backoff_strategy is BackoffStrategy.LINEAR:
        return min(initial * n, cap)

    if initial <= 0:
        return 0.0
    # 2**63 is far beyond any cap in ms; stopping there keeps the float finite.
    exponent = min(n - 1, 63)
    return min(initial * (2.0**exponent), cap)
