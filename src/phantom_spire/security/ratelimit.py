"""Per-API-key rate limits: a token bucket per key, answering "go" or "wait this long".

Each key has a bucket of ``burst`` tokens that refills at ``rate`` tokens per second; a
request takes one token (or ``cost``). An empty bucket answers with the seconds until enough
tokens are back, which the API sends as ``Retry-After`` with a 429.

Buckets live in this process's memory. With several API nodes each keeps its own, so a key
may get up to ``nodes x rate`` in total; if that matters, divide the configured rate by the
node count. Losing the buckets on restart only forgives past requests, which is harmless.
"""

from __future__ import annotations

import math
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

__all__ = [
    "DEFAULT_MAX_KEYS",
    "RateDecision",
    "RateLimit",
    "TokenBucketLimiter",
    "retry_after_header",
]

DEFAULT_MAX_KEYS = 100_000

# Float slack when comparing tokens: a client that waits exactly Retry-After must get in even
# if refill arithmetic lands a hair below a whole token.
_EPSILON = 1e-9

_PERIOD_SECONDS = {"second": 1.0, "minute": 60.0, "hour": 3600.0, "day": 86400.0}
_PERIOD_NAMES = {
    "second": ("s", "sec", "secs", "second", "seconds"),
    "minute": ("m", "min", "mins", "minute", "minutes"),
    "hour": ("h", "hr", "hrs", "hour", "hours"),
    "day": ("d", "day", "days"),
}
_PERIODS = {name: _PERIOD_SECONDS[unit] for unit, names in _PERIOD_NAMES.items() for name in names}
_RATE_TEXT = re.compile(r"\s*(\d+(?:\.\d+)?)\s*/\s*([a-z]+)\s*")


@dataclass(frozen=True)
class RateLimit:
    """A limit: ``rate`` tokens per second on average, up to ``burst`` at once.

    Raises:
        ValueError: ``rate`` is not a positive finite number or ``burst`` is below 1.
    """

    rate: float
    burst: float

    def __post_init__(self) -> None:
        if isinstance(self.rate, bool) or not isinstance(self.rate, int | float):
            raise ValueError(f"rate must be a number of tokens per second, got {self.rate!r}")
        if not math.isfinite(self.rate) or self.rate <= 0:
            raise ValueError(f"rate must be a positive, finite number, got {self.rate!r}")
        if isinstance(self.burst, bool) or not isinstance(self.burst, int | float):
            raise ValueError(f"burst must be a number of tokens, got {self.burst!r}")
        if not math.isfinite(self.burst) or self.burst < 1:
            raise ValueError(f"burst must be a finite number of at least 1, got {self.burst!r}")

    @classmethod
    def parse(cls, text: str, *, burst: float | None = None) -> RateLimit:
        """Read a setting like ``"120/minute"``, ``"5/s"`` or ``"1000 / hour"``.

        Args:
            text: ``<count>/<period>``; period is second, minute, hour or day, or a short
                form (s, sec, m, min, h, hr, d) or plural of one.
            burst: Bucket size; by default the count, so ``"120/minute"`` allows 120 at once.

        Raises:
            ValueError: the text does not have that shape; the message shows it.
        """
        match = _RATE_TEXT.fullmatch(text.lower()) if isinstance(text, str) else None
        period = _PERIODS.get(match[2]) if match else None
        if match is None or period is None:
            raise ValueError(
                f"rate limit {text!r} is not '<count>/<period>'; expected e.g. '120/minute', "
                f"with period one of {', '.join(sorted(_PERIODS, key=_PERIODS.__getitem__))}"
            )
        count = float(match[1])
        return cls(rate=count / period, burst=count if burst is None else burst)


@dataclass(frozen=True)
class RateDecision:
    """The answer for one request.

    Attributes:
        allowed: Whether the request may go ahead (a token was taken).
        retry_after: Seconds until it would be allowed; 0.0 when allowed.
        remaining: Whole tokens left after this request, for a ``RateLimit-Remaining`` header.
    """

    allowed: bool
    retry_after: float
    remaining: int


def retry_after_header(decision: RateDecision) -> str:
    """The ``Retry-After`` value: whole seconds, rounded up so a client never retries early."""
    return str(max(1, math.ceil(decision.retry_after)))


@dataclass
class _Bucket:
    tokens: float
    updated: float


class TokenBucketLimiter:
    """Token buckets keyed by API key id (or any string), safe to share between threads.

    Args:
        limit: The limit for keys without an override.
        overrides: Per-key limits, e.g. a higher one for an ingestion robot.
        clock: Monotonic seconds; inject a fake in tests.
        max_keys: When more buckets exist, full ones are dropped (a full bucket is the same as
            no bucket), then the least recently used, so memory stays bounded. Key buckets by
            the *authenticated* key id: keyed by anything a client makes up, eviction would
            let a client forgive itself by flooding new keys.
    """

    def __init__(
        self,
        limit: RateLimit,
        *,
        overrides: dict[str, RateLimit] | None = None,
        clock: Callable[[], float] = time.monotonic,
        max_keys: int = DEFAULT_MAX_KEYS,
    ) -> None:
        if not isinstance(max_keys, int) or max_keys < 1:
            raise ValueError(f"max_keys must be a positive integer, got {max_keys!r}")
        self._limit = limit
        self._overrides = dict(overrides or {})
        self._clock = clock
        self._max_keys = max_keys
        self._buckets: dict[str, _Bucket] = {}
        self._lock = threading.Lock()

    def limit_for(self, key: str) -> RateLimit:
        """The limit that applies to ``key``."""
        return self._overrides.get(key, self._limit)

    def acquire(self, key: str, cost: float = 1.0) -> RateDecision:
        """Take ``cost`` tokens from ``key``'s bucket if it holds them.

        Raises:
            ValueError: ``cost`` is not positive or exceeds the burst, so it could never be
                allowed.
        """
        limit = self.limit_for(key)
        if not (0 < cost <= limit.burst):
            raise ValueError(
                f"cost must be above 0 and at most the burst {limit.burst!r} for key {key!r}, "
                f"got {cost!r}"
            )

        with self._lock:
            now = self._clock()
            bucket = self._refilled(key, limit, now)
            if bucket.tokens + _EPSILON >= cost:
                bucket.tokens = max(0.0, bucket.tokens - cost)
                return RateDecision(True, 0.0, math.floor(bucket.tokens))
            wait = (cost - bucket.tokens) / limit.rate
            return RateDecision(False, wait, math.floor(bucket.tokens))

    def __len__(self) -> int:
        """How many keys have a bucket (bounded by ``max_keys``); useful as a gauge."""
        with self._lock:
            return len(self._buckets)

    def reset(self, key: str) -> None:
        """Forget ``key``'s bucket, e.g. after its API key is rotated or revoked."""
        with self._lock:
            self._buckets.pop(key, None)

    def _refilled(self, key: str, limit: RateLimit, now: float) -> _Bucket:
        bucket = self._buckets.get(key)
        if bucket is None:
            if len(self._buckets) >= self._max_keys:
                self._drop_full_buckets(now)
            bucket = self._buckets[key] = _Bucket(tokens=limit.burst, updated=now)
            return bucket
        # max(): an injected clock that steps back must not drain or overfill the bucket.
        elapsed = max(0.0, now - bucket.updated)
        bucket.tokens = min(limit.burst, bucket.tokens + elapsed * limit.rate)
        bucket.updated = max(bucket.updated, now)
        return bucket

    def _drop_full_buckets(self, now: float) -> None:
        for key, bucket in list(self._buckets.items()):
            limit = self.limit_for(key)
            if bucket.tokens + max(0.0, now - bucket.updated) * limit.rate >= limit.burst:
                del self._buckets[key]
        # Still full of busy keys: evict the least recently used ones rather than refuse a
        # new key; the evicted keys are merely forgiven their recent requests.
        excess = len(self._buckets) - self._max_keys + 1
        if excess > 0:
            for key in sorted(self._buckets, key=lambda k: self._buckets[k].updated)[:excess]:
                del self._buckets[key]
