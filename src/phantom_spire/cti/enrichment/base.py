"""What every enrichment provider returns and raises, and the interface it implements."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, runtime_checkable

from phantom_spire.cti.errors import CTIError
from phantom_spire.cti.indicators import Indicator

__all__ = [
    "VERDICTS",
    "EnrichmentResult",
    "Provider",
    "ProviderError",
    "ProviderRateLimited",
    "Verdict",
]

Verdict = Literal["malicious", "suspicious", "benign", "unknown"]
VERDICTS: tuple[Verdict, ...] = ("malicious", "suspicious", "benign", "unknown")


@dataclass(frozen=True)
class EnrichmentResult:
    """What one provider knows about one indicator.

    Attributes:
        provider: Name of the provider that answered.
        verdict: ``malicious``, ``suspicious``, ``benign`` or ``unknown``.
        score: Maliciousness from 0 (harmless) to 100, or None when the provider gives no
            number (a warning-list match is ``benign`` with no score: it caps the combined
            score instead of being averaged in).
        tags: Short labels, e.g. ``warninglist:<name>`` or the service's own tags.
        raw: A selection of the service's fields, JSON-serialisable.
        fetched_at: Wall-clock epoch seconds when the answer was fetched (kept on cache hits,
            so a reader sees how old it is).
    """

    provider: str
    verdict: Verdict
    score: float | None
    tags: tuple[str, ...] = ()
    raw: Mapping[str, Any] = field(default_factory=dict)
    fetched_at: float = 0.0

    def __post_init__(self) -> None:
        if self.verdict not in VERDICTS:
            raise ValueError(f"verdict must be one of {VERDICTS}, got {self.verdict!r}")
        if self.score is not None and not 0 <= self.score <= 100:
            raise ValueError(f"score must be between 0 and 100, got {self.score!r}")

    def to_dict(self) -> dict[str, Any]:
        """The result as JSON-ready camelCase fields."""
        return {
            "provider": self.provider,
            "verdict": self.verdict,
            "score": self.score,
            "tags": list(self.tags),
            "raw": dict(self.raw),
            "fetchedAt": self.fetched_at,
        }


@runtime_checkable
class Provider(Protocol):
    """A source of reputation or context for indicators.

    Attributes:
        name: Unique name; cache entries, rate limits and results are keyed by it.
        types: Indicator types the provider can look up; empty means every type.
    """

    name: str
    types: frozenset[str]

    async def lookup(self, indicator: Indicator) -> EnrichmentResult | None:
        """Look one indicator up.

        Returns:
            The provider's answer, or None when it does not know the value.

        Raises:
            ProviderRateLimited: the service refused because of its quota.
            ProviderError: the service failed or answered something unusable.
        """
        ...


class ProviderError(CTIError):
    """A provider could not answer (service error, bad response, network failure).

    Messages never contain the provider's API key.
    """


class ProviderRateLimited(ProviderError):
    """The service refused because of its quota.

    Attributes:
        retry_after: Seconds the service asked us to wait before the next call.
    """

    def __init__(self, message: str, retry_after: float) -> None:
        super().__init__(message)
        self.retry_after = retry_after
