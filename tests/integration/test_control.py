"""Execution control: cancel, pause, resume, retry, checkpoints, races and aging.

Every test runs on SQLite and PostgreSQL.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from phantom_spire.engine.lifecycle import Event
from phantom_spire.engine.worker import Worker
from phantom_spire.errors import IdempotencyConflict, IllegalTransition, TaskNotFound
from phantom_spire.handlers.registry import default_registry
from phantom_spire.services.tasks import TaskService, TaskSpec, TaskUpdate
from phantom_spire.settings import Settings
from phantom_spire.store import Store
from phantom_spire.testing import FakeClock

FINAL = {"completed", "failed", "dead_lettered", "timed_out", "cancelled"}


def settings(**overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "workers": 4,
        "poll_seconds": 0.02,
        "heartbeat_seconds": 0.2,
        "lease_seconds": 1.0,
        "reaper_seconds": 0.1,
        "stop_grace_seconds": 0.5,
        "ingest_batch_size": 1000,
    }
    values.update(overrides)
    return Settings(**values)


class Harness:
    """A store, a service and a worker running in a background thread's event loop."""

    def __init__(self, store_url: str, **overrides: Any) -> None:
        self.settings = settings(**overrides)
        self.store = Store(store_url)
        self.registry = default_registry(self.settings)
        self.service = TaskService(self.store, self.registry, default_timeout_ms=60_000)
        self._thread: threading.Thread | None = None
        self._worker: Worker | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def submit(self, type_: str = "noop", execute: bool = True, **definition: Any) -> str:
        spec = TaskSpec.model_validate({"name": type_, "type": type_, "definition": definition})
        return self.service.create_task(spec, execute=execute)["id"]

    def status(self, task_id: str) -> str:
        return self.store.get_task(task_id)["status"]

    def start_worker(self) -> None:
        self._worker = Worker(self.store, self.registry, self.settings)
        self._loop = asyncio.new_event_loop()
        worker, loop = self._worker, self._loop

        def run() -> None:
            loop.run_until_complete(worker.run())
            # Store calls still in the default executor would leak their connections.
            loop.run_until_complete(loop.shutdown_default_executor())

        self._thread = threading.Thread(target=run, daemon=True)
        self._thread.start()

    def stop_worker(self) -> None:
        if self._worker and self._loop and self._thread:
            self._loop.call_soon_threadsafe(self._worker.stop)
            self._thread.join(timeout=15)
            self._loop.close()
            self._worker = None

    def wait(self, predicate: Callable[[], bool], timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while not predicate():
            if time.monotonic() > deadline:
                raise AssertionError("condition not reached in time")
            time.sleep(0.02)


@pytest.fixture
def h(store_url: str) -> Harness:
    harness = Harness(store_url)
    yield harness
    harness.stop_worker()
    harness.store.dispose()


# -- cancel -------------------------------------------------------------------------------


def test_cancel_of_a_queued_task_is_immediate(h: Harness) -> None:
    task_id = h.submit()
    assert h.service.control_task(task_id, "cancel")["status"] == "cancelled"


def test_cancel_of_a_paused_task_is_immediate(h: Harness) -> None:
    task_id = h.submit()
    h.service.control_task(task_id, "pause")
    assert h.service.control_task(task_id, "cancel")["status"] == "cancelled"


def test_cancel_of_a_retry_waiting_task_is_immediate(h: Harness) -> None:
    task_id = h.submit(
        parameters={"fail": True}, retryPolicy={"maxAttempts": 3, "initialDelay": 60_000}
    )
    h.start_worker()
    h.wait(lambda: h.status(task_id) == "retry_wait")
    assert h.service.control_task(task_id, "cancel")["status"] == "cancelled"


def test_cancel_of_a_running_task_is_a_handshake_ending_cancelled(h: Harness) -> None:
    task_id = h.submit(parameters={"sleepMs": 30_000})
    h.start_worker()
    h.wait(lambda: h.status(task_id) == "running")

    assert h.service.control_task(task_id, "cancel")["status"] == "cancelling"
    h.wait(lambda: h.status(task_id) == "cancelled", timeout=10)

    (execution,) = h.store.list_executions(task_id)
    assert execution["status"] == "cancelled"


def test_a_handler_that_ignores_the_stop_signal_is_forced_after_the_grace_period(
    h: Harness,
) -> None:
    task_id = h.submit(parameters={"sleepMs": 60_000})  # noop never checks should_stop()
    h.start_worker()
    h.wait(lambda: h.status(task_id) == "running")
    asked = time.monotonic()
    h.service.control_task(task_id, "cancel")
    h.wait(lambda: h.status(task_id) == "cancelled", timeout=10)

    assert time.monotonic() - asked < 30  # far below the handler's 60 s sleep
    messages = [log["message"] for log in h.store.list_logs(task_id)]
    assert any("forcing" in m for m in messages)


def test_cancel_of_a_completed_task_is_refused_with_its_state(h: Harness) -> None:
    task_id = h.submit()
    h.start_worker()
    h.wait(lambda: h.status(task_id) == "completed")
    with pytest.raises(IllegalTransition) as info:
        h.service.control_task(task_id, "cancel")
    assert info.value.current == "completed"


# -- retries and dead letters --------------------------------------------------------------


def test_non_retryable_and_timed_out_tasks_are_listed_as_dead_letters(h: Harness) -> None:
    bad = h.submit(parameters={"fail": True, "retryable": False})
    slow = h.submit(
        parameters={"sleepMs": 5000}, timeout=50, retryPolicy={"maxAttempts": 2, "initialDelay": 10}
    )
    h.start_worker()
    h.wait(lambda: h.status(bad) in FINAL and h.status(slow) in FINAL)

    assert len(h.store.list_executions(bad)) == 1
    assert [e["status"] for e in h.store.list_executions(slow)] == ["timed_out", "timed_out"]
    letters = {t["id"]: t for t in h.service.list_dead_letters()}
    assert letters[bad]["status"] == "failed"
    assert letters[bad]["error"] == "failed on request (fail=true)"
    assert letters[slow]["status"] == "dead_lettered"
    assert "exceeded its timeout of 50 ms" in letters[slow]["error"]


def test_retry_requeues_a_dead_letter_with_a_fresh_retry_budget(h: Harness) -> None:
    task_id = h.submit(parameters={"fail": True}, retryPolicy={"maxAttempts": 1})
    h.start_worker()
    h.wait(lambda: h.status(task_id) == "dead_lettered")

    h.service.update_task(task_id, TaskUpdate(parameters={"fail": False}))
    h.service.control_task(task_id, "retry")
    h.wait(lambda: h.status(task_id) == "completed")

    assert [e["status"] for e in h.store.list_executions(task_id)] == ["failed", "completed"]
    assert h.store.get_task(task_id)["failures"] == 0  # the budget was reset by the retry


# -- pause, resume and checkpoints ----------------------------------------------------------


def write_feed(path: Path, rows: int) -> Path:
    with path.open("w") as f:
        f.write("indicator,type\n")
        for i in range(rows):
            f.write(f"10.{i // 65536}.{(i // 256) % 256}.{i % 256},ip\n")
    return path


def ingest(h: Harness, feed: Path) -> str:
    return h.submit("data_ingestion", parameters={"source": str(feed)}, timeout=600_000)


def assert_each_row_stored_once(h: Harness, rows: int) -> None:
    assert h.store.count_indicators_by_type() == {"ipv4": rows}
    counts = {r["count"] for r in h.store.list_indicators(limit=10_000)}
    assert counts == {1}


def resumed_at(h: Harness, task_id: str) -> list[int]:
    out = []
    for log in h.store.list_logs(task_id, limit=10_000):
        if log["message"].startswith("resuming"):
            out.append(int(log["message"].rsplit(" ", 1)[1]))
    return out


@pytest.mark.timeout(300)
def test_paused_ingestion_resumes_from_its_checkpoint_and_stores_each_row_once(
    store_url: str, tmp_path: Path
) -> None:
    # A grace period long enough that the handler stops at a record boundary by itself,
    # as in production (the forced stop has its own test).
    h = Harness(store_url, stop_grace_seconds=30)
    rows = 100_000
    task_id = ingest(h, write_feed(tmp_path / "feed.csv", rows))
    h.start_worker()
    h.wait(lambda: (h.store.get_task(task_id)["progress_done"] or 0) >= rows * 0.4)

    h.service.control_task(task_id, "pause")
    h.wait(lambda: h.status(task_id) == "paused")
    paused_at = h.store.get_task(task_id)["checkpoint"]["position"]
    assert 0 < paused_at < rows

    h.service.control_task(task_id, "resume")
    h.wait(lambda: h.status(task_id) == "completed", timeout=120)

    task = h.store.get_task(task_id)
    assert task["result"]["records"]["read"] == rows
    assert resumed_at(h, task_id) == [paused_at]
    assert [e["status"] for e in h.store.list_executions(task_id)] == ["paused", "completed"]
    assert task["failures"] == 0
    assert_each_row_stored_once(h, rows)
    h.stop_worker()
    h.store.dispose()


def test_update_and_delete_are_refused_while_a_worker_holds_the_task(h: Harness) -> None:
    task_id = h.submit(parameters={"sleepMs": 30_000})
    h.start_worker()
    h.wait(lambda: h.status(task_id) == "running")

    with pytest.raises(IllegalTransition, match="update"):
        h.service.update_task(task_id, TaskUpdate(name="renamed"))
    with pytest.raises(IllegalTransition, match="delete"):
        h.service.delete_task(task_id)


def test_soft_delete_hides_the_task_but_keeps_its_history_and_audit(h: Harness) -> None:
    task_id = h.submit()
    h.start_worker()
    h.wait(lambda: h.status(task_id) == "completed")
    h.service.delete_task(task_id)

    with pytest.raises(TaskNotFound):
        h.service.get_task(task_id)
    assert len(h.store.list_executions(task_id)) == 1
    assert [e["action"] for e in h.store.list_audit(target_id=task_id)][-1] == "task.delete"


def test_deleting_a_queued_task_cancels_it(h: Harness) -> None:
    task_id = h.submit()
    assert h.service.delete_task(task_id)["status"] == "cancelled"


# -- races ----------------------------------------------------------------------------------


def test_concurrent_control_calls_leave_one_consistent_state_and_history(h: Harness) -> None:
    task_id = h.submit()
    outcomes: list[tuple[str, str]] = []
    lock = threading.Lock()
    actions = ["pause", "resume", "cancel"] * 17

    def call(action: str) -> None:
        try:
            row = h.service.control_task(task_id, action)
        except IllegalTransition:
            return
        with lock:
            outcomes.append((action, row["status"]))

    threads = [threading.Thread(target=call, args=(a,)) for a in actions[:50]]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    audit = [e["action"] for e in h.store.list_audit(target_id=task_id)]
    assert audit[0] == "task.create"
    assert len(audit) - 1 == len(outcomes)  # every accepted call audited, no refused one
    assert h.store.get_task(task_id)["version"] == 1 + len(outcomes)
    # Replaying the accepted calls in audit order through the table gives the final state.
    from phantom_spire.engine.lifecycle import next_status

    state = "queued"
    for action in audit[1:]:
        state = next_status(task_id, state, Event(action.split(".")[1]))
    assert state == h.status(task_id)


def test_two_workers_never_run_the_same_attempt(store_url: str) -> None:
    a, b = Harness(store_url), Harness(store_url)
    ids = [a.submit(parameters={"sleepMs": 5}) for _ in range(40)]
    a.start_worker()
    b.start_worker()
    a.wait(lambda: all(a.status(i) == "completed" for i in ids))
    a.stop_worker()
    b.stop_worker()

    for task_id in ids:
        executions = a.store.list_executions(task_id)
        assert [e["attempt"] for e in executions] == [1]
    a.store.dispose()
    b.store.dispose()


# -- idempotency ----------------------------------------------------------------------------


def test_idempotency_key_returns_the_first_task_and_refuses_another_body(h: Harness) -> None:
    spec = TaskSpec.model_validate({"name": "x", "type": "noop"})
    first, created = h.service.create_task_idempotent(spec, "key-1")
    again, created_again = h.service.create_task_idempotent(spec, "key-1")

    assert created and not created_again and again["id"] == first["id"]
    other = TaskSpec.model_validate({"name": "y", "type": "noop"})
    with pytest.raises(IdempotencyConflict, match="key-1"):
        h.service.create_task_idempotent(other, "key-1")


def test_concurrent_requests_with_one_idempotency_key_create_one_task(h: Harness) -> None:
    spec = TaskSpec.model_validate({"name": "x", "type": "noop"})
    ids: list[str] = []

    def create() -> None:
        ids.append(h.service.create_task_idempotent(spec, "same")[0]["id"])

    threads = [threading.Thread(target=create) for _ in range(10)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(ids)) == 1
    assert h.store.count_tasks_by_status() == {"pending": 1}


# -- why waiting, metrics, aging -----------------------------------------------------------


def test_status_of_a_queued_task_says_how_many_go_first(h: Harness) -> None:
    h.submit(**{})
    spec = TaskSpec.model_validate({"name": "x", "type": "noop", "priority": "critical"})
    h.service.create_task(spec, execute=True)
    last = h.service.create_task(
        TaskSpec.model_validate({"name": "x", "type": "noop"}), execute=True
    )
    reason = h.service.waiting_reason(h.store.get_task(last["id"]))
    assert reason is not None and reason["reason"] == "queued" and reason["position"] == 2


def test_metrics_report_queue_wait_attempts_and_throughput(h: Harness, tmp_path: Path) -> None:
    task_id = ingest(h, write_feed(tmp_path / "small.csv", 2000))
    h.start_worker()
    h.wait(lambda: h.status(task_id) == "completed")
    metrics = h.service.get_metrics(task_id)

    assert metrics["attempts"] == 1 and metrics["queueWaitSeconds"] >= 0
    assert metrics["recordsProcessed"] == 2000 and metrics["recordsPerSecond"] > 0
    assert metrics["perAttempt"][0]["status"] == "completed"
    assert metrics["perAttempt"][0]["processPeakRssMb"] > 0


def test_background_task_is_not_starved_by_a_steady_stream_of_high_tasks(store_url: str) -> None:
    clock = FakeClock()
    store = Store(store_url, clock=clock, aging_points_per_minute=10, aging_interval_seconds=5)
    service = TaskService(store, default_registry(), default_timeout_ms=1000)
    make = lambda p: service.create_task(  # noqa: E731
        TaskSpec.model_validate({"name": p, "type": "noop", "priority": p}), execute=True
    )
    background = make("background")["id"]
    # Promise of the setting: 300 points between high and background / 10 per minute = 30
    # minutes, plus one aging interval.
    bound_minutes = 300 / 10 + 1

    claimed_at = None
    for minute in range(60):
        for _ in range(3):
            make("high")
        claimed = [c.task["id"] for c in store.claim_tasks("w", 3, 30)]
        if background in claimed:
            claimed_at = minute
            break
        clock.advance(60)

    assert claimed_at is not None and claimed_at <= bound_minutes
    store.dispose()


def test_aging_keeps_strict_priority_among_tasks_that_waited_alike(store_url: str) -> None:
    clock = FakeClock()
    store = Store(store_url, clock=clock, aging_points_per_minute=10, aging_interval_seconds=0)
    service = TaskService(store, default_registry(), default_timeout_ms=1000)
    for p in ["low", "background", "critical", "normal", "high"]:
        service.create_task(
            TaskSpec.model_validate({"name": p, "type": "noop", "priority": p}), execute=True
        )
    clock.advance(3600)
    order = [c.task["name"] for c in store.claim_tasks("w", 5, 30)]
    assert order == ["critical", "high", "normal", "low", "background"]
    store.dispose()
