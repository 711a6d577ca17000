"""Quality report of one feed ingestion: what was read, kept, refused, repeated and odd.

Public API::

    Thresholds(max_reject_share=0.2, volume_factor=3.0, future_tolerance_seconds=900)
    IngestionTally(saved=None)       # counts; .as_dict() / IngestionTally(saved) round-trip
    SeenKeys(limit=MAX_TRACKED_KEYS) # in-memory set of this feed's dedup keys
    anomalies(tally, thresholds, volume_history) -> list[dict]
    reason_key(reason) -> str

The tally is plain JSON once serialised, so a resumable reader can save it with its position
and carry on after a restart without counting a record twice.

Duplicates are split in two, batch by batch, from what the store reports for each batch (how
many of its distinct keys were new and how many were already stored):

* within the feed: accepted indicators minus the distinct keys among them;
* against the store: distinct keys of the feed that the store already held from earlier
  ingestions (of this source or of any other).

Telling the two apart needs the keys this feed has already stored, which `SeenKeys` keeps in
memory (bounded by `MAX_TRACKED_KEYS`; the report says when it stopped being exact). It is not
saved in checkpoints, so after a resume a value seen both before and after the resume point
counts against the store instead of within the feed; the total of duplicates stays exact and
the report lists where it resumed.

Nothing here is borrowed from a library: no well-kept package computes feed-quality reports.
"""

from __future__ import annotations

import re
import statistics
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from phantom_spire.cti.timestamps import InvalidTimestamp, parse_timestamp

__all__ = [
    "MAX_EXAMPLES",
    "MAX_TRACKED_KEYS",
    "IngestionTally",
    "SeenKeys",
    "Thresholds",
    "anomalies",
    "reason_key",
]

MAX_EXAMPLES = 10
"""Examples kept per kind of problem (rejects, future timestamps)."""

MAX_TRACKED_KEYS = 1_000_000
"""Distinct keys remembered per ingestion to split duplicates exactly (about 60 MB)."""

_TIMESTAMP_FIELDS = ("first_seen", "last_seen")
_VALUE_SUFFIX = re.compile(r"\s*\(value .*\)\s*$")


@dataclass(frozen=True)
class Thresholds:
    """When the report raises an anomaly flag.

    Attributes:
        max_reject_share: flag when rejected / (accepted + rejected) is above this.
        volume_factor: flag when the accepted count is more than this many times the median
            of the source's previous runs, or less than the median divided by it.
        future_tolerance_seconds: a timestamp this far ahead of now is still taken as clock
            skew, not as a future date.
    """

    max_reject_share: float = 0.2
    volume_factor: float = 3.0
    future_tolerance_seconds: float = 900.0

    def __post_init__(self) -> None:
        if not 0.0 <= self.max_reject_share <= 1.0:
            raise ValueError(f"max_reject_share must be in [0, 1], got {self.max_reject_share!r}")
        if self.volume_factor <= 1.0:
            raise ValueError(f"volume_factor must be above 1, got {self.volume_factor!r}")
        if self.future_tolerance_seconds < 0:
            raise ValueError(
                f"future_tolerance_seconds must be >= 0, got {self.future_tolerance_seconds!r}"
            )

    def as_dict(self) -> dict[str, float]:
        return {
            "maxRejectShare": self.max_reject_share,
            "volumeFactor": self.volume_factor,
            "futureToleranceSeconds": self.future_tolerance_seconds,
        }


def reason_key(reason: str) -> str:
    """Group a reject reason by what was wrong, without where or which value.

    Readers phrase reasons as ``<location>: <what was wrong> (value '<raw>')``.
    """
    what = reason.split(": ", 1)[-1]
    return _VALUE_SUFFIX.sub("", what).strip() or reason


class SeenKeys:
    """The dedup keys this ingestion has stored so far, up to `limit` of them.

    Keys are kept as 64-bit hashes (a collision among a million keys has a chance of about
    one in 36 million), which is what keeps the set near 60 bytes a key.
    """

    def __init__(self, limit: int = MAX_TRACKED_KEYS) -> None:
        self.limit = limit
        self.exact = True
        self._hashes: set[int] = set()

    def __len__(self) -> int:
        return len(self._hashes)

    def split(self, keys: Iterable[tuple[str, str]]) -> tuple[set[int], int]:
        """Return the batch's distinct key hashes and how many of them this feed stored before."""
        batch = {hash(key) for key in keys}
        return batch, len(batch & self._hashes)

    def remember(self, hashes: set[int]) -> None:
        room = self.limit - len(self._hashes)
        if len(hashes) > room:
            # Past the limit new keys are no longer remembered: a later repeat of one of them
            # will count against the store. Say so rather than grow without bound.
            self.exact = False
            hashes = set(list(hashes - self._hashes)[: max(room, 0)])
        self._hashes |= hashes


class IngestionTally:
    """Counts for one ingestion, restorable from its own `as_dict` (a checkpoint).

    Args:
        saved: a previous `as_dict()` to carry on from, or None to start empty.
    """

    def __init__(self, saved: dict[str, Any] | None = None) -> None:
        saved = saved or {}
        self.records = Counter(saved.get("records", {}))
        self.items = Counter(saved.get("items", {}))
        self.by_type: dict[str, Counter[str]] = {
            t: Counter(c) for t, c in saved.get("byType", {}).items()
        }
        self.reject_reasons = Counter(saved.get("rejectReasons", {}))
        self.reject_examples: list[dict[str, Any]] = list(saved.get("rejectExamples", []))
        duplicates = saved.get("duplicates", {})
        self.within_feed = int(duplicates.get("withinFeed", 0))
        self.against_store = int(duplicates.get("againstStore", 0))
        self.duplicates_exact = bool(duplicates.get("exact", True))
        self.warning_hits = Counter(saved.get("warningListHits", {}))
        future = saved.get("futureTimestamps", {})
        self.future_records = int(future.get("records", 0))
        self.future_examples: list[dict[str, Any]] = list(future.get("examples", []))
        self.resumed_at: list[int] = list(saved.get("resumedAt", []))

    def add(self, item: Any, *, new_record: bool, future_after: datetime | None = None) -> None:
        """Count one FeedItem.

        Args:
            item: a `phantom_spire.cti.feeds.FeedItem`.
            new_record: True for the first item of a record; a record (a STIX object, a MISP
                attribute, a CSV row) may carry several items and is counted once.
            future_after: when given, a record whose first or last seen time is later than
                this counts as having a timestamp in the future (pass now + tolerance).
        """
        if new_record:
            self.records["read"] += 1
            if future_after is not None and item.context:
                self._check_timestamps(item, future_after)
        self.items[item.kind] += 1
        if item.kind == "indicator" and item.indicator is not None:
            self.by_type.setdefault(item.indicator.type, Counter())["read"] += 1
        elif item.kind == "rejected":
            reason = item.reason or "rejected"
            self.reject_reasons[reason_key(reason)] += 1
            if len(self.reject_examples) < MAX_EXAMPLES:
                self.reject_examples.append(
                    {"position": item.position, "value": item.raw_value, "reason": reason}
                )

    def _check_timestamps(self, item: Any, future_after: datetime) -> None:
        for name in _TIMESTAMP_FIELDS:
            text = item.context.get(name)
            if not isinstance(text, str):
                continue
            try:
                moment = parse_timestamp(text)
            except InvalidTimestamp:
                continue
            if moment > future_after:
                self.future_records += 1
                if len(self.future_examples) < MAX_EXAMPLES:
                    self.future_examples.append(
                        {"position": item.position, "field": name, "value": text}
                    )
                return

    def warning_list_hit(self, names: Sequence[str]) -> None:
        """Count an indicator found on the named warning lists."""
        self.warning_hits.update(names)

    def stored(
        self, *, new_by_type: dict[str, int], existing: int, accepted: int, distinct: int, seen: int
    ) -> None:
        """Count what the store did with one batch.

        Args:
            new_by_type: keys the store did not hold before, by indicator type.
            existing: distinct keys of the batch the store already held.
            accepted: indicators in the batch, repeats included.
            distinct: distinct keys in the batch.
            seen: distinct keys of the batch this ingestion had already stored.
        """
        for type_, n in new_by_type.items():
            self.by_type.setdefault(type_, Counter())["new"] += n
        self.within_feed += accepted - distinct + seen
        self.against_store += existing - seen

    def as_dict(self) -> dict[str, Any]:
        """The counts as plain JSON (also the checkpointed form)."""
        saved: dict[str, Any] = {
            "records": dict(self.records),
            "items": dict(self.items),
            "byType": {t: dict(c) for t, c in sorted(self.by_type.items())},
            "rejectReasons": dict(self.reject_reasons),
            "rejectExamples": self.reject_examples,
            "duplicates": {
                "withinFeed": self.within_feed,
                "againstStore": self.against_store,
                "exact": self.duplicates_exact,
            },
            "warningListHits": dict(self.warning_hits),
            "futureTimestamps": {
                "records": self.future_records,
                "examples": self.future_examples,
            },
        }
        if self.resumed_at:
            saved["resumedAt"] = self.resumed_at
        return saved

    @property
    def accepted(self) -> int:
        return self.items.get("indicator", 0)

    @property
    def rejected(self) -> int:
        return self.items.get("rejected", 0)

    def reject_share(self) -> float:
        """Rejected values as a share of all values (accepted + rejected); 0 when none."""
        total = self.accepted + self.rejected
        return self.rejected / total if total else 0.0


def anomalies(
    tally: IngestionTally,
    thresholds: Thresholds,
    volume_history: Sequence[int] = (),
) -> list[dict[str, Any]]:
    """Return the anomaly flags of a finished ingestion (empty when nothing is odd).

    Args:
        tally: the ingestion's counts.
        thresholds: when to flag.
        volume_history: accepted-indicator counts of the same source's previous runs; the
            volume flag is only raised when there is at least one.

    Each flag is ``{"flag", "message", ...figures}``; ``flag`` is one of ``rejectShare``,
    ``volume`` and ``futureTimestamps``.
    """
    flags: list[dict[str, Any]] = []
    share = tally.reject_share()
    if share > thresholds.max_reject_share:
        flags.append(
            {
                "flag": "rejectShare",
                "message": (
                    f"{tally.rejected} of {tally.accepted + tally.rejected} values rejected "
                    f"({share:.0%}), above the threshold of {thresholds.max_reject_share:.0%}"
                ),
                "value": round(share, 4),
                "threshold": thresholds.max_reject_share,
            }
        )
    volume = volume_flag(tally.accepted, volume_history, thresholds.volume_factor)
    if volume is not None:
        flags.append(volume)
    if tally.future_records:
        tolerance = timedelta(seconds=thresholds.future_tolerance_seconds)
        flags.append(
            {
                "flag": "futureTimestamps",
                "message": (
                    f"{_records(tally.future_records)} a first or last seen time more than "
                    f"{tolerance} in the future"
                ),
                "value": tally.future_records,
            }
        )
    return flags


def _records(n: int) -> str:
    return f"{n} record has" if n == 1 else f"{n} records have"


def volume_flag(accepted: int, history: Sequence[int], factor: float) -> dict[str, Any] | None:
    """Return a ``volume`` flag when `accepted` is far from the median of `history`, else None."""
    if not history:
        return None
    median = statistics.median(history)
    if median == 0:
        if accepted == 0:
            return None
        message = f"{accepted} indicators where previous runs of this source brought none"
        return {"flag": "volume", "message": message, "value": accepted, "median": 0}
    ratio = accepted / median
    if 1 / factor <= ratio <= factor:
        return None
    return {
        "flag": "volume",
        "message": (
            f"{accepted} indicators, {ratio:.2g} times the median of the previous "
            f"{len(history)} runs ({median:g}); expected within a factor of {factor:g}"
        ),
        "value": accepted,
        "median": median,
        "ratio": round(ratio, 4),
    }
