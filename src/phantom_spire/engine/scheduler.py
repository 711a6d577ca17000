"""The scheduler loop: fires due schedules, event triggers, and approval time-outs.

Each tick reads the schedules whose ``next_fire_at`` has passed and, one schedule per
transaction, asks :func:`phantom_spire.scheduling.slots_to_fire` which slots to fire under
the schedule's misfire policy. Every fire is first recorded in ``schedule_fires``, whose
unique key (schedule, fire time, trigger key) lets exactly one of any number of scheduler
processes fire a slot; the task it queues is created in the same transaction. Nothing
lives in memory between ticks, so a restarted scheduler picks up where the store says.

A ``once`` schedule queues its own task (``scheduled`` -> ``queued``). The other kinds keep
their task ``scheduled`` as a template and queue a copy per fire, so each run has its own
history; when such a schedule ends (``endAt`` or ``maxExecutions``) its task returns to
``pending``.

A schedule that cannot be evaluated (a corrupt spec, say) is marked ``broken`` with the
error and skipped; it never stops the loop.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa

from phantom_spire.engine.lifecycle import Event, TaskStatus
from phantom_spire.ids import new_id
from phantom_spire.scheduling import (
    EventDrivenSpec,
    EventTrigger,
    IntervalSpec,
    OnceSpec,
    next_fire_times,
    parse_schedule_spec,
    slots_to_fire,
)
from phantom_spire.store.workflow_store import WorkflowStore

__all__ = ["Scheduler", "to_datetime", "trigger_matches"]

logger = logging.getLogger(__name__)

Row = dict[str, Any]


def to_datetime(epoch: float) -> datetime:
    return datetime.fromtimestamp(epoch, UTC)


def trigger_matches(trigger: EventTrigger, event_type: str, source: str | None, data: Row) -> bool:
    """True if an event of ``event_type`` from ``source`` carrying ``data`` fires ``trigger``.

    Each condition must equal the event's field; a list in a condition means any of.
    """
    if trigger.type != event_type:
        return False
    if trigger.source is not None and trigger.source != source:
        return False
    for key, wanted in (trigger.conditions or {}).items():
        value = data.get(key)
        if isinstance(wanted, list) and value not in wanted:
            return False
        if not isinstance(wanted, list) and value != wanted:
            return False
    return True


class Scheduler:
    """Fires schedules from the store; safe to run in several processes at once."""

    def __init__(
        self,
        workflow_store: WorkflowStore,
        *,
        poll_seconds: float = 1.0,
        clock: Callable[[], float] | None = None,
        on_queued: Callable[[], None] | None = None,
    ) -> None:
        self.wf_store = workflow_store
        self.store = workflow_store.store
        self.clock = clock or self.store.clock
        self.poll_seconds = poll_seconds
        self.on_queued = on_queued or (lambda: None)
        self._stop = asyncio.Event()
        self._event_schedules: list[Row] | None = None
        self._event_lock = threading.Lock()

    def install(self) -> None:
        """Listen for completed tasks (``task_completed`` triggers)."""
        if self.on_transition not in self.store.transition_listeners:
            self.store.transition_listeners.append(self.on_transition)

    # -- the loop --------------------------------------------------------------------------

    async def run(self) -> None:
        """Tick every ``poll_seconds`` until :meth:`stop`."""
        self._stop.clear()
        logger.info("scheduler started", extra={"event": "scheduler_started"})
        while not self._stop.is_set():
            try:
                await asyncio.to_thread(self.tick)
            except Exception:
                # The store may be briefly unreachable; the next tick retries.
                logger.exception("scheduler tick failed", extra={"event": "scheduler_tick_failed"})
            try:
                await asyncio.wait_for(self._stop.wait(), self.poll_seconds)
            except TimeoutError:
                pass
        logger.info("scheduler stopped", extra={"event": "scheduler_stopped"})

    def stop(self) -> None:
        self._stop.set()

    def tick(self) -> int:
        """Fire everything due now; return how many fires this process made."""
        now = self.clock()
        self.refresh_event_schedules()
        self.wf_store.expire_approvals(now)
        fired = 0
        for schedule_id in self.wf_store.due_schedule_ids(now):
            try:
                fired += self.fire_due(schedule_id, now)
            except Exception as exc:
                logger.error(
                    "schedule %s is broken and was skipped: %s",
                    schedule_id,
                    exc,
                    extra={"event": "schedule_broken", "schedule_id": schedule_id},
                )
                self.wf_store.mark_schedule_broken(schedule_id, f"{type(exc).__name__}: {exc}")
        if fired:
            self.on_queued()
        return fired

    def fire_due(self, schedule_id: str, now: float) -> int:
        """Fire the due slots of one schedule under its misfire policy, in one transaction."""
        with self.wf_store.locked_schedule(schedule_id) as (conn, row):
            if row["status"] != "active" or row["next_fire_at"] is None:
                return 0
            spec = parse_schedule_spec(row["spec"])
            if isinstance(spec, EventDrivenSpec):
                return 0
            last = row["last_fire_at"] if row["last_fire_at"] is not None else row["created_at"]
            slots = slots_to_fire(
                spec,
                last_fire=to_datetime(last),
                now=to_datetime(now),
                executions_so_far=row["executions"],
            )
            fired = 0
            for slot in slots:
                if self._fire(conn, row, slot.timestamp(), "", isinstance(spec, OnceSpec)):
                    fired += 1
            newest = slots[-1].timestamp() if slots else last
            executions = row["executions"] + fired
            if slots:
                after = to_datetime(newest)
            elif isinstance(spec, IntervalSpec) and spec.start_at is None:
                # Such an interval counts its slots from the last fire. Re-anchoring on `now`
                # after a skipped outage would shift the grid off the slots slots_to_fire
                # computes, so every later slot would look late and, under `skip`, never fire.
                after = to_datetime(last + ((now - last) // spec.every) * spec.every)
            else:
                after = to_datetime(max(last, now))
            upcoming = next_fire_times(spec, after, 1, executions)
            if isinstance(spec, OnceSpec) and (fired or not upcoming):
                upcoming = []
            values: Row = {
                "executions": executions,
                "last_fire_at": newest if slots else row["last_fire_at"],
                "next_fire_at": upcoming[0].timestamp() if upcoming else None,
                "last_error": None,
            }
            if not upcoming:
                values["status"] = "finished"
                self._release_template(conn, row["task_id"])
            self.wf_store.update_schedule(conn, schedule_id, **values)
        if fired:
            logger.info(
                "schedule %s fired %d slot(s)",
                schedule_id,
                fired,
                extra={"event": "schedule_fired", "schedule_id": schedule_id, "fires": fired},
            )
        return fired

    def _fire(
        self, conn: sa.Connection, schedule: Row, fire_time: float, key: str, own_task: bool
    ) -> str | None:
        fire_id = self.wf_store.claim_fire(conn, schedule["id"], fire_time, key)
        if fire_id is None:
            return None  # another scheduler fired this slot (or this event) already
        now = self.clock()
        template = self.store._load_for_update(conn, schedule["task_id"])
        if own_task:
            self.store._apply(
                conn,
                template,
                Event.FIRE,
                available_at=now,
                enqueued_at=now,
                first_enqueued_at=now,
            )
            task_id = template["id"]
        else:
            task_id = self._queue_copy(conn, template, schedule["id"], fire_time, now)
        self.wf_store.set_fire_task(conn, fire_id, task_id)
        return task_id

    def _queue_copy(
        self, conn: sa.Connection, template: Row, schedule_id: str, fire_time: float, now: float
    ) -> str:
        row = {
            key: value
            for key, value in template.items()
            if key not in _RUN_STATE_COLUMNS and value is not None
        }
        metadata = {
            **(template["metadata"] or {}),
            "scheduleId": schedule_id,
            "scheduledFrom": template["id"],
            "fireTime": to_datetime(fire_time).isoformat(),
        }
        row.update(
            id=new_id(),
            status=str(TaskStatus.QUEUED),
            metadata=metadata,
            effective_priority=template["priority"],
            attempts=0,
            failures=0,
            version=1,
            created_at=now,
            updated_at=now,
            available_at=now,
            enqueued_at=now,
            first_enqueued_at=now,
        )
        self.wf_store.insert_task_in(conn, row)
        return str(row["id"])

    def _release_template(self, conn: sa.Connection, task_id: str) -> None:
        task = self.store._load_for_update(conn, task_id)
        if task["status"] == TaskStatus.SCHEDULED:
            self.store._apply(conn, task, Event.UNSCHEDULE)

    # -- events ----------------------------------------------------------------------------

    def refresh_event_schedules(self) -> None:
        schedules = self.wf_store.event_schedules()
        with self._event_lock:
            self._event_schedules = schedules

    def handle_event(
        self, event_type: str, source: str | None, data: Row, *, event_id: str | None = None
    ) -> list[str]:
        """Fire every event-driven schedule whose trigger matches; return the queued task ids.

        ``event_id`` makes delivery idempotent: the same event fires a schedule once.
        """
        with self.store._write() as conn:
            task_ids = self.fire_event_in(conn, event_type, source, data, event_id=event_id)
        if task_ids:
            self.on_queued()
        return task_ids

    def fire_event_in(
        self,
        conn: sa.Connection,
        event_type: str,
        source: str | None,
        data: Row,
        *,
        event_id: str | None = None,
        exclude_schedule: str | None = None,
    ) -> list[str]:
        """Like :meth:`handle_event`, inside the caller's transaction."""
        with self._event_lock:
            candidates = self._event_schedules
        if candidates is None:
            candidates = self.wf_store.event_schedules()
        key = f"{event_type}:{source or ''}:{event_id or new_id()}"[:200]
        now = self.clock()
        fired: list[str] = []
        for schedule in candidates:
            if schedule["id"] == exclude_schedule:
                continue
            try:
                spec = parse_schedule_spec(schedule["spec"])
            except ValueError as exc:
                logger.error(
                    "event schedule %s is broken and was skipped: %s",
                    schedule["id"],
                    exc,
                    extra={"event": "schedule_broken", "schedule_id": schedule["id"]},
                )
                continue
            if not isinstance(spec, EventDrivenSpec):
                continue
            if not any(trigger_matches(t, event_type, source, data) for t in spec.triggers):
                continue
            task_id = self._fire(conn, schedule, now, key, own_task=False)
            if task_id is not None:
                fired.append(task_id)
                self.wf_store.count_event_fire(conn, schedule["id"], now)
        return fired

    def on_transition(self, conn: sa.Connection, row: Row, event: Event) -> None:
        """Fire ``task_completed`` triggers in the completing task's transaction."""
        if event is not Event.COMPLETE:
            return
        with self._event_lock:
            schedules = self._event_schedules
        if not schedules:
            return
        own = (row.get("metadata") or {}).get("scheduleId")
        self.fire_event_in(
            conn,
            "task_completed",
            row["id"],
            {"type": row["type"], "handler": row["handler"], "name": row["name"]},
            event_id=row["id"],
            # A task started by a schedule never re-triggers that schedule (no endless loop).
            exclude_schedule=own,
        )


_RUN_STATE_COLUMNS = frozenset(
    {
        "result",
        "error",
        "checkpoint",
        "progress_done",
        "progress_total",
        "lease_owner",
        "lease_expires_at",
        "started_at",
        "finished_at",
        "idempotency_key",
        "idempotency_hash",
        "deleted_at",
        "stop_requested_at",
    }
)
