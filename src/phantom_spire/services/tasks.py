"""TaskService: create, queue, read and inspect tasks."""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable
from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel
from sqlalchemy import exc as sa_exc

from phantom_spire.engine.lifecycle import Event, Priority, TaskStatus
from phantom_spire.engine.retry import RetryPolicy
from phantom_spire.errors import IdempotencyConflict
from phantom_spire.handlers.registry import HandlerRegistry
from phantom_spire.ids import new_id
from phantom_spire.store import Store

__all__ = ["TaskDefinition", "TaskService", "TaskSpec", "TaskUpdate"]

logger = logging.getLogger(__name__)

SYSTEM_ACTOR = "system"


class _Camel(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")


class TaskDefinition(_Camel):
    handler: str | None = Field(
        default=None, description="Handler to run; defaults to the task's type."
    )
    parameters: dict[str, Any] = Field(default_factory=dict)
    timeout: int | None = Field(default=None, ge=1, le=7 * 86_400_000, description="In ms.")
    retry_policy: RetryPolicy = Field(default_factory=RetryPolicy)


class TaskSpec(_Camel):
    """What a client submits to create a task."""

    name: str = Field(min_length=1, max_length=200)
    type: str = Field(min_length=1, max_length=64, pattern=r"^[a-z][a-z0-9_]*$")
    priority: Priority = Priority.NORMAL
    definition: TaskDefinition = Field(default_factory=TaskDefinition)
    tags: list[str] = Field(default_factory=list, max_length=50)
    metadata: dict[str, Any] = Field(default_factory=dict)


class TaskService:
    """Creates and queues tasks and answers questions about them."""

    def __init__(
        self,
        store: Store,
        registry: HandlerRegistry,
        *,
        default_timeout_ms: int,
        on_queued: Callable[[], None] | None = None,
    ) -> None:
        self.store = store
        self.registry = registry
        self.default_timeout_ms = default_timeout_ms
        self._on_queued = on_queued or (lambda: None)

    def create_task(
        self, spec: TaskSpec, *, execute: bool = False, actor: str = SYSTEM_ACTOR
    ) -> dict[str, Any]:
        """Validate ``spec`` and store the task (``pending``, or ``queued`` if ``execute``)."""
        row = self._build_row(spec, execute=execute)
        self.store.insert_task(row, audit=_audit(actor, "task.create", row["id"], execute=execute))
        logger.info(
            "created task %s (%s, %s)",
            row["id"],
            row["handler"],
            row["status"],
            extra={"event": "task_created", "task_id": row["id"], "status": row["status"]},
        )
        if execute:
            self._on_queued()
        return row

    def create_tasks(self, specs: list[TaskSpec], *, execute: bool = False) -> list[dict[str, Any]]:
        """Create many tasks in one transaction."""
        rows = [self._build_row(spec, execute=execute) for spec in specs]
        self.store.insert_tasks(rows)
        if execute and rows:
            self._on_queued()
        return rows

    def _build_row(self, spec: TaskSpec, *, execute: bool) -> dict[str, Any]:
        handler = spec.definition.handler or spec.type
        parameters = self.registry.validate_parameters(handler, spec.definition.parameters)
        now = self.store.clock()
        status = TaskStatus.QUEUED if execute else TaskStatus.PENDING
        return {
            "id": new_id(),
            "name": spec.name,
            "type": spec.type,
            "handler": handler,
            "parameters": parameters,
            "priority": spec.priority.rank,
            "effective_priority": spec.priority.rank,
            "status": str(status),
            "timeout_ms": spec.definition.timeout or self.default_timeout_ms,
            "retry_policy": spec.definition.retry_policy.model_dump(mode="json", by_alias=True),
            "max_attempts": spec.definition.retry_policy.max_attempts,
            "attempts": 0,
            "tags": spec.tags,
            "metadata": spec.metadata,
            "created_at": now,
            "updated_at": now,
            "available_at": now if execute else None,
            "enqueued_at": now if execute else None,
            "version": 1,
            "failures": 0,
            "first_enqueued_at": now if execute else None,
        }

    def create_task_idempotent(
        self,
        spec: TaskSpec,
        key: str,
        *,
        execute: bool = False,
        actor: str = SYSTEM_ACTOR,
    ) -> tuple[dict[str, Any], bool]:
        """Create a task once per idempotency ``key``; return ``(task, created)``.

        The same key with the same body returns the first task; with a different body it is
        refused (IdempotencyConflict), so a client never mistakes one request for another.
        """
        digest = _body_digest(spec, execute)
        existing = self.store.find_task_by_idempotency_key(key)
        if existing is None:
            row = self._build_row(spec, execute=execute)
            row.update(idempotency_key=key, idempotency_hash=digest)
            try:
                self.store.insert_task(
                    row, audit=_audit(actor, "task.create", row["id"], execute=execute)
                )
            except sa_exc.IntegrityError:
                # Another request with the same key won the race: answer as it did.
                existing = self.store.find_task_by_idempotency_key(key)
                if existing is None:
                    raise
            else:
                if execute:
                    self._on_queued()
                return row, True
        if existing["idempotency_hash"] != digest:
            raise IdempotencyConflict(key, existing["id"])
        return existing, False

    def execute_task(self, task_id: str, *, actor: str = SYSTEM_ACTOR) -> dict[str, Any]:
        """Queue a pending task for a worker."""
        now = self.store.clock()
        row = self.store.transition_task(
            task_id,
            Event.EXECUTE,
            audit=_audit(actor, "task.execute", task_id),
            available_at=now,
            enqueued_at=now,
            first_enqueued_at=now,
        )
        self._on_queued()
        return row

    def control_task(
        self, task_id: str, action: str, *, actor: str = SYSTEM_ACTOR
    ) -> dict[str, Any]:
        """Cancel, pause, resume or retry a task, as the transition table allows."""
        event = _CONTROL_EVENTS[action]
        row = self.store.control_task(
            task_id, event, audit=_audit(actor, f"task.{action}", task_id)
        )
        logger.info(
            "task %s: %s -> %s",
            task_id,
            action,
            row["status"],
            extra={"event": f"task_{action}", "task_id": task_id, "status": row["status"]},
        )
        if row["status"] == TaskStatus.QUEUED:
            self._on_queued()
        return row

    def update_task(
        self, task_id: str, update: TaskUpdate, *, actor: str = SYSTEM_ACTOR
    ) -> dict[str, Any]:
        """Change name, priority, tags, parameters, timeout or retry policy of a task."""
        current = self.store.get_task(task_id)
        values: dict[str, Any] = {}
        if update.name is not None:
            values["name"] = update.name
        if update.priority is not None:
            values["priority"] = update.priority.rank
        if update.tags is not None:
            values["tags"] = update.tags
        if update.parameters is not None:
            values["parameters"] = self.registry.validate_parameters(
                current["handler"], update.parameters
            )
        if update.timeout is not None:
            values["timeout_ms"] = update.timeout
        if update.retry_policy is not None:
            values["retry_policy"] = update.retry_policy.model_dump(mode="json", by_alias=True)
            values["max_attempts"] = update.retry_policy.max_attempts
        changed = sorted(update.model_dump(exclude_none=True, by_alias=True))
        return self.store.update_task(
            task_id, values, audit=_audit(actor, "task.update", task_id, fields=changed)
        )

    def delete_task(self, task_id: str, *, actor: str = SYSTEM_ACTOR) -> dict[str, Any]:
        """Soft delete: hidden from listings; executions, logs and audit events are kept."""
        return self.store.soft_delete_task(task_id, audit=_audit(actor, "task.delete", task_id))

    def list_dead_letters(self, *, limit: int = 100) -> list[dict[str, Any]]:
        """Tasks that ended in failure and need a person: dead-lettered (attempts ran out),
        failed (a non-retryable error) or timed out for good. Each carries its last error."""
        statuses = [TaskStatus.DEAD_LETTERED, TaskStatus.FAILED, TaskStatus.TIMED_OUT]
        return self.store.list_tasks(statuses=statuses, limit=limit)

    def waiting_reason(self, row: dict[str, Any]) -> dict[str, Any] | None:
        """Why a task that is not running is not running (None when it is, or is done)."""
        status = row["status"]
        if status == TaskStatus.PENDING:
            return {"reason": "not_executed", "detail": "created but not executed yet"}
        if status == TaskStatus.QUEUED:
            position = self.store.queue_position(row)
            running = self.store.count_tasks_by_status().get(TaskStatus.RUNNING, 0)
            return {
                "reason": "queued",
                "detail": f"{position} queued task(s) go first; {running} running",
                "position": position,
                "running": running,
            }
        if status == TaskStatus.RETRY_WAIT:
            return {
                "reason": "backoff",
                "detail": "waiting before the next attempt",
                "until": row["available_at"],
            }
        if status == TaskStatus.PAUSED:
            return {"reason": "paused", "detail": "paused by an operator; resume to continue"}
        if status in (TaskStatus.PAUSING, TaskStatus.CANCELLING):
            return {"reason": status, "detail": "waiting for the worker to stop the handler"}
        if status == TaskStatus.BLOCKED:
            return {"reason": "dependencies", "detail": "waiting for its dependencies"}
        if status == TaskStatus.SCHEDULED:
            return {"reason": "scheduled", "detail": "waiting for its scheduled time"}
        return None

    def get_metrics(self, task_id: str) -> dict[str, Any]:
        """Queue wait, run time per attempt, attempts, resources and throughput."""
        row = self.store.get_task(task_id)
        executions = self.store.list_executions(task_id)
        attempts = []
        for e in executions:
            run = (e["finished_at"] or self.store.clock()) - e["started_at"]
            attempts.append(
                {
                    "attempt": e["attempt"],
                    "status": e["status"],
                    "runSeconds": round(run, 6),
                    **(e["metrics"] or {}),
                }
            )
        first_start = executions[0]["started_at"] if executions else None
        queued_at = row["first_enqueued_at"]
        queue_wait = first_start - queued_at if first_start and queued_at else None
        done = row["progress_done"]
        last_run = attempts[-1]["runSeconds"] if attempts else None
        return {
            "taskId": task_id,
            "status": row["status"],
            "attempts": len(executions),
            "failures": row["failures"],
            "queueWaitSeconds": round(queue_wait, 6) if queue_wait is not None else None,
            "totalRunSeconds": round(sum(a["runSeconds"] for a in attempts), 6),
            "recordsProcessed": done,
            "recordsPerSecond": round(done / last_run, 3) if done and last_run else None,
            "perAttempt": attempts,
        }

    def get_task(self, task_id: str) -> dict[str, Any]:
        return self.store.get_task(task_id)

    def list_tasks(
        self, *, types: list[str], statuses: list[str], limit: int, offset: int = 0
    ) -> list[dict[str, Any]]:
        return self.store.list_tasks(types=types, statuses=statuses, limit=limit, offset=offset)

    def get_history(self, task_id: str) -> list[dict[str, Any]]:
        self.store.get_task(task_id)
        return self.store.list_executions(task_id)

    def get_logs(
        self, task_id: str, *, after_id: int = 0, limit: int = 1000
    ) -> list[dict[str, Any]]:
        self.store.get_task(task_id)
        return self.store.list_logs(task_id, after_id=after_id, limit=limit)

    def health(self) -> dict[str, Any]:
        try:
            self.store.ping()
            counts = self.store.count_tasks_by_status()
        except Exception as exc:
            logger.exception("health check failed", extra={"event": "health_failed"})
            return {"status": "unhealthy", "store": {"ok": False, "error": type(exc).__name__}}
        return {
            "status": "healthy",
            "store": {"ok": True, "dialect": self.store.dialect},
            "tasks": counts,
            "handlers": self.registry.names(),
        }


_CONTROL_EVENTS = {
    "cancel": Event.CANCEL,
    "pause": Event.PAUSE,
    "resume": Event.RESUME,
    "retry": Event.RETRY,
}


class TaskUpdate(_Camel):
    """Fields of a task an operator may change while no worker holds it."""

    name: str | None = Field(default=None, min_length=1, max_length=200)
    priority: Priority | None = None
    tags: list[str] | None = Field(default=None, max_length=50)
    parameters: dict[str, Any] | None = None
    timeout: int | None = Field(default=None, ge=1, le=7 * 86_400_000)
    retry_policy: RetryPolicy | None = None


def _body_digest(spec: TaskSpec, execute: bool) -> str:
    canonical = json.dumps(
        {"spec": spec.model_dump(mode="json"), "execute": execute},
        sort_keys=True,
        separators=(",", ":"),
    )
    return hashlib.sha256(canonical.encode()).hexdigest()


def _audit(actor: str, action: str, task_id: str, **details: Any) -> dict[str, Any]:
    return {
        "actor": actor,
        "action": action,
        "target_type": "task",
        "target_id": task_id,
        "outcome": "success",
        "details": details or None,
    }
