"""The data_ingestion handler on its own: quality report, warning lists, checkpoints and resume.

The store is an in-memory stand-in with the same contract as ``Store.upsert_indicators``:
repeats inside a batch are folded, ``new``/``existing`` count the batch's distinct keys, and
the checkpoint built from those stats is kept only when the batch is (same transaction).
The real store is exercised by tests/e2e/test_ingestion_quality.py.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from phantom_spire.errors import HandlerError
from phantom_spire.handlers.context import TaskContext, TaskLogger
from phantom_spire.handlers.data_ingestion import (
    WARNING_LIST_MAX_CONFIDENCE,
    DataIngestionHandler,
    IngestionParameters,
)
from phantom_spire.store import IndicatorRecord, ProgressUpdate, UpsertStats

DATA = Path(__file__).resolve().parents[2] / "data"
FEEDS = DATA / "feeds"
LISTS = DATA / "warninglists"
QUALITY_FEED = FEEDS / "quality_mixed.csv"


class Crash(Exception):
    """Stands for the worker dying in the middle of a batch."""


class FakeStore:
    """Indicators and the last committed checkpoint, with an optional crash on batch N."""

    def __init__(self, crash_on_batch: int | None = None) -> None:
        self.indicators: dict[tuple[str, str], dict[str, Any]] = {}
        self.checkpoint: Any = None
        self.batches = 0
        self.crash_on_batch = crash_on_batch
        self.previous_volumes: list[int] = []

    def previous_ingestion_volumes(
        self, source_name: str, *, before_task: str, limit: int = 10
    ) -> list[int]:
        return self.previous_volumes[:limit]

    def upsert_indicators(
        self,
        records: Sequence[IndicatorRecord],
        source: str,
        *,
        progress: Callable[[UpsertStats], ProgressUpdate] | None = None,
    ) -> UpsertStats:
        self.batches += 1
        distinct: dict[tuple[str, str], list[IndicatorRecord]] = {}
        for record in records:
            distinct.setdefault((record.type, record.value), []).append(record)
        stats = UpsertStats()
        for key in distinct:
            if key in self.indicators:
                stats.existing += 1
            else:
                stats.new += 1
                stats.new_by_type[key[0]] = stats.new_by_type.get(key[0], 0) + 1
        update = progress(stats) if progress is not None else None
        if self.batches == self.crash_on_batch:
            raise Crash(f"killed during batch {self.batches}")  # nothing of it is committed
        if update is not None:
            self.checkpoint = update.checkpoint
        for key, recs in distinct.items():
            row = self.indicators.setdefault(
                key, {"count": 0, "tags": set(), "confidence": None, "sources": set()}
            )
            row["count"] += len(recs)
            row["sources"].add(source)
            for rec in recs:
                row["tags"].update(rec.tags)
                if rec.confidence is not None:
                    row["confidence"] = max(row["confidence"] or 0, rec.confidence)
        return stats

    def save_progress(self, *args: Any, **kwargs: Any) -> None:
        self.checkpoint = kwargs.get("checkpoint", self.checkpoint)


def run(
    store: FakeStore,
    parameters: dict[str, Any],
    *,
    checkpoint: Any = None,
    stop_after_flushes: int | None = None,
) -> dict[str, Any]:
    """Run the handler once, as a worker would, and return its result."""
    IngestionParameters.model_validate(parameters)  # what task creation checks
    with ThreadPoolExecutor(2) as pool:
        ctx = TaskContext(
            task_id="task-1",
            execution_id="exec-1",
            attempt=1,
            parameters=parameters,
            checkpoint=checkpoint,
            logger=TaskLogger("task-1", "exec-1", 1, clock=lambda: 0.0),
            store=store,  # type: ignore[arg-type]
            worker_id="worker-1",
            thread_pool=pool,
        )
        if stop_after_flushes is not None:
            original = ctx.store_indicators_blocking

            def counting(*args: Any, **kwargs: Any) -> UpsertStats:
                stats = original(*args, **kwargs)
                if store.batches >= stop_after_flushes:
                    ctx.stop_requested.set()
                return stats

            ctx.store_indicators_blocking = counting  # type: ignore[method-assign]
        return asyncio.run(DataIngestionHandler().run(ctx))


def write_csv(path: Path, rows: list[str]) -> Path:
    path.write_text("type,indicator,first_seen\n" + "\n".join(rows) + "\n", encoding="utf-8")
    return path


# -- the quality report --------------------------------------------------------------------


def test_quality_report_counts_reads_rejects_and_duplicates_of_a_mixed_feed() -> None:
    result = run(FakeStore(), {"source": str(QUALITY_FEED)})
    quality = result["quality"]

    assert result["records"] == {"read": 10}
    assert result["items"] == {"indicator": 8, "rejected": 2}
    assert sum(result["rejectReasons"].values()) == 2
    assert {e["value"] for e in result["rejectExamples"]} == {"300.1.2.3", "not-a-hash"}
    assert quality["rejectShare"] == 0.2
    assert quality["duplicates"] == {
        "withinFeed": 2,
        "againstStore": 0,
        "exact": True,
        "distinct": 6,
        "new": 6,
    }
    assert result["stored"] == {"new": 6, "indicators": 8}


def test_second_ingestion_of_the_same_feed_counts_every_value_against_the_store() -> None:
    store = FakeStore()
    run(store, {"source": str(QUALITY_FEED)})

    again = run(store, {"source": str(QUALITY_FEED)})["quality"]["duplicates"]

    assert again["new"] == 0
    assert again["againstStore"] == 6
    assert again["withinFeed"] == 2


def test_repeats_across_batches_count_within_the_feed_not_against_the_store(
    tmp_path: Path,
) -> None:
    rows = ["IP,203.0.113.1,", "IP,203.0.113.2,", "IP,203.0.113.1,", "IP,203.0.113.3,"]
    feed = write_csv(tmp_path / "repeats.csv", rows)
    store = FakeStore()
    store.indicators[("ipv4", "203.0.113.3")] = {
        "count": 1, "tags": set(), "confidence": None, "sources": {"other"}
    }  # fmt: skip

    result = run(store, {"source": str(feed), "batchSize": 1})

    assert store.batches >= 4
    assert result["quality"]["duplicates"]["withinFeed"] == 1
    assert result["quality"]["duplicates"]["againstStore"] == 1
    assert result["quality"]["duplicates"]["new"] == 2


def test_sample_feeds_report_their_known_counts() -> None:
    expected = {
        "sample_iocs.csv": (8, 7, 1),
        "sample_misp_event.json": (9, 9, 1),
        "sample_stix21.json": (10, 6, 1),
    }
    for name, (records, accepted, rejected) in expected.items():
        result = run(FakeStore(), {"source": str(FEEDS / name)})
        assert result["records"]["read"] == records, name
        assert result["quality"]["volume"]["indicators"] == accepted, name
        assert result["items"]["rejected"] == rejected, name
        assert result["quality"]["anomalies"] == [], name


# -- anomaly flags -------------------------------------------------------------------------


def test_reject_share_at_the_threshold_raises_no_flag() -> None:
    result = run(FakeStore(), {"source": str(QUALITY_FEED), "maxRejectShare": 0.2})
    assert "rejectShare" not in {f["flag"] for f in result["quality"]["anomalies"]}


def test_reject_share_above_the_threshold_raises_a_flag_with_the_figures() -> None:
    result = run(FakeStore(), {"source": str(QUALITY_FEED), "maxRejectShare": 0.1})

    flag = next(f for f in result["quality"]["anomalies"] if f["flag"] == "rejectShare")
    assert flag["value"] == 0.2 and flag["threshold"] == 0.1
    assert "2 of 10 values rejected" in flag["message"]


def test_volume_far_above_previous_runs_is_flagged() -> None:
    result = run(FakeStore(), {"source": str(QUALITY_FEED), "volumeHistory": [1, 2, 2]})

    flag = next(f for f in result["quality"]["anomalies"] if f["flag"] == "volume")
    assert flag["median"] == 2 and flag["value"] == 8 and flag["ratio"] == 4.0


def test_volume_far_below_previous_runs_is_flagged() -> None:
    result = run(FakeStore(), {"source": str(QUALITY_FEED), "volumeHistory": [100, 90, 110]})
    assert "volume" in {f["flag"] for f in result["quality"]["anomalies"]}


def test_volume_close_to_previous_runs_or_without_history_is_not_flagged() -> None:
    near = run(FakeStore(), {"source": str(QUALITY_FEED), "volumeHistory": [7, 9, 12]})
    alone = run(FakeStore(), {"source": str(QUALITY_FEED)})

    assert "volume" not in {f["flag"] for f in near["quality"]["anomalies"]}
    assert "volume" not in {f["flag"] for f in alone["quality"]["anomalies"]}
    assert alone["quality"]["volume"] == {"indicators": 8, "records": 10, "history": []}


def test_timestamp_in_the_future_is_flagged_with_an_example() -> None:
    result = run(FakeStore(), {"source": str(QUALITY_FEED)})

    future = result["quality"]["futureTimestamps"]
    assert future["records"] == 1
    assert future["examples"][0]["value"].startswith("2999-01-01")
    assert "futureTimestamps" in {f["flag"] for f in result["quality"]["anomalies"]}


def test_timestamp_within_the_skew_tolerance_is_not_future(tmp_path: Path) -> None:
    from datetime import UTC, datetime, timedelta

    soon = (datetime.now(UTC) + timedelta(minutes=5)).strftime("%Y-%m-%dT%H:%M:%SZ")
    later = (datetime.now(UTC) + timedelta(hours=3)).strftime("%Y-%m-%dT%H:%M:%SZ")
    feed = write_csv(tmp_path / "skew.csv", [f"IP,203.0.113.1,{soon}", f"IP,203.0.113.2,{later}"])

    result = run(FakeStore(), {"source": str(feed)})

    assert result["quality"]["futureTimestamps"]["records"] == 1
    assert result["quality"]["futureTimestamps"]["examples"][0]["value"] == later


def test_stix_valid_until_ahead_of_today_is_not_a_future_timestamp(tmp_path: Path) -> None:
    bundle = {
        "type": "bundle",
        "id": "bundle--00000000-0000-4000-8000-000000000001",
        "objects": [
            {
                "type": "indicator",
                "spec_version": "2.1",
                "id": "indicator--00000000-0000-4000-8000-000000000002",
                "created": "2024-01-01T00:00:00Z",
                "modified": "2024-01-01T00:00:00Z",
                "pattern": "[ipv4-addr:value = '203.0.113.9']",
                "pattern_type": "stix",
                "valid_from": "2024-01-01T00:00:00Z",
                "valid_until": "2999-01-01T00:00:00Z",
            }
        ],
    }
    feed = tmp_path / "valid_until.json"
    feed.write_text(json.dumps(bundle), encoding="utf-8")

    result = run(FakeStore(), {"source": str(feed)})

    assert result["quality"]["futureTimestamps"]["records"] == 0


# -- warning lists -------------------------------------------------------------------------


def test_warning_list_hits_are_tagged_lowered_and_still_stored() -> None:
    store = FakeStore()
    result = run(store, {"source": str(QUALITY_FEED), "warningLists": [str(LISTS)]})

    md5 = store.indicators[("md5", "44d88612fea8a8f36de82e1278abb02f")]
    net = store.indicators[("ipv4", "192.0.2.55")]
    assert "warninglist:Test hashes" in md5["tags"]
    assert md5["confidence"] == WARNING_LIST_MAX_CONFIDENCE  # the feed said 90
    assert "warninglist:Test documentation networks" in net["tags"]
    assert net["confidence"] == WARNING_LIST_MAX_CONFIDENCE
    assert result["quality"]["warningLists"]["hits"] == {
        "Test hashes": 1,
        "Test documentation networks": 1,
    }
    assert sorted(result["quality"]["warningLists"]["loaded"]) == [
        "Test documentation networks",
        "Test hashes",
    ]
    assert result["stored"]["new"] == 6  # nothing dropped


def test_values_on_no_list_keep_their_confidence_and_tags() -> None:
    store = FakeStore()
    run(store, {"source": str(QUALITY_FEED), "warningLists": [str(LISTS / "test_hashes.json")]})

    row = store.indicators[("ipv4", "203.0.113.10")]
    assert row["confidence"] == 80
    assert not any(tag.startswith("warninglist:") for tag in row["tags"])


def test_missing_warning_list_fails_the_task_naming_the_path(tmp_path: Path) -> None:
    missing = tmp_path / "nope.json"
    with pytest.raises(HandlerError) as caught:
        run(FakeStore(), {"source": str(QUALITY_FEED), "warningLists": [str(missing)]})
    assert str(missing) in str(caught.value)
    assert caught.value.retryable is False


def test_malformed_warning_list_fails_the_task_naming_the_path(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text('{"name": "x"}', encoding="utf-8")
    with pytest.raises(HandlerError, match="no 'list' array"):
        run(FakeStore(), {"source": str(QUALITY_FEED), "warningLists": [str(bad)]})


@pytest.mark.parametrize(
    ("parameters", "field"),
    [
        ({"maxRejectShare": 1.5}, "max_reject_share"),
        ({"volumeFactor": 1}, "volume_factor"),
        ({"volumeHistory": [3, -1]}, "volume_history"),
        ({"futureToleranceSeconds": -1}, "future_tolerance_seconds"),
        ({"warningLists": "lists/"}, "warning_lists"),
    ],
)
def test_bad_quality_parameters_are_refused_at_creation(
    parameters: dict[str, Any], field: str
) -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError) as caught:
        IngestionParameters.model_validate({"source": "x.csv", **parameters})
    assert caught.value.errors()[0]["loc"][0] in (field, field.replace("_", ""), *parameters)


# -- checkpoints and resume ------------------------------------------------------------------


def big_feed(tmp_path: Path, rows: int = 40) -> Path:
    # Every fifth row repeats an earlier value and every seventh is invalid, so every count
    # of the report is exercised across batch boundaries.
    lines = []
    for i in range(rows):
        if i % 7 == 6:
            lines.append(f"IP,999.0.0.{i},")
        elif i % 5 == 4:
            lines.append(f"IP,203.0.113.{i - 4},")
        else:
            lines.append(f"IP,203.0.113.{i},")
    return write_csv(tmp_path / "big.csv", lines)


def comparable(result: dict[str, Any]) -> dict[str, Any]:
    quality = result["quality"]
    duplicates = quality["duplicates"]
    return {
        "records": result["records"],
        "items": result["items"],
        "byType": result["byType"],
        "rejectReasons": result["rejectReasons"],
        "stored": result["stored"],
        # After a resume, repeats across the resume point move from "within the feed" to
        # "against the store" (the module docstring of cti.quality says why); their sum holds.
        "duplicates": duplicates["withinFeed"] + duplicates["againstStore"],
    }


def test_resume_after_a_crash_counts_nothing_twice(tmp_path: Path) -> None:
    feed = big_feed(tmp_path)
    params = {"source": str(feed), "batchSize": 5}
    whole = run(FakeStore(), params)

    store = FakeStore(crash_on_batch=4)
    with pytest.raises(Crash):
        run(store, params)
    saved = store.checkpoint
    assert saved["position"] > 0
    store.crash_on_batch = None
    resumed = run(store, params, checkpoint=saved)

    assert comparable(resumed) == comparable(whole)
    assert resumed["quality"]["resumedAt"] == [saved["position"]]
    # The in-memory key set is not checkpointed: the report says the split is approximate.
    assert resumed["quality"]["duplicates"]["exact"] is False
    assert sum(row["count"] for row in store.indicators.values()) == whole["stored"]["indicators"]


def test_stop_request_leaves_a_checkpoint_that_resumes_to_the_same_report(
    tmp_path: Path,
) -> None:
    feed = big_feed(tmp_path)
    params = {"source": str(feed), "batchSize": 5}
    whole = run(FakeStore(), params)

    store = FakeStore()
    with pytest.raises(HandlerError, match="stopped at record"):
        run(store, params, stop_after_flushes=2)
    resumed = run(store, params, checkpoint=store.checkpoint)

    assert comparable(resumed) == comparable(whole)


def test_a_record_with_several_indicators_is_never_split_by_a_checkpoint(
    tmp_path: Path,
) -> None:
    # Three hash columns per row: with batchSize 2 a naive flush would checkpoint in the
    # middle of a row and lose its last value on resume.
    header = "md5,sha1,sha256\n"
    rows = [f"{i:032x},{i:040x},{i:064x}\n" for i in range(1, 9)]
    feed = tmp_path / "hashes.csv"
    feed.write_text(header + "".join(rows), encoding="utf-8")
    params = {"source": str(feed), "batchSize": 2}

    store = FakeStore(crash_on_batch=3)
    with pytest.raises(Crash):
        run(store, params)
    store.crash_on_batch = None
    resumed = run(store, params, checkpoint=store.checkpoint)

    assert resumed["items"] == {"indicator": 24}
    assert len(store.indicators) == 24
    assert all(row["count"] == 1 for row in store.indicators.values())
