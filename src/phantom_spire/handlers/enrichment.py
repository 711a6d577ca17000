"""``indicator_enrichment``: look indicators up on reputation providers and combine the verdicts.

Providers: ``store`` (what other feeds already reported, from the intel store),
``warninglists`` (when warning lists are configured or given) and the HTTP providers of
``SPIRE_ENRICHMENT_PROVIDERS``. The enrichment state (cache, quota buckets, back-offs,
in-flight calls) belongs to the handler, so every task of this process shares one quota per
provider, apart from worker concurrency. API keys come only from settings: a task cannot
name a URL or a key, so it cannot send a configured key anywhere else.
"""

from __future__ import annotations

import logging
from collections import Counter
from pathlib import Path
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field, model_validator

from phantom_spire.cti.enrichment import (
    Enricher,
    EnrichmentState,
    HttpProvider,
    IndicatorEnrichment,
    KnownIndicatorProvider,
    ProviderPolicy,
    ProviderSpec,
    WarningListProvider,
    build_provider,
)
from phantom_spire.cti.errors import CTIError
from phantom_spire.cti.indicators import (
    TYPES,
    Indicator,
    InvalidIndicator,
    indicator_tags,
    parse_indicator,
)
from phantom_spire.cti.warninglists import WarningLists
from phantom_spire.errors import HandlerError
from phantom_spire.handlers.context import TaskContext
from phantom_spire.settings import Settings

__all__ = ["EnrichmentHandler", "EnrichmentParameters"]

logger = logging.getLogger(__name__)

CHUNK = 100
"""Distinct values enriched between two stop checks and progress updates."""


class EnrichmentParameters(BaseModel):
    """Parameters of ``indicator_enrichment``: give ``iocs`` or ``source``, not both."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    iocs: list[str] | None = Field(default=None, min_length=1, max_length=10_000)
    source: str | None = Field(
        default=None, min_length=1, description="Enrich the stored indicators of this source."
    )
    type: str | None = Field(default=None, description="With source: only this indicator type.")
    limit: int = Field(default=1000, ge=1, le=10_000, description="With source: at most this many.")
    providers: list[str] | None = Field(
        default=None, min_length=1, max_length=50, description="Provider names; all when absent."
    )
    timeout_seconds: float | None = Field(
        default=None, gt=0, le=300, alias="timeoutSeconds", description="Per-lookup timeout."
    )
    max_rate_wait_seconds: float | None = Field(
        default=None,
        ge=0,
        le=3600,
        alias="maxRateWaitSeconds",
        description="Longest wait for a provider's quota before a lookup is rate_limited.",
    )
    use_cache: bool = Field(default=True, alias="useCache")
    weights: dict[str, float] | None = Field(
        default=None, description="Weight of each provider in the combined score (default 1)."
    )
    warning_lists: list[str] | None = Field(
        default=None,
        alias="warningLists",
        max_length=1000,
        description="MISP warninglist files or folders on the engine's machine, for this run.",
    )

    @model_validator(mode="after")
    def _one_input(self) -> EnrichmentParameters:
        if (self.iocs is None) == (self.source is None):
            raise ValueError("give either 'iocs' or 'source', not both and not neither")
        if self.type is not None and self.type not in TYPES:
            raise ValueError(f"type {self.type!r} is not one of {TYPES}")
        if self.weights and any(w < 0 for w in self.weights.values()):
            raise ValueError(f"weights must not be negative, got {self.weights!r}")
        return self


class EnrichmentHandler:
    """Per-value results with each provider's outcome, a combined score and a verdict."""

    name: ClassVar[str] = "indicator_enrichment"
    Parameters: ClassVar[type[BaseModel]] = EnrichmentParameters

    def __init__(self, settings: Settings | None = None) -> None:
        self.settings = settings or Settings()
        # One state for every run: the quota of a service is shared by all tasks.
        self.state = EnrichmentState()

    async def run(self, ctx: TaskContext) -> dict[str, Any]:
        params = EnrichmentParameters.model_validate(ctx.parameters)
        specs = await self._specs(ctx, params)
        enricher = Enricher(specs, state=self.state)
        names = params.providers or enricher.names
        try:
            for name in names:
                enricher.spec(name)
        except ValueError as exc:
            await _close(specs)
            raise HandlerError(str(exc), retryable=False) from None

        try:
            inputs, rejected = await self._inputs(ctx, params)
            unique = list({(i.type, i.value): i for _, i in inputs}.values())
            enriched: dict[tuple[str, str], IndicatorEnrichment] = {}
            for start in range(0, len(unique), CHUNK):
                if ctx.should_stop():
                    raise HandlerError(f"stopped on request after {start} of {len(unique)} values")
                chunk = await enricher.enrich(
                    unique[start : start + CHUNK],
                    providers=names,
                    timeout=params.timeout_seconds,
                    use_cache=params.use_cache,
                    max_rate_wait=params.max_rate_wait_seconds,
                    weights=params.weights,
                )
                enriched.update({(e.indicator.type, e.indicator.value): e for e in chunk})
                await ctx.progress(len(enriched), len(unique))
        finally:
            await _close(specs)

        results: list[dict[str, Any]] = [
            {"input": raw, "valid": True, **enriched[(i.type, i.value)].to_dict()}
            for raw, i in inputs
        ]
        results.extend({"input": raw, "valid": False, "reason": why} for raw, why in rejected)
        statuses: dict[str, Counter[str]] = {name: Counter() for name in names}
        for item in enriched.values():
            for name, outcome in item.outcomes.items():
                statuses[name][outcome.status] += 1
        verdicts = Counter(item.verdict for item in enriched.values())
        ctx.logger.info(
            f"enriched {len(enriched)} distinct values on {', '.join(names)}: "
            + ", ".join(f"{v} {n}" for v, n in sorted(verdicts.items()))
        )
        for name, counts in statuses.items():
            failed = {s: n for s, n in counts.items() if s in ("error", "timeout", "rate_limited")}
            if failed:
                ctx.logger.warning(f"provider {name!r}: {failed}")
        return {
            "total": len(inputs) + len(rejected),
            "enriched": len(enriched),
            "rejected": len(rejected),
            "providers": names,
            "byVerdict": dict(sorted(verdicts.items())),
            "providerStatus": {name: dict(sorted(c.items())) for name, c in statuses.items()},
            "results": results,
        }

    async def _specs(self, ctx: TaskContext, params: EnrichmentParameters) -> list[ProviderSpec]:
        store = ctx.store

        async def known(kind: str, value: str) -> dict[str, Any] | None:
            rows = await ctx.run_in_thread(
                lambda: store.list_indicators(type=kind, value=value, limit=1)
            )
            return dict(rows[0]) if rows else None

        # Local lookups are cheap and change with every ingestion: no cache, no quota.
        local = ProviderPolicy(timeout=30.0, cache_ttl=0)
        specs = [ProviderSpec(KnownIndicatorProvider(known), local)]
        paths = [*self.settings.enrichment_warning_lists, *map(Path, params.warning_lists or ())]
        if paths:
            try:
                lists = await ctx.run_in_thread(WarningLists.load, paths)
            except (CTIError, OSError) as exc:
                raise HandlerError(str(exc), retryable=False) from exc
            specs.append(ProviderSpec(WarningListProvider(lists), local))
        specs.extend(build_provider(config) for config in self.settings.enrichment_providers)
        return specs

    async def _inputs(
        self, ctx: TaskContext, params: EnrichmentParameters
    ) -> tuple[list[tuple[str, Indicator]], list[tuple[str, str]]]:
        if params.iocs is not None:
            parsed: list[tuple[str, Indicator]] = []
            rejected: list[tuple[str, str]] = []
            for raw in params.iocs:
                try:
                    parsed.append((raw, parse_indicator(raw)))
                except InvalidIndicator as exc:
                    rejected.append((raw, exc.reason))
            return parsed, rejected
        source = params.source
        rows = await ctx.run_in_thread(
            lambda: ctx.store.list_indicators(source=source, type=params.type, limit=params.limit)
        )
        # Stored values are canonical already: no need to parse them again.
        found = [
            (r["value"], Indicator(r["type"], r["value"], indicator_tags(r["type"], r["value"])))
            for r in rows
        ]
        return found, []


async def _close(specs: list[ProviderSpec]) -> None:
    for spec in specs:
        if isinstance(spec.provider, HttpProvider):
            await spec.provider.aclose()
