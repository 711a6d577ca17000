"""Fakes for enrichment tests: a clock, a sleep that advances it, scripted providers."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from phantom_spire.cti.enrichment import EnrichmentResult, ProviderError
from phantom_spire.cti.indicators import Indicator
from tests.unit.enrichment.fakeserver import FakeReputationService, serve

API_KEY = "test-key-0123456789abcdef-not-a-real-key"


class FakeClock:
    """Monotonic seconds that move only when told to."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds

    async def sleep(self, seconds: float) -> None:
        """Waits without wall time: the clock jumps, other tasks get a turn."""
        self.slept.append(seconds)
        self.now += seconds
        await asyncio.sleep(0)


class FakeProvider:
    """A provider answering from a dict, counting calls; optionally slow or failing."""

    def __init__(
        self,
        name: str = "fake",
        answers: dict[str, float | None] | None = None,
        *,
        delay: float = 0.0,
        fail: Exception | None = None,
        types: frozenset[str] = frozenset(),
    ) -> None:
        self.name = name
        self.types = types
        self.answers = answers or {}
        self.delay = delay
        self.fail = fail
        self.calls: list[str] = []

    async def lookup(self, indicator: Indicator) -> EnrichmentResult | None:
        self.calls.append(indicator.value)
        if self.delay:
            await asyncio.sleep(self.delay)
        if self.fail is not None:
            raise self.fail
        score = self.answers.get(indicator.value)
        if score is None:
            return None
        verdict = "malicious" if score >= 70 else "suspicious" if score >= 30 else "benign"
        return EnrichmentResult(self.name, verdict, score, ("t",), {"v": indicator.value}, 1.0)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def service() -> FakeReputationService:
    return FakeReputationService(api_key=API_KEY)


@pytest.fixture
def base_url(service: FakeReputationService) -> Iterator[str]:
    with serve(service) as url:
        yield url


__all__ = ["API_KEY", "FakeClock", "FakeProvider", "ProviderError"]
