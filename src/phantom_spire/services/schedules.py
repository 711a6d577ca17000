"""ScheduleService: put a task on a schedule, take it off, list schedules, preview fire times.

Also :func:`build_workflow_services`, which wires the workflow store, the scheduler and both
services onto a runtime's store and task service.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pydantic import ValidationError

from phantom_spire.engine.scheduler import Scheduler, to_datetime
from phantom_spire.errors import InvalidTaskDefinition
from phantom_spire.handlers.registry import HandlerRegistry
from phantom_spire.handlers.workflow_steps import workflow_step_handlers
from phantom_spire.ids import new_id
from phantom_spire.scheduling import (
    EventDrivenSpec,
    OnceSpec,
    next_fire_times,
    parse_schedule_spec,
)
from phantom_spire.security import Permission, authorize
from phantom_spire.services.identity import SYSTEM, Actor
from phantom_spire.services.tasks import TaskService
from phantom_spire.services.workflows import (
    BUILTIN_TEMPLATE_DIR,
    TemplateRegistry,
    WorkflowService,
)
from phantom_spire.settings import Settings
from phantom_spire.store.workflow_store import WorkflowStore

__all__ = ["ScheduleService", "WorkflowServices", "build_workflow_services"]

logger = logging.getLogger(__name__)


class ScheduleService:
    """Schedules of tasks: once, recurring (cron + IANA zone), interval, event-driven."""

    def __init__(self, tasks: TaskService, workflow_store: WorkflowStore, scheduler: Scheduler):
        self.tasks = tasks
        self.store = workflow_store
        self.scheduler = scheduler

    def schedule_task(
        self, task_id: str, spec_data: dict[str, Any], *, actor: Actor = SYSTEM
    ) -> dict[str, Any]:
        """Put a pending task on a schedule.

        Raises:
            InvalidTaskDefinition: The spec is invalid (the message names field and value).
            IllegalTransition: The task is not ``pending`` (already scheduled, queued, ...).
        """
        authorize(actor.principal, Permission.SCHEDULE_MANAGE)
        self.tasks._authorize(actor, Permission.TASK_EXECUTE, task_id)
        spec = _parse(spec_data)
        now = self.tasks.store.clock()
        upcoming = _upcoming(spec, now)
        if not isinstance(spec, EventDrivenSpec) and not upcoming:
            raise InvalidTaskDefinition(
                f"schedule {spec_data!r} has no fire time after now", field="schedule"
            )
        row = {
            "id": new_id(),
            "task_id": task_id,
            "kind": spec.type,
            "spec": spec.model_dump(mode="json", by_alias=True, exclude_none=True),
            "status": "active",
            "executions": 0,
            "next_fire_at": upcoming[0].timestamp() if upcoming else None,
            "owner": actor.user_id,
            "created_at": now,
            "updated_at": now,
        }
        self.store.insert_schedule(row, audit=actor.audit("task.schedule", task_id, type=spec.type))
        self.scheduler.refresh_event_schedules()
        logger.info(
            "scheduled task %s (%s)",
            task_id,
            spec.type,
            extra={"event": "task_scheduled", "task_id": task_id, "schedule_id": row["id"]},
        )
        return self.describe(row)

    def unschedule_task(self, task_id: str, *, actor: Actor = SYSTEM) -> dict[str, Any]:
        authorize(actor.principal, Permission.SCHEDULE_MANAGE)
        self.tasks._authorize(actor, Permission.TASK_EXECUTE, task_id)
        row = self.store.delete_schedule(task_id, audit=actor.audit("task.unschedule", task_id))
        self.scheduler.refresh_event_schedules()
        return self.describe(row)

    def get_schedule(self, task_id: str, *, actor: Actor = SYSTEM) -> dict[str, Any]:
        authorize(actor.principal, Permission.SCHEDULE_READ)
        self.tasks._authorize(actor, Permission.TASK_READ, task_id)  # 404 above clearance
        return self.describe(self.store.get_schedule_for_task(task_id))

    def list_scheduled(
        self, *, include_finished: bool = False, actor: Actor = SYSTEM
    ) -> list[dict[str, Any]]:
        authorize(actor.principal, Permission.SCHEDULE_READ)
        statuses = ("active", "broken", "finished") if include_finished else ("active", "broken")
        rows = self.store.list_schedules(statuses=statuses)
        visible = set(
            self.tasks.store.statuses_of_visible(
                [r["task_id"] for r in rows], self.tasks.scope(actor)
            )
        )
        return [self.describe(r) for r in rows if r["task_id"] in visible]

    def fire_times(self, task_id: str, n: int = 10, *, actor: Actor = SYSTEM) -> list[str]:
        """The next ``n`` fire times of a task's schedule, ISO 8601 in UTC."""
        authorize(actor.principal, Permission.SCHEDULE_READ)
        self.tasks._authorize(actor, Permission.TASK_READ, task_id)
        row = self.store.get_schedule_for_task(task_id)
        spec = parse_schedule_spec(row["spec"])
        after = row["last_fire_at"] or row["created_at"]
        after = max(after, self.tasks.store.clock())
        times = next_fire_times(spec, to_datetime(after), n, row["executions"])
        return [t.isoformat() for t in times]

    def emit_event(
        self,
        event_type: str,
        source: str | None,
        data: dict[str, Any],
        event_id: str | None,
        *,
        actor: Actor = SYSTEM,
    ) -> list[str]:
        """Deliver an event (``data_change``, ``indicator_seen``, ...) to event-driven schedules."""
        authorize(actor.principal, Permission.SCHEDULE_MANAGE)
        return self.scheduler.handle_event(event_type, source, data, event_id=event_id)

    def describe(self, row: dict[str, Any]) -> dict[str, Any]:
        return {
            "id": row["id"],
            "taskId": row["task_id"],
            "type": row["kind"],
            "spec": row["spec"],
            "status": row["status"],
            "executions": row.get("executions", 0),
            "lastFireAt": _iso(row.get("last_fire_at")),
            "nextFireAt": _iso(row.get("next_fire_at")),
            "lastError": row.get("last_error"),
            "createdAt": _iso(row["created_at"]),
        }


def _parse(spec_data: dict[str, Any]) -> Any:
    try:
        return parse_schedule_spec(spec_data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "schedule"
        raise InvalidTaskDefinition(
            f"invalid schedule at {where!r}: {first['msg']} (got {first.get('input')!r})",
            field=f"schedule.{where}",
            value=first.get("input"),
        ) from exc


def _upcoming(spec: Any, now: float) -> list[datetime]:
    if isinstance(spec, OnceSpec):
        # A run time already past would be a missed slot from the start: refused instead.
        return [spec.run_at] if spec.run_at.timestamp() > now else []
    return next_fire_times(spec, to_datetime(now), 1)


def _iso(epoch: float | None) -> str | None:
    return None if epoch is None else to_datetime(epoch).isoformat()


@dataclass
class WorkflowServices:
    """What :func:`build_workflow_services` wires."""

    store: WorkflowStore
    scheduler: Scheduler
    workflows: WorkflowService
    schedules: ScheduleService


def build_workflow_services(
    settings: Settings, tasks: TaskService, registry: HandlerRegistry
) -> WorkflowServices:
    """Workflow store (with its readiness listener), scheduler and services for a runtime."""
    names = set(registry.names())
    for handler in workflow_step_handlers():
        if handler.name not in names:
            registry.register(handler)
    on_queued = tasks._on_queued
    wf_store = WorkflowStore(tasks.store, on_queued=on_queued)
    wf_store.install()
    scheduler = Scheduler(
        wf_store, poll_seconds=settings.scheduler_poll_seconds, on_queued=on_queued
    )
    scheduler.install()
    folders = [BUILTIN_TEMPLATE_DIR]
    if settings.template_dir is not None:
        folders.append(settings.template_dir)
    return WorkflowServices(
        store=wf_store,
        scheduler=scheduler,
        workflows=WorkflowService(tasks, wf_store, TemplateRegistry(folders)),
        schedules=ScheduleService(tasks, wf_store, scheduler),
    )
