"""``data_ingestion``: read a threat feed, merge its indicators into the intel store, report.

The result is a quality report: records read, indicators accepted and rejected (by reason,
with examples), duplicates within the feed and against the store, warning-list hits, and
anomaly flags (too many rejects, a volume far from the source's previous runs, timestamps in
the future).

The volume flag compares a run with the same source's previous completed runs (their
``quality.volume.indicators``), which the handler reads through its context; a
``volumeHistory`` parameter overrides them (for a first run of a known feed, say).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field

from phantom_spire.cti import feeds
from phantom_spire.cti.errors import CTIError
from phantom_spire.cti.quality import IngestionTally, SeenKeys, Thresholds, anomalies
from phantom_spire.cti.warninglists import WarningLists
from phantom_spire.errors import HandlerError
from phantom_spire.handlers.context import TaskContext
from phantom_spire.handlers.sources import is_url, open_source
from phantom_spire.security import Tlp
from phantom_spire.settings import Settings
from phantom_spire.store import IndicatorRecord, UpsertStats

__all__ = ["DataIngestionHandler", "IngestionParameters"]

WARNING_LIST_MAX_CONFIDENCE = 15
"""Confidence (0-100) an indicator keeps at most once it is found on a warning list."""


class IngestionParameters(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    source: str = Field(min_length=1, description="Local path or http(s) URL of the feed.")
    format: (
        Literal["stix", "misp", "csv", "json", "jsonl", "xml", "openioc", "rss", "text"] | None
    ) = Field(default=None, description="Feed format; detected from the content when absent.")
    batch_size: int | None = Field(default=None, ge=1, le=100_000, alias="batchSize")
    source_name: str | None = Field(
        default=None, alias="sourceName", description="Label recorded on each indicator."
    )
    warning_lists: list[str] | None = Field(
        default=None,
        alias="warningLists",
        max_length=1000,
        description=(
            "MISP warninglist JSON files, or folders of them, on the engine's machine. An "
            "indicator on a list is tagged warninglist:<name> and its confidence lowered; it "
            "is still stored."
        ),
    )
    max_reject_share: float = Field(
        default=Thresholds.max_reject_share,
        ge=0,
        le=1,
        alias="maxRejectShare",
        description="Anomaly flag when rejected / (accepted + rejected) is above this.",
    )
    volume_history: list[Annotated[int, Field(ge=0)]] | None = Field(
        default=None,
        alias="volumeHistory",
        max_length=1000,
        description=(
            "Accepted-indicator counts of this source's previous runs (their results' "
            "quality.volume.indicators); anomaly flag when this run is far from their median."
        ),
    )
    volume_factor: float = Field(
        default=Thresholds.volume_factor,
        gt=1,
        alias="volumeFactor",
        description="How many times above or below the median volume is still normal.",
    )
    future_tolerance_seconds: float = Field(
        default=Thresholds.future_tolerance_seconds,
        ge=0,
        alias="futureToleranceSeconds",
        description="Clock skew allowed before a first/last seen time counts as future.",
    )

    def thresholds(self) -> Thresholds:
        return Thresholds(
            max_reject_share=self.max_reject_share,
            volume_factor=self.volume_factor,
            future_tolerance_seconds=self.future_tolerance_seconds,
        )


class DataIngestionHandler:
    """Reads any feed format of :mod:`phantom_spire.cti.feeds`, checkpointing after each batch.

    The result is the ingestion's quality report (see :mod:`phantom_spire.cti.quality`).
    """

    name: ClassVar[str] = "data_ingestion"
    Parameters: ClassVar[type[BaseModel]] = IngestionParameters

    def __init__(self, settings: Settings | None = None) -> None:
        self.settings = settings or Settings()

    async def run(self, ctx: TaskContext) -> dict[str, Any]:
        params = IngestionParameters.model_validate(ctx.parameters)
        return await ctx.run_in_thread(self._ingest, ctx, params)

    def _ingest(self, ctx: TaskContext, params: IngestionParameters) -> dict[str, Any]:
        paths = params.warning_lists
        if paths is None:
            paths = [str(p) for p in self.settings.warning_lists]
        try:
            lists = WarningLists.load([Path(p) for p in paths])
        except CTIError as exc:
            raise HandlerError(str(exc), retryable=False) from exc
        with open_source(
            params.source,
            max_bytes=self.settings.fetch_max_bytes,
            timeout=self.settings.fetch_timeout_seconds,
        ) as path:
            try:
                return self._ingest_file(ctx, params, path, lists)
            except CTIError as exc:
                # A downloaded feed sits in a temporary file: name the URL the user gave.
                message = str(exc).replace(str(path), params.source)
                raise HandlerError(message, retryable=False) from exc

    def _ingest_file(
        self, ctx: TaskContext, params: IngestionParameters, path: Path, lists: WarningLists
    ) -> dict[str, Any]:
        fmt = params.format or feeds.detect_format(path)
        source_name = params.source_name or _default_source_name(params.source)
        batch_size = params.batch_size or self.settings.ingest_batch_size
        thresholds = params.thresholds()
        saved = ctx.checkpoint or {}
        start = int(saved.get("position", 0))
        tally = IngestionTally(saved.get("tally"))
        seen = SeenKeys()
        future_after = datetime.now(UTC) + timedelta(seconds=thresholds.future_tolerance_seconds)

        if start:
            tally.resumed_at.append(start)
            ctx.logger.info(f"resuming {fmt} feed {params.source!r} at record {start}")
        else:
            ctx.logger.info(f"reading {fmt} feed {params.source!r}")

        batch: list[IndicatorRecord] = []
        current: int | None = None
        marking = _Marking(tlp=_tlp_rank(ctx.tlp), classification=ctx.classification)
        for item in feeds.read_feed(path, fmt, start=start):
            new_record = item.position != current
            # Write only between records: the checkpoint says "every record before this
            # position is stored", which would lose the rest of a record cut in two.
            # A stop request (pause, cancel, timeout) is honoured at the next record
            # boundary, not only at the end of a batch, so it beats the grace period.
            stopping = ctx.should_stop()
            if new_record and (len(batch) >= batch_size or stopping):
                self._flush(ctx, batch, source_name, tally, seen, item.position)
                batch = []
                if stopping:
                    raise HandlerError(f"stopped at record {item.position} on request")
            current = item.position
            tally.add(item, new_record=new_record, future_after=future_after)
            if item.kind == "indicator" and item.indicator is not None:
                batch.append(_to_record(item, lists, tally, marking))

        end = start if current is None else current + 1
        self._flush(ctx, batch, source_name, tally, seen, end)
        return self._report(params, fmt, source_name, tally, seen, thresholds, lists, ctx)

    def _flush(
        self,
        ctx: TaskContext,
        batch: list[IndicatorRecord],
        source_name: str,
        tally: IngestionTally,
        seen: SeenKeys,
        position: int,
    ) -> None:
        hashes, already = seen.split((r.type, r.value) for r in batch)

        def checkpoint(stats: UpsertStats) -> dict[str, Any]:
            # Runs inside the batch's transaction: the counts saved are those of the
            # records this very transaction stores, so a resume never counts them twice.
            tally.stored(
                new_by_type=stats.new_by_type,
                existing=stats.existing,
                accepted=len(batch),
                distinct=len(hashes),
                seen=already,
            )
            tally.duplicates_exact = tally.duplicates_exact and seen.exact
            return {"position": position, "tally": tally.as_dict()}

        ctx.store_indicators_blocking(batch, source_name, checkpoint=checkpoint, done=position)
        seen.remember(hashes)

    def _report(
        self,
        params: IngestionParameters,
        fmt: str,
        source_name: str,
        tally: IngestionTally,
        seen: SeenKeys,
        thresholds: Thresholds,
        lists: WarningLists,
        ctx: TaskContext,
    ) -> dict[str, Any]:
        counts = tally.as_dict()
        duplicates = counts.pop("duplicates")
        duplicates["exact"] = duplicates["exact"] and seen.exact and not tally.resumed_at
        summary: dict[str, Any] = {"source": params.source, "sourceName": source_name}
        summary["format"] = fmt
        summary.update({k: counts[k] for k in ("records", "items", "byType", "rejectReasons")})
        summary["rejectExamples"] = counts["rejectExamples"]
        new = sum(c.get("new", 0) for c in tally.by_type.values())
        summary["stored"] = {"new": new, "indicators": tally.accepted}
        history = (
            list(params.volume_history)
            if params.volume_history is not None
            else ctx.previous_ingestion_volumes(source_name)
        )
        flags = anomalies(tally, thresholds, history)
        summary["quality"] = {
            "rejectShare": round(tally.reject_share(), 4),
            "duplicates": {
                **duplicates,
                "distinct": tally.accepted - tally.within_feed,
                "new": new,
            },
            "warningLists": {
                "loaded": [wl.name for wl in lists.lists],
                "hits": counts["warningListHits"],
            },
            "futureTimestamps": counts["futureTimestamps"],
            "volume": {
                "indicators": tally.accepted,
                "records": tally.records.get("read", 0),
                "history": history,
            },
            "anomalies": flags,
            "thresholds": thresholds.as_dict(),
        }
        if tally.resumed_at:
            summary["quality"]["resumedAt"] = tally.resumed_at
        ctx.logger.info(
            f"done: {tally.records['read']} records, {tally.accepted} indicators, "
            f"{tally.rejected} rejected, {new} new in store, "
            f"{tally.within_feed} repeated in the feed, {tally.against_store} already stored"
        )
        for flag in flags:
            ctx.logger.warning(f"anomaly {flag['flag']}: {flag['message']}")
        return summary


def _to_record(
    item: feeds.FeedItem, lists: WarningLists, tally: IngestionTally, marking: _Marking
) -> IndicatorRecord:
    assert item.indicator is not None
    confidence = item.context.get("confidence") if item.context else None
    confidence = confidence if isinstance(confidence, int) else None
    tags = tuple(item.indicator.tags)
    if lists.lists:
        names = lists.matches(item.indicator)
        if names:
            # Flag, never drop: a benign-looking value may still be what an analyst needs
            # to see (a compromised CDN host, a test hash in a real incident).
            tally.warning_list_hit(names)
            tags += tuple(f"warninglist:{name}" for name in names)
            confidence = min(
                WARNING_LIST_MAX_CONFIDENCE if confidence is None else confidence,
                WARNING_LIST_MAX_CONFIDENCE,
            )
    return IndicatorRecord(
        type=item.indicator.type,
        value=item.indicator.value,
        tags=tags,
        confidence=confidence,
        tlp=max(marking.tlp, _tlp_rank(item.context.get("tlp") if item.context else None)),
        classification=marking.classification,
    )


def _tlp_rank(label: object) -> int:
    """Rank of a feed's own TLP label; an unreadable one counts as CLEAR (the task's wins)."""
    if not isinstance(label, str):
        return 0
    try:
        return Tlp.parse(label.upper().removeprefix("TLP:")).rank
    except ValueError:
        return 0


@dataclass(frozen=True)
class _Marking:
    """The reporting task's markings, which every indicator it stores inherits."""

    tlp: int
    classification: int


def _default_source_name(source: str) -> str:
    return source if is_url(source) else Path(source).name
