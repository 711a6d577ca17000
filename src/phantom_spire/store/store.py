"""The one Store interface over SQLAlchemy Core, for SQLite and PostgreSQL.

Every query the engine runs lives here, in a method named after what it does. Methods are
synchronous and thread-safe; async callers run them in a thread. Each state change reads the
task under a write lock (SQLite: the writer transaction; PostgreSQL: ``FOR UPDATE``) and is
checked against :mod:`phantom_spire.engine.lifecycle` before it is written.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, NamedTuple

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql as pg_dialect
from sqlalchemy.dialects import sqlite as sqlite_dialect
from sqlalchemy.dialects.postgresql import JSONB

from phantom_spire.engine.lifecycle import (
    HELD_STATES,
    TRANSITIONS,
    Event,
    ExecutionStatus,
    TaskStatus,
    next_status,
    outcome_event,
)
from phantom_spire.errors import (
    IllegalTransition,
    InvalidQuery,
    LeaseLost,
    SpireError,
    TaskNotFound,
)
from phantom_spire.ids import new_id
from phantom_spire.security.audit_chain import (
    GENESIS_HASH,
    GENESIS_HEAD,
    AuditEvent,
    ChainedEvent,
    ChainHead,
    VerifyResult,
    seal_event,
    verify_chain,
)
from phantom_spire.store import task_query
from phantom_spire.store.engine import create_engines
from phantom_spire.store.schema import (
    api_keys,
    audit_events,
    executions,
    indicator_sources,
    indicators,
    task_logs,
    tasks,
    users,
)
from phantom_spire.store.task_query import TaskQuery

__all__ = [
    "Claim",
    "IndicatorRecord",
    "ProgressUpdate",
    "Reaped",
    "Store",
    "TaskScope",
    "UpsertStats",
]

logger = logging.getLogger(__name__)

Clock = Callable[[], float]
Row = dict[str, Any]


@dataclass(frozen=True)
class Claim:
    """A task a worker now holds, and the execution (attempt) opened for it."""

    task: Row
    execution_id: str
    attempt: int


@dataclass(frozen=True)
class Reaped:
    """A task whose lease expired, and where the reaper sent it."""

    task_id: str
    attempt: int
    worker_id: str | None
    new_status: str


@dataclass(frozen=True)
class IndicatorRecord:
    """One normalised indicator to be merged into the store."""

    type: str
    value: str
    tags: tuple[str, ...] = ()
    confidence: int | None = None
    tlp: int = 0  # rank: CLEAR 0 ... RED 4
    classification: int = 0  # level rank of the task that reported it


class ProgressUpdate(NamedTuple):
    """A checkpoint to write with a batch, by the worker holding the task's lease."""

    task_id: str
    worker_id: str
    done: int | None
    total: int | None
    checkpoint: Any
    # The attempt writing: a forced-stopped handler thread of an earlier attempt (threads
    # cannot be killed) must not overwrite the checkpoint of the attempt that replaced it.
    attempt: int | None = None


@dataclass
class UpsertStats:
    """What a batch did to the indicator table."""

    new: int = 0
    existing: int = 0
    new_by_type: dict[str, int] = field(default_factory=dict)


class Store:
    """Persistence for tasks, executions, logs, audit events and indicators."""

    def __init__(
        self,
        url: str,
        *,
        clock: Clock = time.time,
        aging_points_per_minute: float = 0.0,
        aging_interval_seconds: float = 5.0,
        audit_key: bytes | None = None,
    ) -> None:
        self.url = url
        self.clock = clock
        self.aging_points_per_minute = aging_points_per_minute
        self.aging_interval_seconds = aging_interval_seconds
        self._last_aging = float("-inf")
        self.audit_key = audit_key
        self._write_engine, self._read_engine = create_engines(url)
        self.dialect = self._write_engine.dialect.name
        self._write_lock = threading.Lock() if self.dialect == "sqlite" else None
        self._pending_lock = threading.Lock()
        self._commit_turn = threading.Lock()
        self._pending: list[_PendingInsert] = []
        self._finishes: list[_PendingFinish] = []
        self._finish_turn = threading.Lock()
        # Called inside the transaction of every state change, after it is written, with
        # (connection, updated task row, event): how workflows react to a finished task in
        # the same transaction (e.g. queue the dependants whose last dependency completed).
        self.transition_listeners: list[Callable[[sa.Connection, Row, Event], None]] = []

    @property
    def is_postgres(self) -> bool:
        return self.dialect == "postgresql"

    def dispose(self) -> None:
        """Close every pooled connection."""
        self._write_engine.dispose()
        if self._read_engine is not self._write_engine:
            self._read_engine.dispose()

    @contextmanager
    def _write(self) -> Iterator[sa.Connection]:
        if self._write_lock is None:
            with self._write_engine.begin() as conn:
                yield conn
            return
        # SQLite has one writer. Threads of this process queue on a lock instead of on
        # SQLite's busy handler, which sleeps in growing steps (up to 100 ms) between tries.
        with self._write_lock, self._write_engine.begin() as conn:
            yield conn

    @contextmanager
    def _read(self) -> Iterator[sa.Connection]:
        with self._read_engine.begin() as conn:
            yield conn

    # -- health ----------------------------------------------------------------------------

    def ping(self) -> None:
        """Raise if the store cannot answer a trivial query."""
        with self._read() as conn:
            conn.execute(sa.text("SELECT 1"))

    def count_tasks_by_status(self, scope: TaskScope | None = None) -> dict[str, int]:
        query = (
            sa.select(tasks.c.status, sa.func.count())
            .where(tasks.c.deleted_at.is_(None), *_scope_clauses(scope))
            .group_by(tasks.c.status)
        )
        with self._read() as conn:
            return {status: count for status, count in conn.execute(query)}

    # -- tasks -----------------------------------------------------------------------------

    def insert_task(self, row: Row, *, audit: Row | None = None) -> Row:
        """Insert a new task and its audit event, durably, before returning.

        Concurrent callers share transactions (group commit): while one commit is in flight,
        the rows that arrive queue up and the next caller to get the turn commits them all
        at once. Each caller still returns only after its own row is committed.
        """
        entry = _PendingInsert(row, audit)
        with self._pending_lock:
            self._pending.append(entry)
        with self._commit_turn:
            if not entry.done:
                with self._pending_lock:
                    batch, self._pending = self._pending, []
                self._commit_inserts(batch)
        if entry.error is not None:
            raise entry.error
        return row

    def _commit_inserts(self, batch: list[_PendingInsert]) -> None:
        try:
            with self._write() as conn:
                conn.execute(sa.insert(tasks), [e.row for e in batch])
                self._insert_audits(conn, [e.audit for e in batch if e.audit])
        except Exception:
            if len(batch) == 1:
                batch[0].error = sys.exc_info()[1]
                batch[0].done = True
                return
            # One bad row must not fail its neighbours: commit them one by one instead.
            for entry in batch:
                self._commit_inserts([entry])
            return
        for entry in batch:
            entry.done = True

    def insert_tasks(self, rows: Sequence[Row]) -> None:
        """Insert many tasks in one transaction (bulk submission)."""
        if rows:
            with self._write() as conn:
                conn.execute(sa.insert(tasks), list(rows))

    def get_task(self, task_id: str) -> Row:
        query = sa.select(tasks).where(tasks.c.id == task_id, tasks.c.deleted_at.is_(None))
        with self._read() as conn:
            row = conn.execute(query).mappings().first()
        if row is None:
            raise TaskNotFound(task_id)
        return dict(row)

    def list_tasks(
        self,
        *,
        types: Sequence[str] = (),
        statuses: Sequence[str] = (),
        limit: int = 100,
        offset: int = 0,
        scope: TaskScope | None = None,
    ) -> list[Row]:
        query = sa.select(tasks).where(tasks.c.deleted_at.is_(None), *_scope_clauses(scope))
        if types:
            query = query.where(tasks.c.type.in_(types))
        if statuses:
            query = query.where(tasks.c.status.in_(statuses))
        query = query.order_by(tasks.c.id.desc()).limit(limit).offset(offset)
        with self._read() as conn:
            return [dict(r) for r in conn.execute(query).mappings()]

    def query_task_ids(self, query: TaskQuery, scope: TaskScope | None) -> list[str]:
        """Ids of the tasks matching ``query`` that ``scope`` admits, in the query's order."""
        postgres = self.is_postgres
        stmt = sa.select(tasks.c.id).where(
            *task_query.filter_clauses(query, postgres=postgres), *_scope_clauses(scope)
        )
        order = task_query.order_by(query)
        text = task_query.text_clause(query, postgres=postgres)
        if text is not None and postgres:
            where, rank = text
            stmt, order = stmt.where(where), [rank, *order]
        elif text is not None:
            _, ranked = text
            stmt = stmt.join(ranked, ranked.c.task_id == tasks.c.id)
            order = [ranked.c.rank.asc(), *order]
        stmt = stmt.order_by(*order).limit(task_query.MAX_SNAPSHOT)
        with self._read() as conn:
            return [task_id for (task_id,) in conn.execute(stmt)]

    def page_tasks(
        self,
        query: TaskQuery,
        scope: TaskScope | None,
        *,
        owner: str,
        limit: int,
        cursor: str | None = None,
    ) -> task_query.Page:
        """One page of a listing; see :mod:`phantom_spire.store.task_query` on cursors."""
        if cursor is None:
            ids, snapshot, offset = self.query_task_ids(query, scope), None, 0
        else:
            snapshot, offset = _parse_cursor(cursor)
            with self._read() as conn:
                loaded = task_query.load_snapshot(conn, snapshot, owner)
            if loaded is None:
                raise InvalidQuery(
                    f"cursor {cursor!r} is unknown or expired; start the listing again",
                    field="cursor",
                    value=cursor,
                )
            ids = loaded

        page_ids = ids[offset : offset + limit]
        stmt = sa.select(tasks).where(
            tasks.c.id.in_(page_ids), tasks.c.deleted_at.is_(None), *_scope_clauses(scope)
        )
        with self._read() as conn:
            found = {r["id"]: dict(r) for r in conn.execute(stmt).mappings()}
        rows = [found[i] for i in page_ids if i in found]

        next_offset = offset + limit
        if next_offset >= len(ids):
            return task_query.Page(rows, None)
        if snapshot is None:
            with self._write() as conn:
                snapshot = task_query.store_snapshot(conn, owner, ids, self.clock())
        return task_query.Page(rows, f"{snapshot}.{next_offset}")

    def transition_task(
        self,
        task_id: str,
        event: Event,
        *,
        audit: Row | None = None,
        **values: Any,
    ) -> Row:
        """Apply ``event`` to a task, if the transition table allows it in its current state."""
        with self._write() as conn:
            row = self._load_for_update(conn, task_id)
            updated = self._apply(conn, row, event, **values)
            if audit:
                self._insert_audit(conn, audit)
        return updated

    def control_task(self, task_id: str, event: Event, *, audit: Row | None = None) -> Row:
        """Apply an operator's event (cancel, pause, resume, retry), with its bookkeeping."""
        now = self.clock()
        with self._write() as conn:
            row = self._load_for_update(conn, task_id)
            target = next_status(task_id, row["status"], event)
            values: Row = {}
            if target in (TaskStatus.CANCELLING, TaskStatus.PAUSING):
                values["stop_requested_at"] = row["stop_requested_at"] or now
            elif target == TaskStatus.CANCELLED:
                values["finished_at"] = now
            elif target == TaskStatus.QUEUED:
                values.update(available_at=now, enqueued_at=now, effective_priority=row["priority"])
                if event is Event.RETRY:
                    # A manual retry is a fresh start: full retry budget, no stale outcome.
                    values.update(failures=0, finished_at=None, result=None)
            updated = self._apply(conn, row, event, **values)
            if audit:
                self._insert_audit(conn, audit)
        return updated

    def update_task(self, task_id: str, values: Row, *, audit: Row | None = None) -> Row:
        """Change a task's definition; refused while a worker holds it."""
        with self._write() as conn:
            row = self._load_for_update(conn, task_id)
            if row["status"] in HELD_STATES:
                raise IllegalTransition(task_id, row["status"], "update", _NOT_HELD_STATES)
            values = {**values, "updated_at": self.clock(), "version": row["version"] + 1}
            if values.get("priority") is not None and row["status"] == TaskStatus.QUEUED:
                values["effective_priority"] = values["priority"]
            conn.execute(sa.update(tasks).where(tasks.c.id == task_id).values(**values))
            if audit:
                self._insert_audit(conn, audit)
        return {**row, **values}

    def soft_delete_task(self, task_id: str, *, audit: Row | None = None) -> Row:
        """Hide a task from listings, keeping its executions, logs and audit trail.

        A task that has not finished is cancelled first; one a worker holds must be
        cancelled (and the cancel confirmed) before it can be deleted.
        """
        now = self.clock()
        with self._write() as conn:
            row = self._load_for_update(conn, task_id)
            if row["status"] in HELD_STATES:
                raise IllegalTransition(task_id, row["status"], "delete", _NOT_HELD_STATES)
            if row["status"] not in _TERMINAL:
                row = self._apply(conn, row, Event.CANCEL, finished_at=now)
            conn.execute(
                sa.update(tasks).where(tasks.c.id == task_id).values(deleted_at=now, updated_at=now)
            )
            if audit:
                self._insert_audit(conn, audit)
        return {**row, "deleted_at": now}

    def find_task_by_idempotency_key(self, key: str) -> Row | None:
        query = sa.select(tasks).where(tasks.c.idempotency_key == key)
        with self._read() as conn:
            row = conn.execute(query).mappings().first()
        return dict(row) if row else None

    def statuses_of(self, task_ids: Sequence[str]) -> dict[str, str]:
        if not task_ids:
            return {}
        query = sa.select(tasks.c.id, tasks.c.status).where(tasks.c.id.in_(list(task_ids)))
        with self._read() as conn:
            return {task_id: status for task_id, status in conn.execute(query)}

    def statuses_of_visible(
        self, task_ids: Sequence[str], scope: TaskScope | None
    ) -> dict[str, str]:
        """Like :meth:`statuses_of`, leaving out tasks ``scope`` does not admit."""
        if not task_ids:
            return {}
        query = sa.select(tasks.c.id, tasks.c.status).where(
            tasks.c.id.in_(list(task_ids)), tasks.c.deleted_at.is_(None), *_scope_clauses(scope)
        )
        with self._read() as conn:
            return {task_id: status for task_id, status in conn.execute(query)}

    def previous_ingestion_volumes(
        self, source_name: str, *, before_task: str, limit: int = 10
    ) -> list[int]:
        """Indicators accepted by the last completed ingestions of one source, newest first.

        Read from their results (``sourceName``, ``quality.volume.indicators``); the volume
        anomaly flag compares a run with these.
        """
        if self.is_postgres:
            name = tasks.c.result.op("->>")("sourceName")
            volume = tasks.c.result.op("->")("quality").op("->")("volume").op("->>")("indicators")
        else:
            name = sa.func.json_extract(tasks.c.result, "$.sourceName")
            volume = sa.func.json_extract(tasks.c.result, "$.quality.volume.indicators")
        query = (
            sa.select(volume)
            .where(
                tasks.c.handler == "data_ingestion",
                tasks.c.status == TaskStatus.COMPLETED,
                tasks.c.id != before_task,
                name == source_name,
            )
            .order_by(tasks.c.finished_at.desc())
            .limit(limit)
        )
        with self._read() as conn:
            return [int(v) for (v,) in conn.execute(query) if v is not None]

    def queue_position(self, row: Row) -> int:
        """How many queued tasks a worker will take before this one (0: next)."""
        ahead = sa.or_(
            tasks.c.effective_priority > row["effective_priority"],
            sa.and_(
                tasks.c.effective_priority == row["effective_priority"],
                tasks.c.enqueued_at < row["enqueued_at"],
            ),
        )
        query = sa.select(sa.func.count()).where(tasks.c.status == TaskStatus.QUEUED, ahead)
        with self._read() as conn:
            return int(conn.execute(query).scalar_one())

    def _load_for_update(self, conn: sa.Connection, task_id: str) -> Row:
        query = sa.select(tasks).where(tasks.c.id == task_id, tasks.c.deleted_at.is_(None))
        if self.is_postgres:
            query = query.with_for_update()
        row = conn.execute(query).mappings().first()
        if row is None:
            raise TaskNotFound(task_id)
        return dict(row)

    def _apply(self, conn: sa.Connection, row: Row, event: Event, **values: Any) -> Row:
        target = next_status(row["id"], row["status"], event)
        now = self.clock()
        values = {"status": str(target), "updated_at": now, "version": row["version"] + 1, **values}
        result = conn.execute(
            sa.update(tasks)
            .where(tasks.c.id == row["id"], tasks.c.version == row["version"])
            .values(**values)
        )
        if result.rowcount != 1:
            # Unreachable while the row is locked; kept so a locking bug fails loudly.
            raise SpireError(f"task {row['id']} changed while locked (version {row['version']})")
        updated = {**row, **values}
        for listener in self.transition_listeners:
            listener(conn, updated, event)
        return updated

    # -- claiming and leases ---------------------------------------------------------------

    def claim_tasks(self, worker_id: str, limit: int, lease_seconds: float) -> list[Claim]:
        """Atomically take up to ``limit`` of the highest-priority queued tasks.

        Retry-waiting tasks whose backoff has passed are promoted to ``queued`` first, in the
        same transaction. On PostgreSQL, ``SKIP LOCKED`` lets many workers claim at once
        without waiting on each other's rows.
        """
        if limit <= 0:
            return []
        now = self.clock()

        with self._write() as conn:
            self._promote_due_retries(conn, now)
            self._age_queued_tasks(conn, now)
            rows = self._select_claimable(conn, limit)
            return [self._claim_row(conn, row, worker_id, now, lease_seconds) for row in rows]

    def _promote_due_retries(self, conn: sa.Connection, now: float) -> None:
        # One set-based UPDATE instead of a row at a time; the states still come from the table.
        ((source, target),) = TRANSITIONS[Event.PROMOTE].items()
        conn.execute(
            sa.update(tasks)
            .where(tasks.c.status == source, tasks.c.available_at <= now)
            .values(
                status=target,
                enqueued_at=tasks.c.available_at,
                updated_at=now,
                version=tasks.c.version + 1,
            )
        )

    def _age_queued_tasks(self, conn: sa.Connection, now: float) -> None:
        """Raise each queued task's effective priority with its wait, so none starves.

        effective = priority + points_per_minute x minutes waited. Tasks that waited alike
        keep their order; a ``background`` task (0) overtakes fresh ``high`` ones (300) after
        300 / points_per_minute minutes. Recomputed at most every aging_interval_seconds so a
        deep queue is not rewritten on every claim.
        """
        if self.aging_points_per_minute <= 0:
            return
        if now - self._last_aging < self.aging_interval_seconds:
            return
        self._last_aging = now
        waited_minutes = (now - tasks.c.enqueued_at) / 60.0
        conn.execute(
            sa.update(tasks)
            .where(tasks.c.status == TaskStatus.QUEUED)
            .values(
                effective_priority=tasks.c.priority
                + sa.cast(sa.func.floor(waited_minutes * self.aging_points_per_minute), sa.Integer)
            )
        )

    def _select_claimable(self, conn: sa.Connection, limit: int) -> list[Row]:
        query = (
            sa.select(tasks)
            .where(tasks.c.status == TaskStatus.QUEUED)
            .order_by(tasks.c.effective_priority.desc(), tasks.c.enqueued_at, tasks.c.id)
            .limit(limit)
        )
        if self.is_postgres:
            query = query.with_for_update(skip_locked=True)
        return [dict(r) for r in conn.execute(query).mappings()]

    def _claim_row(
        self, conn: sa.Connection, row: Row, worker_id: str, now: float, lease_seconds: float
    ) -> Claim:
        attempt = row["attempts"] + 1
        execution_id = new_id()
        updated = self._apply(
            conn,
            row,
            Event.CLAIM,
            attempts=attempt,
            lease_owner=worker_id,
            lease_expires_at=now + lease_seconds,
            started_at=row["started_at"] or now,
        )
        conn.execute(
            sa.insert(executions).values(
                id=execution_id,
                task_id=row["id"],
                attempt=attempt,
                status=ExecutionStatus.RUNNING,
                worker_id=worker_id,
                started_at=now,
            )
        )
        return Claim(task=updated, execution_id=execution_id, attempt=attempt)

    def renew_leases(
        self, worker_id: str, task_ids: Iterable[str], lease_seconds: float
    ) -> dict[str, str]:
        """Extend the leases this worker still holds; return ``{task_id: status}`` for them.

        A task missing from the answer is no longer this worker's: the reaper gave it away.
        """
        ids = list(task_ids)
        if not ids:
            return {}
        now = self.clock()
        held = (
            tasks.c.id.in_(ids),
            tasks.c.lease_owner == worker_id,
            tasks.c.status.in_(HELD_STATES),
        )
        with self._write() as conn:
            conn.execute(sa.update(tasks).where(*held).values(lease_expires_at=now + lease_seconds))
            rows = conn.execute(sa.select(tasks.c.id, tasks.c.status).where(*held))
            return {task_id: status for task_id, status in rows}

    def finish_execution(
        self,
        claim: Claim,
        worker_id: str,
        **outcome: Any,
    ) -> Row:
        """Close an attempt and move its task on, if this worker still holds the lease.

        ``outcome`` holds execution_status, task_status and optionally error, error_type,
        result, available_at, metrics and logs (the attempt's last log lines, written in the
        same transaction). Attempts finishing at the same moment share one transaction
        (group commit), each inside a savepoint of its own, so one attempt's lost lease never
        undoes another's outcome; each call returns only once its own outcome is committed.
        """
        entry = _PendingFinish(claim, worker_id, outcome)
        with self._pending_lock:
            self._finishes.append(entry)
        with self._finish_turn:
            if not entry.done:
                with self._pending_lock:
                    batch, self._finishes = self._finishes, []
                self._commit_finishes(batch)
        if entry.error is not None:
            raise entry.error
        return entry.result

    def _commit_finishes(self, batch: list[_PendingFinish]) -> None:
        try:
            with self._write() as conn:
                for entry in batch:
                    try:
                        with conn.begin_nested():
                            entry.result = self._finish_one(
                                conn, entry.claim, entry.worker_id, **entry.outcome
                            )
                    except SpireError as exc:
                        entry.error = exc
        except Exception as exc:
            for entry in batch:
                entry.error = entry.error or exc
        finally:
            for entry in batch:
                entry.done = True

    def _finish_one(
        self,
        conn: sa.Connection,
        claim: Claim,
        worker_id: str,
        *,
        execution_status: ExecutionStatus,
        task_status: TaskStatus,
        error: str | None = None,
        error_type: str | None = None,
        result: Any = None,
        available_at: float | None = None,
        metrics: Row | None = None,
        logs: Sequence[Row] = (),
    ) -> Row:
        task_id = claim.task["id"]
        now = self.clock()

        row = self._load_for_update(conn, task_id)
        held = row["status"] in HELD_STATES and row["lease_owner"] == worker_id
        if not held or row["attempts"] != claim.attempt:
            raise LeaseLost(task_id, worker_id)
        event = outcome_event(row["status"], task_status)
        if event is Event.CONFIRM_CANCEL:
            execution_status = ExecutionStatus.CANCELLED
        elif event is Event.CONFIRM_PAUSE:
            execution_status = ExecutionStatus.PAUSED
        if logs:
            conn.execute(sa.insert(task_logs), list(logs))

        conn.execute(
            sa.update(executions)
            .where(executions.c.id == claim.execution_id)
            .values(
                status=execution_status,
                finished_at=now,
                error=error,
                error_type=error_type,
                metrics=metrics,
            )
        )
        values: Row = {
            "lease_owner": None,
            "lease_expires_at": None,
            "error": error,
            "stop_requested_at": None,
        }
        if execution_status in (ExecutionStatus.FAILED, ExecutionStatus.TIMED_OUT):
            values["failures"] = row["failures"] + 1
        if result is not None:
            values["result"] = result
        if event is Event.RETRY_LATER:
            values["available_at"] = available_at if available_at is not None else now
        elif event is not Event.CONFIRM_PAUSE:
            values["finished_at"] = now
        return self._apply(conn, row, event, **values)

    def reap_expired_leases(self) -> list[Reaped]:
        """Return to the queue every task whose worker stopped renewing its lease.

        The attempt is recorded as ``lost``. A task that has used all its attempts this way is
        dead-lettered rather than redelivered forever (a poison task that kills its worker).
        """
        now = self.clock()
        query = sa.select(tasks).where(
            tasks.c.status.in_(HELD_STATES),
            tasks.c.lease_expires_at < now,
        )
        if self.is_postgres:
            query = query.with_for_update(skip_locked=True)

        reaped: list[Reaped] = []
        with self._write() as conn:
            for row in [dict(r) for r in conn.execute(query).mappings()]:
                reaped.append(self._reap_row(conn, row, now))
        return reaped

    def _reap_row(self, conn: sa.Connection, row: Row, now: float) -> Reaped:
        worker_id = row["lease_owner"]
        reason = f"worker {worker_id!r} stopped renewing its lease (crashed or unreachable)"
        conn.execute(
            sa.update(executions)
            .where(
                executions.c.task_id == row["id"],
                executions.c.attempt == row["attempts"],
                executions.c.status == ExecutionStatus.RUNNING,
            )
            .values(status=ExecutionStatus.LOST, finished_at=now, error=reason, error_type="lost")
        )

        common = {
            "lease_owner": None,
            "lease_expires_at": None,
            "error": reason,
            "stop_requested_at": None,
            "failures": row["failures"] + 1,
        }
        if row["status"] == TaskStatus.CANCELLING:
            event, extra = Event.LEASE_EXPIRED, {"finished_at": now}
        elif row["status"] == TaskStatus.PAUSING:
            event, extra = Event.LEASE_EXPIRED, {}
        elif row["failures"] + 1 >= row["max_attempts"]:
            common["error"] = f"{reason}; {row['max_attempts']} attempts failed or were lost"
            event, extra = Event.DEAD_LETTER, {"finished_at": now}
        else:
            event, extra = Event.LEASE_EXPIRED, {"available_at": now, "enqueued_at": now}
        target = self._apply(conn, row, event, **common, **extra)["status"]
        logger.warning(
            "reclaimed task %s from %s (attempt %d) -> %s",
            row["id"],
            worker_id,
            row["attempts"],
            target,
            extra={"event": "lease_expired", "task_id": row["id"], "worker_id": worker_id},
        )
        return Reaped(row["id"], row["attempts"], worker_id, target)

    # -- progress and checkpoints ----------------------------------------------------------

    def save_progress(
        self,
        task_id: str,
        worker_id: str,
        *,
        done: int | None = None,
        total: int | None = None,
        checkpoint: Any = None,
        attempt: int | None = None,
    ) -> None:
        """Record progress (and a checkpoint) for a task this worker holds."""
        with self._write() as conn:
            self._save_progress(conn, task_id, worker_id, done, total, checkpoint, attempt)

    def _save_progress(
        self,
        conn: sa.Connection,
        task_id: str,
        worker_id: str,
        done: int | None,
        total: int | None,
        checkpoint: Any,
        attempt: int | None = None,
    ) -> None:
        values: Row = {"updated_at": self.clock()}
        if done is not None:
            values["progress_done"] = done
        if total is not None:
            values["progress_total"] = total
        if checkpoint is not None:
            values["checkpoint"] = checkpoint
        result = conn.execute(
            sa.update(tasks)
            .where(
                tasks.c.id == task_id,
                tasks.c.lease_owner == worker_id,
                tasks.c.status.in_(HELD_STATES),
                sa.true() if attempt is None else tasks.c.attempts == attempt,
            )
            .values(**values)
        )
        if result.rowcount != 1:
            raise LeaseLost(task_id, worker_id)

    # -- executions and logs ---------------------------------------------------------------

    def list_executions(self, task_id: str) -> list[Row]:
        query = (
            sa.select(executions)
            .where(executions.c.task_id == task_id)
            .order_by(executions.c.attempt)
        )
        with self._read() as conn:
            return [dict(r) for r in conn.execute(query).mappings()]

    def append_logs(self, rows: Sequence[Row]) -> None:
        if rows:
            with self._write() as conn:
                conn.execute(sa.insert(task_logs), list(rows))

    def list_logs(self, task_id: str, *, after_id: int = 0, limit: int = 1000) -> list[Row]:
        query = (
            sa.select(task_logs)
            .where(task_logs.c.task_id == task_id, task_logs.c.id > after_id)
            .order_by(task_logs.c.id)
            .limit(limit)
        )
        with self._read() as conn:
            return [dict(r) for r in conn.execute(query).mappings()]

    # -- audit -----------------------------------------------------------------------------

    def _insert_audit(self, conn: sa.Connection, event: Row) -> None:
        self._insert_audits(conn, [event])

    def _insert_audits(self, conn: sa.Connection, events: Sequence[Row]) -> None:
        """Append events to the hash chain, inside the caller's transaction.

        Each event's id is the previous id plus one and its hash covers the previous hash,
        so the chain can only grow by this path. PostgreSQL writers take a transaction-scoped
        advisory lock so two of them cannot append after the same head; SQLite's single
        writer gives that already.
        """
        if not events:
            return
        if self.is_postgres:
            conn.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": _AUDIT_LOCK_KEY})
        last = conn.execute(
            sa.select(audit_events.c.id, audit_events.c.hash)
            .order_by(audit_events.c.id.desc())
            .limit(1)
        ).first()
        head = GENESIS_HEAD if last is None else ChainHead(last.id, last.hash or GENESIS_HASH)
        rows = []
        for event in events:
            now = self.clock()
            target_type = event.get("target_type", "task")
            sealed = seal_event(
                head,
                time=datetime.fromtimestamp(now, UTC),
                actor=event["actor"],
                action=event["action"],
                target=_audit_target(target_type, event.get("target_id")),
                outcome=event["outcome"],
                key_id=event.get("key_id"),
                request_id=event.get("request_id"),
                source_address=event.get("source_address"),
                details=event.get("details") or {},
                chain_key=self.audit_key,
            )
            rows.append(
                {
                    "id": sealed.event.id,
                    "at": now,
                    "actor": sealed.event.actor,
                    "action": sealed.event.action,
                    "target_type": target_type,
                    "target_id": event.get("target_id"),
                    "outcome": sealed.event.outcome,
                    "details": dict(sealed.event.details),
                    "key_id": sealed.event.key_id,
                    "request_id": sealed.event.request_id,
                    "source_address": sealed.event.source_address,
                    "prev_hash": sealed.prev_hash,
                    "hash": sealed.hash,
                }
            )
            head = sealed.head
        conn.execute(sa.insert(audit_events), rows)

    def record_audit(self, event: Row) -> None:
        with self._write() as conn:
            self._insert_audit(conn, event)

    def list_audit(
        self,
        *,
        target_id: str | None = None,
        actor: str | None = None,
        action: str | None = None,
        outcome: str | None = None,
        after_id: int = 0,
        limit: int = 100,
    ) -> list[Row]:
        query = (
            sa.select(audit_events)
            .where(audit_events.c.id > after_id)
            .order_by(audit_events.c.id)
            .limit(limit)
        )
        for column, value in (
            (audit_events.c.target_id, target_id),
            (audit_events.c.actor, actor),
            (audit_events.c.action, action),
            (audit_events.c.outcome, outcome),
        ):
            if value is not None:
                query = query.where(column == value)
        with self._read() as conn:
            return [dict(r) for r in conn.execute(query).mappings()]

    def verify_audit(self) -> VerifyResult:
        """Check the whole audit chain; the result names the first bad event."""
        with self._read() as conn:
            rows = [
                dict(r)
                for r in conn.execute(
                    sa.select(audit_events).order_by(audit_events.c.id)
                ).mappings()
            ]
        chained: list[ChainedEvent] = []
        for index, row in enumerate(rows):
            try:
                chained.append(_chained_event(row))
            except (ValueError, TypeError) as exc:
                # A row too damaged to rebuild (an emptied actor, a bad hash) is the
                # first bad event if nothing before it failed.
                earlier = verify_chain(chained, key=self.audit_key)
                if not earlier.ok:
                    return earlier
                return VerifyResult(
                    ok=False,
                    checked=index,
                    head=earlier.head,
                    first_bad_id=row["id"],
                    first_bad_index=index,
                    reason=f"event {row['id']} cannot be read back: {exc}",
                )
        return verify_chain(chained, key=self.audit_key)

    # -- users and API keys ----------------------------------------------------------------

    def insert_user(self, row: Row) -> None:
        with self._write() as conn:
            conn.execute(sa.insert(users).values(created_at=self.clock(), **row))

    def get_user(self, user_id: str) -> Row | None:
        with self._read() as conn:
            found = conn.execute(sa.select(users).where(users.c.id == user_id)).mappings().first()
        return dict(found) if found else None

    def count_users(self) -> int:
        with self._read() as conn:
            return int(conn.execute(sa.select(sa.func.count()).select_from(users)).scalar_one())

    def save_api_key(self, row: Row, *, audit: Row | None = None) -> None:
        """Insert a key record, or update it (revocation, rotation) if its id exists."""
        with self._write() as conn:
            updated = conn.execute(
                sa.update(api_keys).where(api_keys.c.key_id == row["key_id"]).values(**row)
            )
            if updated.rowcount == 0:
                conn.execute(sa.insert(api_keys).values(**row))
            if audit:
                self._insert_audit(conn, audit)

    def get_api_key(self, key_id: str) -> Row | None:
        with self._read() as conn:
            found = (
                conn.execute(sa.select(api_keys).where(api_keys.c.key_id == key_id))
                .mappings()
                .first()
            )
        return dict(found) if found else None

    # -- indicators ------------------------------------------------------------------------

    def upsert_indicators(
        self,
        records: Sequence[IndicatorRecord],
        source: str,
        *,
        progress: Callable[[UpsertStats], ProgressUpdate] | None = None,
    ) -> UpsertStats:
        """Merge a batch into the indicator store: one row per (type, value).

        Repeats within the batch are folded first; then each indicator's count, first and
        last seen, confidence and per-source sightings are merged with what is stored.
        ``progress`` builds, from this batch's stats, a checkpoint that is written in the
        same transaction, so a task resuming from it never merges the same records twice.
        """
        merged = _fold_batch(records)
        stats = UpsertStats()
        now = self.clock()

        with self._write() as conn:
            inserted: set[tuple[str, str]] = set()
            if merged:
                ids, inserted = self._upsert_indicator_rows(conn, merged, now)
                self._upsert_indicator_sources(conn, ids, merged, source, now)
            for key in merged:
                if key in inserted:
                    stats.new += 1
                    stats.new_by_type[key[0]] = stats.new_by_type.get(key[0], 0) + 1
                else:
                    stats.existing += 1
            if progress is not None:
                self._save_progress(conn, *progress(stats))
        return stats

    def _new_keys(self, conn: sa.Connection, keys: list[tuple[str, str]]) -> set[tuple[str, str]]:
        """The keys not stored yet (SQLite, before its upsert)."""
        query = sa.select(indicators.c.type, indicators.c.value).where(
            sa.tuple_(indicators.c.type, indicators.c.value).in_(keys)
        )
        existing = {(t, v) for t, v in conn.execute(query)}
        return {key for key in keys if key not in existing}

    def _insert_for_dialect(self, table: sa.Table) -> Any:
        return pg_dialect.insert(table) if self.is_postgres else sqlite_dialect.insert(table)

    def _greatest(self, a: Any, b: Any) -> Any:
        return sa.func.greatest(a, b) if self.is_postgres else sa.func.max(a, b)

    def _least(self, a: Any, b: Any) -> Any:
        return sa.func.least(a, b) if self.is_postgres else sa.func.min(a, b)

    def _upsert_indicator_rows(
        self, conn: sa.Connection, merged: dict[tuple[str, str], _Folded], now: float
    ) -> tuple[dict[tuple[str, str], int], set[tuple[str, str]]]:
        """Upsert the rows; return their ids and the keys that were new.

        PostgreSQL tells new from updated rows in the RETURNING clause (a row inserted by
        this statement has xmax 0); asking first with a (type, value) IN list would scan
        every row of the type there. SQLite asks first: its row-value IN uses the index.
        """
        new_keys = None if self.is_postgres else self._new_keys(conn, list(merged))
        params = [
            {
                "type": t,
                "value": v,
                "first_seen": now,
                "last_seen": now,
                "count": f.count,
                "confidence": f.confidence,
                "tags": sorted(f.tags),
                "tlp": f.tlp,
                "classification": f.classification,
            }
            for (t, v), f in merged.items()
        ]
        # executemany form: the statement is compiled once and cached; SQLAlchemy batches
        # the rows into multi-row INSERTs ("insertmanyvalues") with RETURNING.
        stmt = self._insert_for_dialect(indicators)
        excluded = stmt.excluded
        stmt = stmt.on_conflict_do_update(
            index_elements=[indicators.c.type, indicators.c.value],
            set_={
                "count": indicators.c.count + excluded.count,
                "last_seen": self._greatest(indicators.c.last_seen, excluded.last_seen),
                "first_seen": self._least(indicators.c.first_seen, excluded.first_seen),
                "confidence": self._greatest(
                    sa.func.coalesce(indicators.c.confidence, excluded.confidence),
                    sa.func.coalesce(excluded.confidence, indicators.c.confidence),
                ),
                "tags": excluded.tags,
                # Merging never lowers a marking: the strictest TLP and the highest
                # classification of any report stick.
                "tlp": self._greatest(indicators.c.tlp, excluded.tlp),
                "classification": self._greatest(
                    indicators.c.classification, excluded.classification
                ),
            },
        ).returning(
            indicators.c.id,
            indicators.c.type,
            indicators.c.value,
            sa.literal_column("xmax = 0" if self.is_postgres else "1").label("inserted"),
        )
        ids: dict[tuple[str, str], int] = {}
        inserted: set[tuple[str, str]] = set()
        for row in conn.execute(stmt, params):
            ids[(row.type, row.value)] = row.id
            if row.inserted:
                inserted.add((row.type, row.value))
        return ids, inserted if new_keys is None else new_keys

    def _upsert_indicator_sources(
        self,
        conn: sa.Connection,
        ids: dict[tuple[str, str], int],
        merged: dict[tuple[str, str], _Folded],
        source: str,
        now: float,
    ) -> None:
        params = [
            {
                "indicator_id": ids[key],
                "source": source,
                "first_seen": now,
                "last_seen": now,
                "count": folded.count,
            }
            for key, folded in merged.items()
        ]
        stmt = self._insert_for_dialect(indicator_sources)
        excluded = stmt.excluded
        conn.execute(
            stmt.on_conflict_do_update(
                index_elements=[indicator_sources.c.indicator_id, indicator_sources.c.source],
                set_={
                    "count": indicator_sources.c.count + excluded.count,
                    "last_seen": self._greatest(indicator_sources.c.last_seen, excluded.last_seen),
                },
            ),
            params,
        )

    def list_indicators(
        self,
        *,
        type: str | None = None,
        value: str | None = None,
        source: str | None = None,
        seen_after: float | None = None,
        tag: str | None = None,
        max_classification: int | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> list[Row]:
        """Indicators with their sources, newest sighting first.

        ``max_classification`` leaves out indicators above a reader's clearance.
        """
        query = sa.select(indicators)
        if max_classification is not None:
            query = query.where(indicators.c.classification <= max_classification)
        if tag:
            query = query.where(self._json_array_contains(indicators.c.tags, tag))
        if type:
            query = query.where(indicators.c.type == type)
        if value:
            query = query.where(indicators.c.value == value)
        if seen_after is not None:
            query = query.where(indicators.c.last_seen >= seen_after)
        if source:
            query = query.where(
                indicators.c.id.in_(
                    sa.select(indicator_sources.c.indicator_id).where(
                        indicator_sources.c.source == source
                    )
                )
            )
        query = query.order_by(indicators.c.last_seen.desc(), indicators.c.id).limit(limit)
        query = query.offset(offset)

        with self._read() as conn:
            rows = [dict(r) for r in conn.execute(query).mappings()]
            sources = self._sources_of(conn, [r["id"] for r in rows])
        for row in rows:
            row["sources"] = sources.get(row["id"], [])
        return rows

    def _json_array_contains(self, column: Any, item: str) -> Any:
        if self.is_postgres:
            return sa.type_coerce(column, JSONB).contains([item])
        each = sa.func.json_each(column).table_valued("value")
        return sa.exists(sa.select(1).select_from(each).where(each.c.value == item))

    def _sources_of(self, conn: sa.Connection, ids: list[int]) -> dict[int, list[str]]:
        if not ids:
            return {}
        query = (
            sa.select(indicator_sources.c.indicator_id, indicator_sources.c.source)
            .where(indicator_sources.c.indicator_id.in_(ids))
            .order_by(indicator_sources.c.first_seen)
        )
        out: dict[int, list[str]] = {}
        for indicator_id, src in conn.execute(query):
            out.setdefault(indicator_id, []).append(src)
        return out

    def count_indicators_by_type(self, *, source: str | None = None) -> dict[str, int]:
        query = sa.select(indicators.c.type, sa.func.count()).group_by(indicators.c.type)
        if source:
            query = query.join(
                indicator_sources, indicator_sources.c.indicator_id == indicators.c.id
            ).where(indicator_sources.c.source == source)
        with self._read() as conn:
            return {t: n for t, n in conn.execute(query)}


_TERMINAL = frozenset(
    {
        TaskStatus.COMPLETED,
        TaskStatus.FAILED,
        TaskStatus.CANCELLED,
        TaskStatus.TIMED_OUT,
        TaskStatus.SKIPPED,
        TaskStatus.DEAD_LETTERED,
    }
)
_NOT_HELD_STATES = frozenset(str(s) for s in TaskStatus if s not in HELD_STATES)


def _parse_cursor(cursor: str) -> tuple[str, int]:
    snapshot, _, offset = cursor.rpartition(".")
    if not snapshot or not offset.isdigit():
        raise InvalidQuery(
            f"cursor {cursor!r} is not one this server issued", field="cursor", value=cursor
        )
    return snapshot, int(offset)


class TaskScope(NamedTuple):
    """Which tasks a caller may see: at most ``max_level``; with ``department`` set, only that
    department's tasks, unscoped ones, and the caller's own (``owner``)."""

    max_level: int
    department: str | None
    owner: str | None


def _scope_clauses(scope: TaskScope | None) -> list[Any]:
    if scope is None:
        return []
    clauses: list[Any] = [tasks.c.classification <= scope.max_level]
    if scope.department is not None:
        clauses.append(
            sa.or_(
                tasks.c.department.is_(None),
                tasks.c.department == scope.department,
                tasks.c.owner == scope.owner,
            )
        )
    return clauses


_AUDIT_LOCK_KEY = 0x5350_4952_4541  # "SPIREA": the audit chain's advisory lock


def _audit_target(target_type: str, target_id: str | None) -> str | None:
    return None if target_id is None else f"{target_type}/{target_id}"


def _chained_event(row: Row) -> ChainedEvent:
    event = AuditEvent(
        id=row["id"],
        time=datetime.fromtimestamp(row["at"], UTC),
        actor=row["actor"],
        action=row["action"],
        target=_audit_target(row["target_type"], row["target_id"]),
        outcome=row["outcome"],
        key_id=row["key_id"],
        request_id=row["request_id"],
        source_address=row["source_address"],
        details=row["details"] or {},
    )
    return ChainedEvent(event, row["prev_hash"] or "", row["hash"] or "")


@dataclass
class _PendingFinish:
    claim: Claim
    worker_id: str
    outcome: Row
    done: bool = False
    result: Row = field(default_factory=dict)
    error: BaseException | None = None


@dataclass
class _PendingInsert:
    row: Row
    audit: Row | None
    done: bool = False
    error: BaseException | None = None


@dataclass
class _Folded:
    count: int = 0
    confidence: int | None = None
    tlp: int = 0
    classification: int = 0
    tags: set[str] = field(default_factory=set)


def _fold_batch(records: Sequence[IndicatorRecord]) -> dict[tuple[str, str], _Folded]:
    merged: dict[tuple[str, str], _Folded] = {}
    for rec in records:
        folded = merged.setdefault((rec.type, rec.value), _Folded())
        folded.count += 1
        folded.tags.update(rec.tags)
        if rec.confidence is not None:
            folded.confidence = max(folded.confidence or rec.confidence, rec.confidence)
        folded.tlp = max(folded.tlp, rec.tlp)
        folded.classification = max(folded.classification, rec.classification)
    return merged
