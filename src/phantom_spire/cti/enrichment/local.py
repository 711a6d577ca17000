"""Local providers: what the intel store already knows, and warning lists of benign values.

Both are store-free: the store lookup is an injected callable, so this library never imports
the store (the ``indicator_enrichment`` handler passes one built on ``Store.list_indicators``).
"""

from __future__ import annotations

import inspect
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from phantom_spire.cti.enrichment.base import EnrichmentResult
from phantom_spire.cti.indicators import Indicator
from phantom_spire.cti.warninglists import WarningLists

__all__ = ["KnownFn", "KnownIndicatorProvider", "WarningListProvider"]

KnownFn = Callable[[str, str], Mapping[str, Any] | Awaitable[Mapping[str, Any] | None] | None]

# Fields of a store row worth showing; ids and internal columns are left out.
_KNOWN_FIELDS = ("sources", "count", "first_seen", "last_seen", "confidence", "tags")


class KnownIndicatorProvider:
    """What other feeds already reported about a value.

    A value reported by threat feeds is suspicious in itself; the more feeds, the more so.
    The score is the stored confidence when there is one, else ``40 + 10`` per source beyond
    the first, at most 90. A stored value tagged ``warninglist:*`` is ``benign`` (no score).

    Args:
        known: ``known(type, value)`` returns the stored row (``sources``, ``count``,
            ``first_seen``, ``last_seen``, ``confidence``, ``tags``) or None; sync or async.
        name: Provider name.
        wall_clock: Epoch seconds for ``fetched_at``.
    """

    types: frozenset[str] = frozenset()

    def __init__(
        self,
        known: KnownFn,
        *,
        name: str = "store",
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self.name = name
        self._known = known
        self._wall_clock = wall_clock

    async def lookup(self, indicator: Indicator) -> EnrichmentResult | None:
        """Return the stored sightings of ``indicator``, or None when the store lacks it."""
        row = self._known(indicator.type, indicator.value)
        if inspect.isawaitable(row):
            row = await row
        if not row:
            return None
        raw = {field: row[field] for field in _KNOWN_FIELDS if row.get(field) is not None}
        sources = list(raw.get("sources") or [])
        stored_tags = [str(t) for t in raw.get("tags") or []]
        tags = tuple(["known"] + [t for t in stored_tags if t.startswith("warninglist:")])
        if len(tags) > 1:
            return EnrichmentResult(
                self.name, "benign", None, tags, raw, fetched_at=self._wall_clock()
            )
        confidence = raw.get("confidence")
        if isinstance(confidence, int | float) and 0 <= confidence <= 100:
            score = float(confidence)
        else:
            score = float(min(90, 40 + 10 * max(0, len(sources) - 1)))
        verdict = "malicious" if score >= 70 else "suspicious" if score >= 30 else "benign"
        return EnrichmentResult(self.name, verdict, score, tags, raw, fetched_at=self._wall_clock())


class WarningListProvider:
    """Flags values on MISP warning lists of known-benign things.

    A match is ``benign`` with no score and a ``warninglist:<name>`` tag per list, which caps
    the combined score (see `phantom_spire.cti.enrichment.enricher.combine`); no match is
    "unknown", not "benign": not being on a list says nothing.

    Args:
        lists: The loaded warning lists.
        name: Provider name.
        wall_clock: Epoch seconds for ``fetched_at``.
    """

    types: frozenset[str] = frozenset()

    def __init__(
        self,
        lists: WarningLists,
        *,
        name: str = "warninglists",
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self.name = name
        self._lists = lists
        self._wall_clock = wall_clock

    async def lookup(self, indicator: Indicator) -> EnrichmentResult | None:
        """Return a benign result naming the lists ``indicator`` is on, or None."""
        names = self._lists.matches(indicator)
        if not names:
            return None
        return EnrichmentResult(
            self.name,
            "benign",
            None,
            tuple(f"warninglist:{name}" for name in names),
            {"lists": names},
            fetched_at=self._wall_clock(),
        )
