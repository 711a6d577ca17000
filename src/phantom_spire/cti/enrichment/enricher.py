"""Fan a batch of indicators out to enrichment providers, with the controls an external quota needs.

For every provider the `Enricher` applies, in this order:

1. a TTL cache keyed by provider and canonical ``(type, value)`` (answers "unknown" are cached
   too: asking again within the TTL would spend quota for the same 404);
2. single flight: concurrent lookups of one value on one provider share one upstream call;
3. the provider's rate limit (a token bucket, plus any back-off a 429 asked for). This is the
   external service's quota and deliberately separate from worker concurrency: many tasks on
   many workers share one bucket when they share an `EnrichmentState`. A lookup waits for a
   token up to ``max_rate_wait`` seconds, and is refused (status ``rate_limited``) beyond;
4. a per-lookup timeout.

A provider that fails only fails its own outcome; the others' answers are still returned.

The cache, buckets and in-flight calls live in this process's memory (`EnrichmentState`);
with several worker processes each has its own, so divide a provider's quota accordingly.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Collection, Iterable, Mapping
from contextlib import AbstractAsyncContextManager, nullcontext
from dataclasses import dataclass, field
from typing import Any, Literal

from phantom_spire.cti.enrichment.base import (
    EnrichmentResult,
    Provider,
    ProviderError,
    ProviderRateLimited,
    Verdict,
)
from phantom_spire.cti.indicators import Indicator
from phantom_spire.security.ratelimit import RateLimit, TokenBucketLimiter

__all__ = [
    "MALICIOUS_AT",
    "SUSPICIOUS_AT",
    "WARNING_LIST_CAP",
    "Enricher",
    "EnrichmentState",
    "IndicatorEnrichment",
    "ProviderOutcome",
    "ProviderPolicy",
    "ProviderSpec",
    "TTLCache",
    "combine",
]

logger = logging.getLogger(__name__)

Status = Literal["ok", "unknown", "error", "timeout", "rate_limited", "unsupported"]
CacheKey = tuple[str, str, str]

MALICIOUS_AT = 70.0
"""Combined score from which the verdict is ``malicious``."""
SUSPICIOUS_AT = 30.0
"""Combined score from which the verdict is ``suspicious``."""
WARNING_LIST_CAP = 15.0
"""Highest combined score of a value a provider calls benign without a score (a warning list)."""


@dataclass(frozen=True)
class ProviderPolicy:
    """How the enricher treats one provider.

    Attributes:
        timeout: Seconds one upstream lookup may take.
        cache_ttl: Seconds an answer is reused; 0 disables caching (e.g. for the local store).
        rate_limit: The service's quota, or None for no limit.
        concurrency: Upstream calls at once per `Enricher.enrich` batch.
        weight: Weight of the provider's score in the combined score.
    """

    timeout: float = 10.0
    cache_ttl: float = 3600.0
    rate_limit: RateLimit | None = None
    concurrency: int = 8
    weight: float = 1.0

    def __post_init__(self) -> None:
        if not self.timeout > 0:
            raise ValueError(f"timeout must be positive, got {self.timeout!r}")
        if self.cache_ttl < 0:
            raise ValueError(f"cache_ttl must not be negative, got {self.cache_ttl!r}")
        if self.concurrency < 1:
            raise ValueError(f"concurrency must be at least 1, got {self.concurrency!r}")
        if self.weight < 0:
            raise ValueError(f"weight must not be negative, got {self.weight!r}")


@dataclass(frozen=True)
class ProviderSpec:
    """A provider with its policy."""

    provider: Provider
    policy: ProviderPolicy = field(default_factory=ProviderPolicy)


@dataclass(frozen=True)
class ProviderOutcome:
    """What happened when one provider was asked about one value.

    Attributes:
        provider: The provider's name.
        status: ``ok`` (an answer), ``unknown`` (the provider does not know the value),
            ``error``, ``timeout``, ``rate_limited`` (refused locally because of the quota)
            or ``unsupported`` (the provider does not look up this type).
        result: The answer when ``status`` is ``ok``.
        error: What went wrong, for the failure statuses.
        cached: The answer came from the cache.
        retry_after: For ``rate_limited``: seconds until the provider may be asked again.
    """

    provider: str
    status: Status
    result: EnrichmentResult | None = None
    error: str | None = None
    cached: bool = False
    retry_after: float | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready camelCase fields (the result's fields flattened in)."""
        out: dict[str, Any] = {"status": self.status, "cached": self.cached}
        if self.result is not None:
            out.update(self.result.to_dict())
            del out["provider"]
        if self.error is not None:
            out["error"] = self.error
        if self.retry_after is not None:
            out["retryAfter"] = round(self.retry_after, 3)
        return out


class TTLCache:
    """Answers by key, each valid for its own TTL, at most ``max_entries`` (oldest dropped).

    Args:
        clock: Monotonic seconds; inject a fake in tests.
        max_entries: Bound on memory; the least recently stored entry goes first.
    """

    def __init__(self, clock: Callable[[], float], max_entries: int = 100_000) -> None:
        if max_entries < 1:
            raise ValueError(f"max_entries must be at least 1, got {max_entries!r}")
        self._clock = clock
        self._max = max_entries
        self._entries: OrderedDict[CacheKey, tuple[float, EnrichmentResult | None]] = OrderedDict()

    def get(self, key: CacheKey) -> tuple[bool, EnrichmentResult | None]:
        """Return ``(hit, answer)``; an expired entry is a miss (and is dropped)."""
        entry = self._entries.get(key)
        if entry is None:
            return False, None
        expires, value = entry
        if self._clock() >= expires:
            del self._entries[key]
            return False, None
        return True, value

    def put(self, key: CacheKey, value: EnrichmentResult | None, ttl: float) -> None:
        """Store an answer (None for "unknown") for ``ttl`` seconds; ``ttl <= 0`` stores nothing."""
        if ttl <= 0:
            return
        self._entries.pop(key, None)
        self._entries[key] = (self._clock() + ttl, value)
        while len(self._entries) > self._max:
            self._entries.popitem(last=False)

    def __len__(self) -> int:
        return len(self._entries)


class EnrichmentState:
    """Cache, quota buckets, back-offs and in-flight calls, shared by enrichers of one process.

    Keep one per process (the handler does) so every task draws on the same quota and cache.

    Args:
        clock: Monotonic seconds for TTLs, buckets and back-offs; inject a fake in tests.
        max_cache_entries: Bound on the cache.
    """

    def __init__(
        self, clock: Callable[[], float] = time.monotonic, max_cache_entries: int = 100_000
    ) -> None:
        self.clock = clock
        self.cache = TTLCache(clock, max_cache_entries)
        self.blocked_until: dict[str, float] = {}
        self.inflight: dict[CacheKey, asyncio.Task[ProviderOutcome]] = {}
        self._limiters: dict[str, TokenBucketLimiter] = {}

    def limiter(self, name: str, limit: RateLimit) -> TokenBucketLimiter:
        """The bucket of provider ``name`` (created with ``limit`` on first use)."""
        limiter = self._limiters.get(name)
        if limiter is None or limiter.limit_for(name) != limit:
            limiter = self._limiters[name] = TokenBucketLimiter(limit, clock=self.clock)
        return limiter


@dataclass(frozen=True)
class IndicatorEnrichment:
    """Every provider's outcome for one indicator, and the combined score and verdict."""

    indicator: Indicator
    outcomes: Mapping[str, ProviderOutcome]
    score: float | None
    verdict: Verdict

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready fields: type, value, score, verdict, tags and per-provider outcomes."""
        tags: dict[str, None] = {}
        for outcome in self.outcomes.values():
            if outcome.result is not None:
                tags.update(dict.fromkeys(outcome.result.tags))
        return {
            "type": self.indicator.type,
            "value": self.indicator.value,
            "score": self.score,
            "verdict": self.verdict,
            "tags": list(tags),
            "providers": {name: o.to_dict() for name, o in self.outcomes.items()},
        }


def combine(
    outcomes: Iterable[ProviderOutcome], weights: Mapping[str, float] | None = None
) -> tuple[float | None, Verdict]:
    """Combine providers' answers into one score and verdict.

    The score is the weighted mean of the scores given; a ``benign`` answer without a score
    (a warning-list match) caps it at `WARNING_LIST_CAP` rather than dropping the value.
    The verdict follows the score: `MALICIOUS_AT`, `SUSPICIOUS_AT`, else benign; ``unknown``
    when no provider answered.

    Args:
        outcomes: One per provider.
        weights: Weight by provider name; 1.0 for any not given.
    """
    weights = weights or {}
    total = weighted = 0.0
    capped = False
    for outcome in outcomes:
        result = outcome.result
        if result is None:
            continue
        if result.score is None:
            capped = capped or result.verdict == "benign"
            continue
        weight = weights.get(outcome.provider, 1.0)
        total += weight
        weighted += weight * result.score
    if total == 0 and not capped:
        return None, "unknown"
    score = weighted / total if total else 0.0
    if capped:
        score = min(score, WARNING_LIST_CAP)
    score = round(score, 1)
    if score >= MALICIOUS_AT:
        return score, "malicious"
    if score >= SUSPICIOUS_AT:
        return score, "suspicious"
    return score, "benign"


class Enricher:
    """Looks indicators up on several providers at once, within each provider's policy.

    Args:
        providers: Providers (with the default policy) or specs; names must be unique.
        state: Shared cache, buckets and in-flight calls; a private one when None.
        clock: Monotonic clock of a private state (ignored when ``state`` is given).
        sleep: How to wait for a token or a back-off; inject one that advances a fake clock.
        max_rate_wait: Longest wait for the quota before a lookup is refused as
            ``rate_limited``; 0 refuses at once.
    """

    def __init__(
        self,
        providers: Iterable[Provider | ProviderSpec],
        *,
        state: EnrichmentState | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
        max_rate_wait: float = 30.0,
    ) -> None:
        if max_rate_wait < 0:
            raise ValueError(f"max_rate_wait must not be negative, got {max_rate_wait!r}")
        self.state = state if state is not None else EnrichmentState(clock)
        self._sleep = sleep
        self.max_rate_wait = max_rate_wait
        self._specs: dict[str, ProviderSpec] = {}
        for item in providers:
            spec = item if isinstance(item, ProviderSpec) else ProviderSpec(item)
            name = spec.provider.name
            if name in self._specs:
                raise ValueError(f"two enrichment providers are named {name!r}")
            self._specs[name] = spec

    @property
    def names(self) -> list[str]:
        """Provider names, in the order given."""
        return list(self._specs)

    def spec(self, name: str) -> ProviderSpec:
        """The spec of provider ``name``.

        Raises:
            ValueError: no provider has that name; the message lists the known ones.
        """
        try:
            return self._specs[name]
        except KeyError:
            known = ", ".join(self._specs) or "none"
            raise ValueError(
                f"unknown enrichment provider {name!r}; known providers: {known}"
            ) from None

    async def enrich(
        self,
        indicators: Iterable[Indicator],
        *,
        providers: Collection[str] | None = None,
        timeout: float | None = None,
        use_cache: bool = True,
        max_rate_wait: float | None = None,
        weights: Mapping[str, float] | None = None,
    ) -> list[IndicatorEnrichment]:
        """Look every distinct indicator up on every chosen provider.

        Args:
            indicators: Parsed indicators; duplicates (same type and value) are looked up once.
            providers: Names to ask; all when None.
            timeout: Per-lookup timeout for this batch instead of each provider's own.
            use_cache: False skips reading the cache (answers are still stored).
            max_rate_wait: This batch's longest quota wait instead of the enricher's.
            weights: Per-provider weights instead of each policy's ``weight``.

        Returns:
            One entry per distinct indicator, in order of first appearance.

        Raises:
            ValueError: an unknown provider name.
        """
        names = list(self._specs) if providers is None else list(dict.fromkeys(providers))
        specs = [self.spec(name) for name in names]
        semaphores = {
            spec.provider.name: asyncio.Semaphore(spec.policy.concurrency) for spec in specs
        }
        weight_of = {spec.provider.name: spec.policy.weight for spec in specs}
        weight_of.update(weights or {})
        unique = list({(i.type, i.value): i for i in indicators}.values())

        async def one(indicator: Indicator) -> IndicatorEnrichment:
            outcomes = await asyncio.gather(
                *(
                    self._lookup(
                        spec,
                        indicator,
                        timeout=timeout,
                        use_cache=use_cache,
                        max_rate_wait=max_rate_wait,
                        semaphore=semaphores[spec.provider.name],
                    )
                    for spec in specs
                )
            )
            by_name = {o.provider: o for o in outcomes}
            score, verdict = combine(outcomes, weight_of)
            return IndicatorEnrichment(indicator, by_name, score, verdict)

        return list(await asyncio.gather(*(one(i) for i in unique)))

    async def lookup(
        self,
        indicator: Indicator,
        provider: str,
        *,
        timeout: float | None = None,
        use_cache: bool = True,
        max_rate_wait: float | None = None,
    ) -> ProviderOutcome:
        """Look one indicator up on one provider (cache, single flight, quota, timeout).

        Never raises for a provider failure: the outcome's status says what happened.

        Raises:
            ValueError: an unknown provider name.
        """
        return await self._lookup(
            self.spec(provider),
            indicator,
            timeout=timeout,
            use_cache=use_cache,
            max_rate_wait=max_rate_wait,
            semaphore=None,
        )

    async def _lookup(
        self,
        spec: ProviderSpec,
        indicator: Indicator,
        *,
        timeout: float | None,
        use_cache: bool,
        max_rate_wait: float | None,
        semaphore: asyncio.Semaphore | None,
    ) -> ProviderOutcome:
        provider = spec.provider
        if provider.types and indicator.type not in provider.types:
            return ProviderOutcome(provider.name, "unsupported")
        key: CacheKey = (provider.name, indicator.type, indicator.value)
        if use_cache:
            hit, cached = self.state.cache.get(key)
            if hit:
                return _answer(provider.name, cached, cached=True)

        loop = asyncio.get_running_loop()
        task = self.state.inflight.get(key)
        # A task of another event loop cannot be awaited here; that loop keeps its own call.
        if task is None or task.done() or task.get_loop() is not loop:
            task = loop.create_task(
                self._fetch(spec, indicator, timeout, max_rate_wait, semaphore),
                name=f"enrich:{provider.name}",
            )
            self.state.inflight[key] = task
            task.add_done_callback(lambda done: self._forget(key, done))
        # shield: one waiter giving up (cancelled) must not cancel the call the others await.
        return await asyncio.shield(task)

    def _forget(self, key: CacheKey, task: asyncio.Task[ProviderOutcome]) -> None:
        if self.state.inflight.get(key) is task:
            del self.state.inflight[key]

    def _quota_wait(self, spec: ProviderSpec) -> float:
        """Seconds to wait before calling the provider; 0 means go (a token was taken)."""
        name = spec.provider.name
        now = self.state.clock()
        blocked = self.state.blocked_until.get(name, 0.0)
        if now < blocked:
            return blocked - now
        if spec.policy.rate_limit is None:
            return 0.0
        decision = self.state.limiter(name, spec.policy.rate_limit).acquire(name)
        return 0.0 if decision.allowed else max(decision.retry_after, 1e-6)

    async def _fetch(
        self,
        spec: ProviderSpec,
        indicator: Indicator,
        timeout: float | None,
        max_rate_wait: float | None,
        semaphore: asyncio.Semaphore | None,
    ) -> ProviderOutcome:
        provider = spec.provider
        name = provider.name
        limit = timeout if timeout is not None else spec.policy.timeout
        max_wait = self.max_rate_wait if max_rate_wait is None else max_rate_wait
        retried_after_429 = False
        gate: AbstractAsyncContextManager[Any] = semaphore if semaphore else nullcontext()
        async with gate:
            while True:
                wait = self._quota_wait(spec)
                if wait > 0:
                    if wait > max_wait:
                        return ProviderOutcome(
                            name,
                            "rate_limited",
                            error=f"quota of {name!r} exhausted; next call in {wait:.1f}s, "
                            f"longer than the {max_wait:g}s a lookup may wait",
                            retry_after=wait,
                        )
                    await self._sleep(wait)
                    continue
                try:
                    result = await asyncio.wait_for(provider.lookup(indicator), limit)
                except TimeoutError:
                    return ProviderOutcome(
                        name, "timeout", error=f"no answer from {name!r} within {limit:g}s"
                    )
                except ProviderRateLimited as exc:
                    # The service's own refusal: back the whole provider off, not just this value.
                    until = self.state.clock() + exc.retry_after
                    self.state.blocked_until[name] = max(
                        self.state.blocked_until.get(name, 0.0), until
                    )
                    logger.warning(
                        "enrichment provider %r rate-limited us; backing off %.1fs",
                        name,
                        exc.retry_after,
                    )
                    if retried_after_429 or exc.retry_after > max_wait:
                        return ProviderOutcome(
                            name, "rate_limited", error=str(exc), retry_after=exc.retry_after
                        )
                    retried_after_429 = True
                    continue
                except ProviderError as exc:
                    logger.info(
                        "enrichment provider %r failed on %r: %s", name, indicator.value, exc
                    )
                    return ProviderOutcome(name, "error", error=str(exc))
                except Exception as exc:
                    # A provider bug must not fail the batch or the other providers.
                    logger.exception("enrichment provider %r raised on %r", name, indicator.value)
                    return ProviderOutcome(name, "error", error=f"{type(exc).__name__}: {exc}")
                self.state.cache.put(
                    (name, indicator.type, indicator.value), result, spec.policy.cache_ttl
                )
                return _answer(name, result, cached=False)


def _answer(name: str, result: EnrichmentResult | None, *, cached: bool) -> ProviderOutcome:
    if result is None:
        return ProviderOutcome(name, "unknown", cached=cached)
    return ProviderOutcome(name, "ok", result=result, cached=cached)
