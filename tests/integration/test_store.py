"""The store suite: every test runs on SQLite and on PostgreSQL."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from phantom_spire.engine.lifecycle import Event, ExecutionStatus, Priority, TaskStatus
from phantom_spire.errors import IllegalTransition, LeaseLost, TaskNotFound
from phantom_spire.handlers.registry import default_registry
from phantom_spire.services.tasks import TaskService, TaskSpec
from phantom_spire.store import IndicatorRecord, Store
from phantom_spire.store.schema import metadata
from phantom_spire.testing import FakeClock


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def store(store_url: str, clock: FakeClock) -> Store:
    s = Store(store_url, clock=clock)
    yield s
    s.dispose()


@pytest.fixture
def service(store: Store) -> TaskService:
    return TaskService(store, default_registry(), default_timeout_ms=60_000)


def make_task(
    service: TaskService, *, priority: str = "normal", execute: bool = True, **params: Any
) -> dict[str, Any]:
    spec = TaskSpec.model_validate(
        {
            "name": "t",
            "type": "noop",
            "priority": priority,
            "definition": {"parameters": params, "retryPolicy": {"maxAttempts": 2}},
        }
    )
    return service.create_task(spec, execute=execute)


def _outside_metadata(name: str | None, type_: str, *_: object) -> bool:
    # The full-text structures (SQLite's FTS5 table and its shadow tables, PostgreSQL's
    # expression index) are created by migration 0005 on purpose outside the metadata.
    return not (name or "").startswith(("tasks_fts", "ix_tasks_search"))


def test_migration_creates_exactly_the_schema_described_in_code(store: Store) -> None:
    with store._write_engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"include_name": _outside_metadata})
        diff = compare_metadata(context, metadata)
    assert diff == []


def test_embedded_sqlite_store_runs_in_wal_mode(tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path / 'wal.db'}")
    with store._read_engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 2  # FULL
    store.dispose()


def test_created_task_is_pending_and_readable(service: TaskService) -> None:
    row = make_task(service, execute=False)
    stored = service.get_task(row["id"])
    assert stored["status"] == "pending"
    assert stored["parameters"] == {"sleepMs": 0, "fail": False, "retryable": True}


def test_reading_a_missing_task_raises_task_not_found(store: Store) -> None:
    with pytest.raises(TaskNotFound, match="nope"):
        store.get_task("nope")


def test_claim_takes_highest_priority_first_then_oldest(
    service: TaskService, store: Store, clock: FakeClock
) -> None:
    low = make_task(service, priority="low")
    clock.advance(1)
    first_high = make_task(service, priority="high")
    clock.advance(1)
    second_high = make_task(service, priority="high")
    critical = make_task(service, priority="critical")

    order = [c.task["id"] for c in store.claim_tasks("w1", 10, 30)]

    assert order == [critical["id"], first_high["id"], second_high["id"], low["id"]]


def test_claim_opens_an_execution_and_a_lease(store: Store, service: TaskService) -> None:
    task = make_task(service)
    (claim,) = store.claim_tasks("w1", 1, 30)

    assert claim.attempt == 1
    row = store.get_task(task["id"])
    assert row["status"] == "running" and row["lease_owner"] == "w1"
    assert row["lease_expires_at"] == pytest.approx(store.clock() + 30)
    (execution,) = store.list_executions(task["id"])
    assert execution["status"] == "running" and execution["worker_id"] == "w1"


def test_pending_tasks_are_not_claimed_until_executed(store: Store, service: TaskService) -> None:
    task = make_task(service, execute=False)
    assert store.claim_tasks("w1", 5, 30) == []
    service.execute_task(task["id"])
    assert [c.task["id"] for c in store.claim_tasks("w1", 5, 30)] == [task["id"]]


def test_concurrent_claimers_never_take_the_same_task(store: Store, service: TaskService) -> None:
    for _ in range(60):
        make_task(service)
    claimed: list[str] = []
    lock = threading.Lock()

    def claimer(worker: str) -> None:
        while True:
            got = store.claim_tasks(worker, 3, 30)
            if not got:
                return
            with lock:
                claimed.extend(c.task["id"] for c in got)

    threads = [threading.Thread(target=claimer, args=(f"w{i}",)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    assert len(claimed) == 60
    assert len(set(claimed)) == 60


def test_expired_lease_requeues_task_and_marks_attempt_lost(
    store: Store, service: TaskService, clock: FakeClock
) -> None:
    task = make_task(service)
    store.claim_tasks("dead-worker", 1, 30)

    clock.advance(10)
    assert store.reap_expired_leases() == []
    clock.advance(25)
    (reaped,) = store.reap_expired_leases()

    assert reaped.new_status == "queued" and reaped.worker_id == "dead-worker"
    (lost,) = store.list_executions(task["id"])
    assert lost["status"] == ExecutionStatus.LOST
    assert "dead-worker" in lost["error"]

    (again,) = store.claim_tasks("w2", 1, 30)
    assert again.attempt == 2
    assert [e["attempt"] for e in store.list_executions(task["id"])] == [1, 2]


def test_task_that_keeps_losing_its_worker_is_dead_lettered(
    store: Store, service: TaskService, clock: FakeClock
) -> None:
    task = make_task(service)  # maxAttempts 2
    for _ in range(2):
        store.claim_tasks("doomed", 1, 30)
        clock.advance(31)
        store.reap_expired_leases()

    row = store.get_task(task["id"])
    assert row["status"] == "dead_lettered"
    assert "2 attempts failed or were lost" in row["error"]
    assert store.claim_tasks("w", 1, 30) == []


def test_renewed_lease_is_not_reaped(store: Store, service: TaskService, clock: FakeClock) -> None:
    task = make_task(service)
    store.claim_tasks("w1", 1, 30)
    clock.advance(20)
    assert store.renew_leases("w1", [task["id"]], 30) == {task["id"]: "running"}
    clock.advance(20)
    assert store.reap_expired_leases() == []


def test_a_worker_cannot_renew_or_finish_a_task_it_lost(
    store: Store, service: TaskService, clock: FakeClock
) -> None:
    task = make_task(service)
    (old,) = store.claim_tasks("w1", 1, 30)
    clock.advance(31)
    store.reap_expired_leases()
    store.claim_tasks("w2", 1, 30)

    assert store.renew_leases("w1", [task["id"]], 30) == {}
    with pytest.raises(LeaseLost):
        store.finish_execution(
            old,
            "w1",
            execution_status=ExecutionStatus.COMPLETED,
            task_status=TaskStatus.COMPLETED,
        )


def test_finish_execution_records_outcome_on_task_and_attempt(
    store: Store, service: TaskService
) -> None:
    task = make_task(service)
    (claim,) = store.claim_tasks("w1", 1, 30)
    store.finish_execution(
        claim,
        "w1",
        execution_status=ExecutionStatus.COMPLETED,
        task_status=TaskStatus.COMPLETED,
        result={"ok": 1},
        metrics={"wallSeconds": 0.1},
    )
    row = store.get_task(task["id"])
    assert row["status"] == "completed" and row["result"] == {"ok": 1}
    assert row["lease_owner"] is None
    (execution,) = store.list_executions(task["id"])
    assert execution["status"] == "completed" and execution["metrics"] == {"wallSeconds": 0.1}


def test_retry_wait_task_is_claimable_only_after_its_backoff(
    store: Store, service: TaskService, clock: FakeClock
) -> None:
    task = make_task(service)
    (claim,) = store.claim_tasks("w1", 1, 30)
    store.finish_execution(
        claim,
        "w1",
        execution_status=ExecutionStatus.FAILED,
        task_status=TaskStatus.RETRY_WAIT,
        error="boom",
        available_at=clock() + 5,
    )
    assert store.claim_tasks("w1", 1, 30) == []
    clock.advance(5)
    (again,) = store.claim_tasks("w1", 1, 30)
    assert again.task["id"] == task["id"] and again.attempt == 2


def test_illegal_transition_is_refused_and_changes_nothing(
    store: Store, service: TaskService
) -> None:
    task = make_task(service, execute=False)
    with pytest.raises(IllegalTransition, match=r"cannot complete task .*: it is 'pending'"):
        store.transition_task(task["id"], Event.COMPLETE)
    assert store.get_task(task["id"])["status"] == "pending"


def test_executing_an_already_queued_task_is_a_conflict(service: TaskService) -> None:
    task = make_task(service)
    with pytest.raises(
        IllegalTransition, match="it is 'queued'; execute is allowed from 'pending'"
    ):
        service.execute_task(task["id"])


def test_state_changes_are_audited(store: Store, service: TaskService) -> None:
    task = make_task(service, execute=False)
    service.execute_task(task["id"])
    actions = [e["action"] for e in store.list_audit(target_id=task["id"])]
    assert actions == ["task.create", "task.execute"]


def test_indicator_upsert_keeps_one_row_per_type_and_value(store: Store, clock: FakeClock) -> None:
    batch = [
        IndicatorRecord("ipv4", "1.2.3.4"),
        IndicatorRecord("ipv4", "1.2.3.4", confidence=40),
        IndicatorRecord("domain", "evil.example"),
    ]
    first = store.upsert_indicators(batch, "feed-a")
    clock.advance(60)
    second = store.upsert_indicators([IndicatorRecord("ipv4", "1.2.3.4", confidence=90)], "feed-b")

    assert (first.new, first.existing, first.new_by_type) == (2, 0, {"ipv4": 1, "domain": 1})
    assert (second.new, second.existing) == (0, 1)
    (ip,) = store.list_indicators(type="ipv4")
    assert ip["count"] == 3
    assert ip["confidence"] == 90
    assert ip["sources"] == ["feed-a", "feed-b"]
    assert ip["last_seen"] - ip["first_seen"] == pytest.approx(60)
    assert store.count_indicators_by_type() == {"ipv4": 1, "domain": 1}
    assert [r["value"] for r in store.list_indicators(source="feed-b")] == ["1.2.3.4"]


def test_bulk_creation_inserts_all_tasks_in_one_call(service: TaskService, store: Store) -> None:
    specs = [
        TaskSpec.model_validate({"name": f"n{i}", "type": "noop", "priority": p.value})
        for i, p in enumerate(Priority)
    ]
    rows = service.create_tasks(specs, execute=True)
    assert store.count_tasks_by_status() == {"queued": len(rows)}


def test_store_reports_its_dialect(store: Store, store_url: str) -> None:
    assert store.dialect == sa.engine.make_url(store_url).get_backend_name()


def test_concurrent_creations_are_all_committed_even_when_grouped(
    service: TaskService, store: Store
) -> None:
    ids: list[str] = []
    lock = threading.Lock()

    def create(n: int) -> None:
        for _ in range(n):
            row = make_task(service, execute=False)
            with lock:
                ids.append(row["id"])

    threads = [threading.Thread(target=create, args=(25,)) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    assert len(set(ids)) == 200
    assert store.count_tasks_by_status() == {"pending": 200}
    assert len(store.list_audit(limit=1000)) == 200


def test_a_row_that_cannot_be_inserted_fails_alone_not_its_batch(
    service: TaskService, store: Store
) -> None:
    good = make_task(service, execute=False)
    duplicate = dict(store.get_task(good["id"]))
    with pytest.raises(sa.exc.IntegrityError):
        store.insert_task(duplicate)
    assert store.count_tasks_by_status() == {"pending": 1}


def test_indicator_merge_keeps_the_strictest_tlp_and_highest_classification(
    store: Store,
) -> None:
    for tlp, level in [(1, 0), (3, 2), (2, 1)]:
        store.upsert_indicators(
            [IndicatorRecord("domain", "evil.example", tlp=tlp, classification=level)], "f"
        )
    (row,) = store.list_indicators()
    assert (row["tlp"], row["classification"]) == (3, 2)
    assert store.list_indicators(max_classification=1) == []
