"""Indicator enrichment: providers, and an enricher that asks them within their quotas.

Written by hand: no well-kept library combines per-provider TTL caching, quota buckets,
single-flight and failure isolation for reputation lookups. HTTP is ``httpx``; the quota
bucket is `phantom_spire.security.ratelimit.TokenBucketLimiter`.

Typical use::

    from phantom_spire.cti.enrichment import Enricher, WarningListProvider, build_provider

    enricher = Enricher([build_provider(config), WarningListProvider(lists)])
    results = await enricher.enrich([parse_indicator("1.2.3.4")])
"""

from __future__ import annotations

from phantom_spire.cti.enrichment.base import (
    VERDICTS,
    EnrichmentResult,
    Provider,
    ProviderError,
    ProviderRateLimited,
    Verdict,
)
from phantom_spire.cti.enrichment.enricher import (
    MALICIOUS_AT,
    SUSPICIOUS_AT,
    WARNING_LIST_CAP,
    Enricher,
    EnrichmentState,
    IndicatorEnrichment,
    ProviderOutcome,
    ProviderPolicy,
    ProviderSpec,
    TTLCache,
    combine,
)
from phantom_spire.cti.enrichment.http import (
    AbuseIPDBProvider,
    HttpProvider,
    ProviderConfig,
    VirusTotalProvider,
    build_provider,
    parse_retry_after,
)
from phantom_spire.cti.enrichment.local import KnownIndicatorProvider, WarningListProvider

__all__ = [
    "MALICIOUS_AT",
    "SUSPICIOUS_AT",
    "VERDICTS",
    "WARNING_LIST_CAP",
    "AbuseIPDBProvider",
    "Enricher",
    "EnrichmentResult",
    "EnrichmentState",
    "HttpProvider",
    "IndicatorEnrichment",
    "KnownIndicatorProvider",
    "Provider",
    "ProviderConfig",
    "ProviderError",
    "ProviderOutcome",
    "ProviderPolicy",
    "ProviderRateLimited",
    "ProviderSpec",
    "TTLCache",
    "Verdict",
    "VirusTotalProvider",
    "WarningListProvider",
    "build_provider",
    "combine",
    "parse_retry_after",
]
