"""``data_ingestion``: read a threat feed and merge its indicators into the intel store."""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field

from phantom_spire.cti import feeds
from phantom_spire.cti.errors import CTIError
from phantom_spire.errors import HandlerError
from phantom_spire.handlers.context import TaskContext
from phantom_spire.handlers.sources import is_url, open_source
from phantom_spire.settings import Settings
from phantom_spire.store import IndicatorRecord, UpsertStats

__all__ = ["DataIngestionHandler", "IngestionParameters"]

MAX_REJECT_EXAMPLES = 10


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


class _Tally:
    """Counts for the result summary; kept in the checkpoint so a resume carries on."""

    def __init__(self, saved: dict[str, Any] | None = None) -> None:
        saved = saved or {}
        self.records = Counter(saved.get("records", {}))
        self.items = Counter(saved.get("items", {}))
        self.by_type: dict[str, Counter[str]] = {
            t: Counter(c) for t, c in saved.get("byType", {}).items()
        }
        self.reject_reasons = Counter(saved.get("rejectReasons", {}))
        self.reject_examples: list[dict[str, Any]] = list(saved.get("rejectExamples", []))

    def add(self, item: feeds.FeedItem, *, new_record: bool) -> None:
        # One record (a STIX object, a MISP attribute, a CSV row) may carry several items
        # (a composite attribute, a row with three hash columns): count both.
        if new_record:
            self.records["read"] += 1
        self.items[item.kind] += 1
        if item.kind == "indicator" and item.indicator is not None:
            self.by_type.setdefault(item.indicator.type, Counter())["read"] += 1
        elif item.kind == "rejected":
            reason = item.reason or "rejected"
            self.reject_reasons[_reason_key(reason)] += 1
            if len(self.reject_examples) < MAX_REJECT_EXAMPLES:
                self.reject_examples.append(
                    {"position": item.position, "value": item.raw_value, "reason": reason}
                )

    def stored(self, new_by_type: dict[str, int]) -> None:
        for type_, n in new_by_type.items():
            self.by_type.setdefault(type_, Counter())["new"] += n

    def as_dict(self) -> dict[str, Any]:
        return {
            "records": dict(self.records),
            "items": dict(self.items),
            "byType": {t: dict(c) for t, c in sorted(self.by_type.items())},
            "rejectReasons": dict(self.reject_reasons),
            "rejectExamples": self.reject_examples,
        }


def _reason_key(reason: str) -> str:
    """Group rejects by what was wrong, without where or which value.

    Readers phrase reasons as ``<location>: <what was wrong> (value '<raw>')``.
    """
    what = reason.split(": ", 1)[-1]
    return _VALUE_SUFFIX.sub("", what).strip() or reason


_VALUE_SUFFIX = re.compile(r"\s*\(value .*\)\s*$")


class DataIngestionHandler:
    """Reads any feed format of :mod:`phantom_spire.cti.feeds`, checkpointing after each batch."""

    name: ClassVar[str] = "data_ingestion"
    Parameters: ClassVar[type[BaseModel]] = IngestionParameters

    def __init__(self, settings: Settings | None = None) -> None:
        self.settings = settings or Settings()

    async def run(self, ctx: TaskContext) -> dict[str, Any]:
        params = IngestionParameters.model_validate(ctx.parameters)
        return await ctx.run_in_thread(self._ingest, ctx, params)

    def _ingest(self, ctx: TaskContext, params: IngestionParameters) -> dict[str, Any]:
        with open_source(
            params.source,
            max_bytes=self.settings.fetch_max_bytes,
            timeout=self.settings.fetch_timeout_seconds,
        ) as path:
            try:
                return self._ingest_file(ctx, params, path)
            except CTIError as exc:
                raise HandlerError(str(exc), retryable=False) from exc

    def _ingest_file(
        self, ctx: TaskContext, params: IngestionParameters, path: Path
    ) -> dict[str, Any]:
        fmt = params.format or feeds.detect_format(path)
        source_name = params.source_name or _default_source_name(params.source)
        batch_size = params.batch_size or self.settings.ingest_batch_size
        saved = ctx.checkpoint or {}
        start = int(saved.get("position", 0))
        tally = _Tally(saved.get("tally"))

        if start:
            ctx.logger.info(f"resuming {fmt} feed {params.source!r} at record {start}")
        else:
            ctx.logger.info(f"reading {fmt} feed {params.source!r}")

        batch: list[IndicatorRecord] = []
        position = start
        for item in feeds.read_feed(path, fmt, start=start):
            tally.add(item, new_record=item.position >= position)
            position = item.position + 1
            if item.kind == "indicator" and item.indicator is not None:
                batch.append(_to_record(item))
            if len(batch) >= batch_size:
                self._flush(ctx, batch, source_name, tally, position)
                batch = []
                if ctx.should_stop():
                    raise HandlerError(f"stopped at record {position} on request")

        self._flush(ctx, batch, source_name, tally, position)
        summary = {"source": params.source, "sourceName": source_name, "format": fmt}
        summary.update(tally.as_dict())
        summary["stored"] = {
            "new": sum(c.get("new", 0) for c in tally.by_type.values()),
            "indicators": tally.items.get("indicator", 0),
        }
        ctx.logger.info(
            f"done: {tally.records['read']} records, {tally.items['indicator']} indicators, "
            f"{tally.items['rejected']} rejected, {summary['stored']['new']} new in store"
        )
        return summary

    def _flush(
        self,
        ctx: TaskContext,
        batch: list[IndicatorRecord],
        source_name: str,
        tally: _Tally,
        position: int,
    ) -> None:
        def checkpoint(stats: UpsertStats) -> dict[str, Any]:
            tally.stored(stats.new_by_type)
            return {"position": position, "tally": tally.as_dict()}

        ctx.store_indicators_blocking(batch, source_name, checkpoint=checkpoint, done=position)


def _to_record(item: feeds.FeedItem) -> IndicatorRecord:
    assert item.indicator is not None
    confidence = item.context.get("confidence") if item.context else None
    return IndicatorRecord(
        type=item.indicator.type,
        value=item.indicator.value,
        tags=tuple(item.indicator.tags),
        confidence=confidence if isinstance(confidence, int) else None,
    )


def _default_source_name(source: str) -> str:
    return source if is_url(source) else Path(source).name
