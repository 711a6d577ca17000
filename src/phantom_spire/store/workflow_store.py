"""Queries for workflows, task dependencies and schedules, over the same :class:`Store`.

Readiness is incremental. :meth:`WorkflowStore.on_transition` is a transition listener of
the store: it runs inside the transaction of every state change, and when a workflow task
finishes it updates only the counters of that task's direct dependants (one indexed lookup
on ``task_dependencies.depends_on_id``), deciding those whose last dependency just finished.
State changes it causes in turn (a skip travelling down a chain) are queued and handled in
the same transaction, iteratively, so a 10,000-step chain cannot overflow the stack.

Every state change still goes through ``Store._apply`` and so through the transition table.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from phantom_spire.engine import conditions
from phantom_spire.engine.lifecycle import TERMINAL_STATES, Event, TaskStatus
from phantom_spire.engine.workflows import WorkflowDefinition, decide
from phantom_spire.errors import IllegalTransition, SpireError, TaskNotFound
from phantom_spire.store.schema import (
    schedule_fires,
    schedules,
    task_dependencies,
    tasks,
    workflow_tasks,
    workflows,
)
from phantom_spire.store.store import Store

__all__ = ["ListenerStats", "WorkflowNotFound", "WorkflowStore"]

logger = logging.getLogger(__name__)

Row = dict[str, Any]

FAILED_STATES = frozenset(
    {TaskStatus.FAILED, TaskStatus.TIMED_OUT, TaskStatus.DEAD_LETTERED, TaskStatus.CANCELLED}
)
NOT_STARTED = (TaskStatus.PENDING, TaskStatus.BLOCKED, TaskStatus.QUEUED, TaskStatus.SCHEDULED)


class WorkflowNotFound(SpireError):
    """No workflow has the given id."""

    def __init__(self, workflow_id: str) -> None:
        super().__init__(f"no workflow with id {workflow_id!r}")
        self.workflow_id = workflow_id


@dataclass
class ListenerStats:
    """Time spent resolving readiness, for the benchmark."""

    finished_tasks: int = 0
    seconds: float = 0.0


class WorkflowStore:
    """Workflow, dependency and schedule persistence; readiness resolution."""

    def __init__(self, store: Store, *, on_queued: Callable[[], None] | None = None) -> None:
        self.store = store
        self.on_queued = on_queued or (lambda: None)
        self.stats = ListenerStats()
        self._local = threading.local()
        self._definitions: OrderedDict[str, WorkflowDefinition] = OrderedDict()
        self._definitions_lock = threading.Lock()

    def install(self) -> None:
        """Register the readiness listener on the store (once)."""
        if self.on_transition not in self.store.transition_listeners:
            self.store.transition_listeners.append(self.on_transition)

    # -- workflows -------------------------------------------------------------------------

    def insert_workflow(
        self,
        workflow: Row,
        task_rows: Sequence[Row],
        links: Sequence[Row],
        dependencies: Sequence[Row],
        *,
        audit: Row | None = None,
    ) -> None:
        """Insert a workflow with all its tasks, links and dependency edges, atomically."""
        with self.store._write() as conn:
            conn.execute(sa.insert(workflows).values(**workflow))
            _insert_many(conn, tasks, task_rows)
            _insert_many(conn, workflow_tasks, links)
            _insert_many(conn, task_dependencies, dependencies)
            if audit:
                self.store._insert_audit(conn, audit)
        if any(r["status"] == TaskStatus.QUEUED for r in task_rows):
            self.on_queued()

    def resolve_tasks(self, workflow_id: str, task_ids: Sequence[str]) -> None:
        """Decide tasks without dependencies that carry a condition, then admit what is ready."""
        with self.store._write() as conn:
            definition = self._definition(conn, workflow_id)
            for task_id in task_ids:
                link = self._link(conn, task_id)
                if link is not None:
                    self._resolve(conn, link, definition)
            self._admit(conn, workflow_id)
            self._maybe_finish(conn, workflow_id, definition)

    def get_workflow(self, workflow_id: str) -> Row:
        with self.store._read() as conn:
            row = conn.execute(sa.select(workflows).where(workflows.c.id == workflow_id))
            found = row.mappings().first()
        if found is None:
            raise WorkflowNotFound(workflow_id)
        return dict(found)

    def list_workflows(self, *, limit: int = 100) -> list[Row]:
        query = sa.select(workflows).order_by(workflows.c.id.desc()).limit(limit)
        with self.store._read() as conn:
            return [dict(r) for r in conn.execute(query).mappings()]

    def list_workflow_tasks(self, workflow_id: str) -> list[Row]:
        """Every task of a workflow with its step, in creation order."""
        query = (
            sa.select(
                workflow_tasks,
                tasks.c.status,
                tasks.c.name,
                tasks.c.result,
                tasks.c.error,
                tasks.c.progress_done,
                tasks.c.progress_total,
            )
            .join(tasks, tasks.c.id == workflow_tasks.c.task_id)
            .where(workflow_tasks.c.workflow_id == workflow_id)
            .order_by(workflow_tasks.c.seq)
        )
        with self.store._read() as conn:
            return [dict(r) for r in conn.execute(query).mappings()]

    def get_link(self, task_id: str) -> Row | None:
        query = sa.select(workflow_tasks).where(workflow_tasks.c.task_id == task_id)
        with self.store._read() as conn:
            row = conn.execute(query).mappings().first()
        return dict(row) if row else None

    def decide_approval(
        self, task_id: str, approve: bool, *, actor: str, note: str = "", audit: Row | None = None
    ) -> Row:
        """Approve (queue) or reject (skip) a waiting approval step."""
        with self.store._write() as conn:
            link = self._link(conn, task_id)
            if link is None or link["kind"] != "approval":
                raise TaskNotFound(task_id)
            row = self.store._load_for_update(conn, task_id)
            if row["status"] != TaskStatus.BLOCKED or link["approval_due_at"] is None:
                raise IllegalTransition(task_id, row["status"], "decide", frozenset({"blocked"}))
            updated = self._apply_decision(conn, row, link, approve, actor=actor, note=note)
            if audit:
                self.store._insert_audit(conn, audit)
        return updated

    def expire_approvals(self, now: float) -> list[str]:
        """Apply the default outcome to every approval whose deadline passed."""
        query = sa.select(workflow_tasks).where(
            workflow_tasks.c.kind == "approval",
            workflow_tasks.c.approval_due_at <= now,
            workflow_tasks.c.decision.is_(None),
        )
        decided: list[str] = []
        with self.store._write() as conn:
            for link in [dict(r) for r in conn.execute(query).mappings()]:
                row = self.store._load_for_update(conn, link["task_id"])
                if row["status"] != TaskStatus.BLOCKED:
                    continue
                step = self._definition(conn, link["workflow_id"]).step(link["step"])
                approve = step.approval is not None and step.approval.default == "approve"
                self._apply_decision(conn, row, link, approve, actor="system", note="timeout")
                decided.append(link["task_id"])
        return decided

    def _apply_decision(
        self, conn: sa.Connection, row: Row, link: Row, approve: bool, *, actor: str, note: str
    ) -> Row:
        decision = {"approved": approve, "by": actor, "note": note, "at": self.store.clock()}
        conn.execute(
            sa.update(workflow_tasks)
            .where(workflow_tasks.c.task_id == row["id"])
            .values(decision=decision, approval_due_at=None)
        )
        if not approve:
            return self.store._apply(conn, row, Event.SKIP, finished_at=self.store.clock())
        params = {**row["parameters"], "decision": decision}
        conn.execute(
            sa.update(workflow_tasks)
            .where(workflow_tasks.c.task_id == row["id"])
            .values(ready=True)
        )
        conn.execute(sa.update(tasks).where(tasks.c.id == row["id"]).values(parameters=params))
        self._admit(conn, link["workflow_id"])
        return self.store._load_for_update(conn, row["id"])

    # -- readiness (transition listener) ---------------------------------------------------

    def on_transition(self, conn: sa.Connection, row: Row, event: Event) -> None:
        """React to a state change of a workflow task, inside its transaction."""
        if row["status"] not in TERMINAL_STATES and event is not Event.RETRY:
            return
        queue: deque[tuple[Row, Event]] | None = getattr(self._local, "queue", None)
        if queue is not None:
            # Caused by our own handling below: handle it after, not inside, the current one.
            queue.append((row, event))
            return
        queue = self._local.queue = deque([(row, event)])
        started = time.perf_counter()
        try:
            while queue:
                self._handle(conn, *queue.popleft())
        finally:
            self._local.queue = None
            self.stats.seconds += time.perf_counter() - started

    def _handle(self, conn: sa.Connection, row: Row, event: Event) -> None:
        link = self._link(conn, row["id"])
        if link is None or link["kind"] == "compensation":
            return
        workflow_id = link["workflow_id"]
        if event is Event.RETRY:
            self._reopen(conn, link)
            return
        self.stats.finished_tasks += 1
        failed = row["status"] in FAILED_STATES
        conn.execute(
            sa.update(workflows)
            .where(workflows.c.id == workflow_id)
            .values(
                done_tasks=workflows.c.done_tasks + 1,
                active_tasks=workflows.c.active_tasks - (1 if link["admitted"] else 0),
                failed_tasks=workflows.c.failed_tasks + (1 if failed else 0),
                updated_at=self.store.clock(),
            )
        )
        definition = self._definition(conn, workflow_id)
        if failed and definition.failure_policy != "continue":
            self._halt(conn, workflow_id, definition, row)
        self._release_dependants(conn, row, link, definition)
        self._admit(conn, workflow_id)
        self._maybe_finish(conn, workflow_id, definition)

    def _release_dependants(
        self, conn: sa.Connection, row: Row, link: Row, definition: WorkflowDefinition
    ) -> None:
        # Two indexed lookups rather than a join: SQLite's planner would otherwise scan
        # workflow_tasks and make each finished task cost the size of the graph.
        ids = list(
            conn.execute(
                sa.select(task_dependencies.c.task_id).where(
                    task_dependencies.c.depends_on_id == row["id"]
                )
            ).scalars()
        )
        if not ids:
            return
        query = sa.select(workflow_tasks).where(workflow_tasks.c.task_id.in_(ids))
        dependants = [dict(r) for r in conn.execute(query).mappings()]
        chosen = _branch_choice(row) if link["kind"] == "branch" else None
        for dep in dependants:
            outcome = _edge_outcome(row["status"], chosen, dep["step"])
            dep["deps_done"] += 1
            dep[f"deps_{outcome}"] += 1
            conn.execute(
                sa.update(workflow_tasks)
                .where(workflow_tasks.c.task_id == dep["task_id"])
                .values(
                    deps_done=workflow_tasks.c.deps_done + 1,
                    **{f"deps_{outcome}": getattr(workflow_tasks.c, f"deps_{outcome}") + 1},
                )
            )
            if dep["deps_done"] == dep["deps_total"]:
                self._resolve(conn, dep, definition)

    def _resolve(self, conn: sa.Connection, link: Row, definition: WorkflowDefinition) -> None:
        """Decide a task whose dependencies have all finished."""
        row = self.store._load_for_update(conn, link["task_id"])
        if row["status"] != TaskStatus.BLOCKED:
            return  # already cancelled by fail-fast, or decided
        step = definition.step(link["step"])
        verdict = decide(
            step.trigger_rule,
            total=link["deps_total"],
            ok=link["deps_ok"],
            skipped=link["deps_skipped"],
            failed=link["deps_failed"],
        )
        now = self.store.clock()
        if verdict == "upstream_failed":
            error = f"an upstream step of {step.id!r} failed"
            self.store._apply(conn, row, Event.CANCEL, finished_at=now, error=error)
            return
        if verdict == "skip":
            self.store._apply(conn, row, Event.SKIP, finished_at=now)
            return
        if step.when or step.gather:
            upstream = self._upstream_results(conn, row["id"])
            if step.when and not self._condition_holds(conn, row, step.when, upstream, definition):
                return
            if step.gather:
                row["parameters"] = {**row["parameters"], "upstream": upstream}
                conn.execute(
                    sa.update(tasks)
                    .where(tasks.c.id == row["id"])
                    .values(parameters=row["parameters"])
                )
        if step.kind == "approval":
            assert step.approval is not None
            conn.execute(
                sa.update(workflow_tasks)
                .where(workflow_tasks.c.task_id == row["id"])
                .values(approval_due_at=now + step.approval.timeout_seconds)
            )
            return
        conn.execute(
            sa.update(workflow_tasks)
            .where(workflow_tasks.c.task_id == row["id"])
            .values(ready=True)
        )

    def _condition_holds(
        self,
        conn: sa.Connection,
        row: Row,
        expression: str,
        upstream: dict[str, Any],
        definition: WorkflowDefinition,
    ) -> bool:
        params = self._workflow_params(conn, row["id"])
        steps = {
            name: {"results": results, "result": results[0] if len(results) == 1 else results}
            for name, results in upstream.items()
        }
        now = self.store.clock()
        try:
            holds = conditions.evaluate_condition(expression, {"params": params, "steps": steps})
        except conditions.ConditionError as exc:
            # A condition that cannot be evaluated must not silently skip or run the step.
            self.store._apply(conn, row, Event.CANCEL, finished_at=now, error=str(exc))
            return False
        if not holds:
            self.store._apply(conn, row, Event.SKIP, finished_at=now)
        return holds

    def _upstream_results(self, conn: sa.Connection, task_id: str) -> dict[str, list[Any]]:
        query = (
            sa.select(workflow_tasks.c.step, tasks.c.result)
            .select_from(task_dependencies)
            .join(tasks, tasks.c.id == task_dependencies.c.depends_on_id)
            .join(workflow_tasks, workflow_tasks.c.task_id == task_dependencies.c.depends_on_id)
            .where(task_dependencies.c.task_id == task_id, tasks.c.status == TaskStatus.COMPLETED)
            .order_by(workflow_tasks.c.seq)
        )
        out: dict[str, list[Any]] = {}
        for step, result in conn.execute(query):
            out.setdefault(step, []).append(result)
        return out

    def _workflow_params(self, conn: sa.Connection, task_id: str) -> Any:
        query = (
            sa.select(workflows.c.parameters)
            .join(workflow_tasks, workflow_tasks.c.workflow_id == workflows.c.id)
            .where(workflow_tasks.c.task_id == task_id)
        )
        return conn.execute(query).scalar_one()

    def _admit(self, conn: sa.Connection, workflow_id: str) -> None:
        """Queue ready tasks while the workflow is under its parallelism limit."""
        query = sa.select(workflows.c.active_tasks, workflows.c.max_parallel).where(
            workflows.c.id == workflow_id
        )
        if self.store.is_postgres:
            query = query.with_for_update()
        active, limit = conn.execute(query).one()
        free = limit - active
        if free <= 0:
            return
        ready = conn.execute(
            sa.select(workflow_tasks.c.task_id)
            .where(workflow_tasks.c.workflow_id == workflow_id, workflow_tasks.c.ready == sa.true())
            .order_by(workflow_tasks.c.seq)
            .limit(free)
        ).scalars()
        now = self.store.clock()
        admitted = 0
        for task_id in list(ready):
            row = self.store._load_for_update(conn, task_id)
            conn.execute(
                sa.update(workflow_tasks)
                .where(workflow_tasks.c.task_id == task_id)
                .values(ready=False, admitted=True)
            )
            if row["status"] != TaskStatus.BLOCKED:
                continue
            self.store._apply(
                conn,
                row,
                Event.UNBLOCK,
                available_at=now,
                enqueued_at=now,
                first_enqueued_at=row["first_enqueued_at"] or now,
            )
            admitted += 1
        if admitted:
            conn.execute(
                sa.update(workflows)
                .where(workflows.c.id == workflow_id)
                .values(active_tasks=workflows.c.active_tasks + admitted)
            )
            self.on_queued()

    def _halt(
        self, conn: sa.Connection, workflow_id: str, definition: WorkflowDefinition, failed: Row
    ) -> None:
        """Fail fast: cancel what has not started; with ``compensate``, queue rollbacks."""
        query = (
            sa.select(tasks.c.id)
            .join(workflow_tasks, workflow_tasks.c.task_id == tasks.c.id)
            .where(
                workflow_tasks.c.workflow_id == workflow_id,
                workflow_tasks.c.kind != "compensation",
                tasks.c.status.in_(NOT_STARTED),
            )
        )
        now = self.store.clock()
        reason = f"workflow stopped: task {failed['id']} failed ({definition.failure_policy})"
        for task_id in list(conn.execute(query).scalars()):
            row = self.store._load_for_update(conn, task_id)
            self.store._apply(conn, row, Event.CANCEL, finished_at=now, error=reason)
        if definition.failure_policy == "compensate":
            self._queue_compensations(conn, workflow_id)

    def _queue_compensations(self, conn: sa.Connection, workflow_id: str) -> None:
        done_steps = set(
            conn.execute(
                sa.select(workflow_tasks.c.step)
                .join(tasks, tasks.c.id == workflow_tasks.c.task_id)
                .where(
                    workflow_tasks.c.workflow_id == workflow_id,
                    workflow_tasks.c.kind != "compensation",
                    tasks.c.status == TaskStatus.COMPLETED,
                )
            ).scalars()
        )
        pending = conn.execute(
            sa.select(workflow_tasks.c.task_id, workflow_tasks.c.step).where(
                workflow_tasks.c.workflow_id == workflow_id,
                workflow_tasks.c.kind == "compensation",
            )
        ).all()
        now = self.store.clock()
        for task_id, step in pending:
            row = self.store._load_for_update(conn, task_id)
            if row["status"] != TaskStatus.PENDING:
                continue
            if step in done_steps:
                self.store._apply(
                    conn, row, Event.EXECUTE, available_at=now, enqueued_at=now,
                    first_enqueued_at=now,
                )  # fmt: skip
                self.on_queued()
            else:
                self.store._apply(conn, row, Event.SKIP, finished_at=now)

    def _maybe_finish(
        self, conn: sa.Connection, workflow_id: str, definition: WorkflowDefinition
    ) -> None:
        wf = conn.execute(
            sa.select(workflows.c.done_tasks, workflows.c.total_tasks, workflows.c.failed_tasks,
                      workflows.c.status)
            .where(workflows.c.id == workflow_id)
        ).one()  # fmt: skip
        if wf.done_tasks < wf.total_tasks or wf.status != "running":
            return
        status = "failed" if wf.failed_tasks else "completed"
        now = self.store.clock()
        conn.execute(
            sa.update(workflows)
            .where(workflows.c.id == workflow_id)
            .values(status=status, finished_at=now, updated_at=now)
        )
        if status == "completed" or definition.failure_policy != "compensate":
            self._skip_compensations(conn, workflow_id)
        logger.info(
            "workflow %s %s",
            workflow_id,
            status,
            extra={"event": f"workflow_{status}", "workflow_id": workflow_id},
        )

    def _skip_compensations(self, conn: sa.Connection, workflow_id: str) -> None:
        query = (
            sa.select(tasks.c.id)
            .join(workflow_tasks, workflow_tasks.c.task_id == tasks.c.id)
            .where(
                workflow_tasks.c.workflow_id == workflow_id,
                workflow_tasks.c.kind == "compensation",
                tasks.c.status == TaskStatus.PENDING,
            )
        )
        now = self.store.clock()
        for task_id in list(conn.execute(query).scalars()):
            row = self.store._load_for_update(conn, task_id)
            self.store._apply(conn, row, Event.SKIP, finished_at=now)

    def _reopen(self, conn: sa.Connection, link: Row) -> None:
        # A manual retry of a failed step: it counts as unfinished (and running) again.
        conn.execute(
            sa.update(workflows)
            .where(workflows.c.id == link["workflow_id"])
            .values(
                done_tasks=workflows.c.done_tasks - 1,
                failed_tasks=workflows.c.failed_tasks - 1,
                active_tasks=workflows.c.active_tasks + (1 if link["admitted"] else 0),
                status="running",
                finished_at=None,
            )
        )

    def _link(self, conn: sa.Connection, task_id: str) -> Row | None:
        query = sa.select(workflow_tasks).where(workflow_tasks.c.task_id == task_id)
        row = conn.execute(query).mappings().first()
        return dict(row) if row else None

    def _definition(self, conn: sa.Connection, workflow_id: str) -> WorkflowDefinition:
        with self._definitions_lock:
            cached = self._definitions.get(workflow_id)
            if cached is not None:
                self._definitions.move_to_end(workflow_id)
                return cached
        data = conn.execute(
            sa.select(workflows.c.definition).where(workflows.c.id == workflow_id)
        ).scalar_one()
        # Stored definitions were validated at creation; no need to re-check the DAG.
        definition = WorkflowDefinition.model_validate(data)
        with self._definitions_lock:
            self._definitions[workflow_id] = definition
            while len(self._definitions) > 256:
                self._definitions.popitem(last=False)
        return definition

    # -- schedules -------------------------------------------------------------------------

    def insert_schedule(self, row: Row, *, audit: Row | None = None) -> Row:
        """Store a schedule and move its task to ``scheduled``, atomically."""
        with self.store._write() as conn:
            task = self.store._load_for_update(conn, row["task_id"])
            self.store._apply(conn, task, Event.SCHEDULE)
            conn.execute(sa.insert(schedules).values(**row))
            if audit:
                self.store._insert_audit(conn, audit)
        return row

    def delete_schedule(self, task_id: str, *, audit: Row | None = None) -> Row:
        """Remove a task's schedule; a task still ``scheduled`` goes back to ``pending``."""
        with self.store._write() as conn:
            schedule = self._schedule_for_task(conn, task_id)
            task = self.store._load_for_update(conn, task_id)
            if task["status"] == TaskStatus.SCHEDULED:
                self.store._apply(conn, task, Event.UNSCHEDULE)
            conn.execute(
                sa.update(schedules)
                .where(schedules.c.id == schedule["id"])
                .values(status="deleted", next_fire_at=None, updated_at=self.store.clock())
            )
            if audit:
                self.store._insert_audit(conn, audit)
        return {**schedule, "status": "deleted"}

    def get_schedule_for_task(self, task_id: str) -> Row:
        with self.store._read() as conn:
            return self._schedule_for_task(conn, task_id)

    def _schedule_for_task(self, conn: sa.Connection, task_id: str) -> Row:
        query = sa.select(schedules).where(
            schedules.c.task_id == task_id, schedules.c.status != "deleted"
        )
        row = conn.execute(query).mappings().first()
        if row is None:
            raise TaskNotFound(task_id)
        return dict(row)

    def list_schedules(self, *, statuses: Sequence[str] = ("active",)) -> list[Row]:
        query = sa.select(schedules).where(schedules.c.status.in_(list(statuses)))
        with self.store._read() as conn:
            rows = conn.execute(query.order_by(schedules.c.next_fire_at)).mappings()
            return [dict(r) for r in rows]

    def due_schedule_ids(self, now: float) -> list[str]:
        query = sa.select(schedules.c.id).where(
            schedules.c.status == "active", schedules.c.next_fire_at <= now
        )
        with self.store._read() as conn:
            return list(conn.execute(query.order_by(schedules.c.next_fire_at)).scalars())

    def event_schedules(self) -> list[Row]:
        query = sa.select(schedules).where(
            schedules.c.status == "active", schedules.c.kind == "event_driven"
        )
        with self.store._read() as conn:
            return [dict(r) for r in conn.execute(query).mappings()]

    @contextmanager
    def locked_schedule(self, schedule_id: str) -> Iterator[tuple[sa.Connection, Row]]:
        """A write transaction holding the schedule's row (FOR UPDATE on PostgreSQL)."""
        query = sa.select(schedules).where(schedules.c.id == schedule_id)
        if self.store.is_postgres:
            query = query.with_for_update()
        with self.store._write() as conn:
            row = conn.execute(query).mappings().first()
            if row is None:
                raise SpireError(f"schedule {schedule_id!r} vanished")
            yield conn, dict(row)

    def claim_fire(
        self, conn: sa.Connection, schedule_id: str, fire_time: float, trigger_key: str = ""
    ) -> int | None:
        """Record one fire of a slot; None when it was already fired (by anyone)."""
        stmt = self.store._insert_for_dialect(schedule_fires).values(
            schedule_id=schedule_id,
            fire_time=fire_time,
            trigger_key=trigger_key,
            fired_at=self.store.clock(),
        )
        stmt = stmt.on_conflict_do_nothing(
            index_elements=["schedule_id", "fire_time", "trigger_key"]
        ).returning(schedule_fires.c.id)
        return conn.execute(stmt).scalar_one_or_none()

    def set_fire_task(self, conn: sa.Connection, fire_id: int, task_id: str) -> None:
        conn.execute(
            sa.update(schedule_fires).where(schedule_fires.c.id == fire_id).values(task_id=task_id)
        )

    def update_schedule(self, conn: sa.Connection, schedule_id: str, **values: Any) -> None:
        values["updated_at"] = self.store.clock()
        conn.execute(sa.update(schedules).where(schedules.c.id == schedule_id).values(**values))

    def count_event_fire(self, conn: sa.Connection, schedule_id: str, now: float) -> None:
        conn.execute(
            sa.update(schedules)
            .where(schedules.c.id == schedule_id)
            .values(executions=schedules.c.executions + 1, last_fire_at=now, updated_at=now)
        )

    def mark_schedule_broken(self, schedule_id: str, error: str) -> None:
        with self.store._write() as conn:
            self.update_schedule(conn, schedule_id, status="broken", last_error=error)

    def list_fires(self, schedule_id: str) -> list[Row]:
        query = (
            sa.select(schedule_fires)
            .where(schedule_fires.c.schedule_id == schedule_id)
            .order_by(schedule_fires.c.fire_time, schedule_fires.c.id)
        )
        with self.store._read() as conn:
            return [dict(r) for r in conn.execute(query).mappings()]

    def insert_task_in(self, conn: sa.Connection, row: Row) -> None:
        conn.execute(sa.insert(tasks).values(**row))


def _insert_many(conn: sa.Connection, table: sa.Table, rows: Sequence[Row]) -> None:
    if rows:
        conn.execute(sa.insert(table), list(rows))


def _branch_choice(row: Row) -> set[str] | None:
    if row["status"] != TaskStatus.COMPLETED:
        return None
    result = row.get("result") or {}
    chosen = result.get("branch") if isinstance(result, dict) else None
    if chosen is None:
        return set()
    return {chosen} if isinstance(chosen, str) else set(chosen)


def _edge_outcome(status: str, chosen: set[str] | None, dependant_step: str) -> str:
    if status in FAILED_STATES:
        return "failed"
    if status == TaskStatus.SKIPPED:
        return "skipped"
    if chosen is not None and dependant_step not in chosen:
        return "skipped"  # a branch that chose another path
    return "ok"
