"""TaskService: create, queue, read and inspect tasks."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from phantom_spire.engine.lifecycle import Event, Priority, TaskStatus
from phantom_spire.engine.retry import RetryPolicy
from phantom_spire.handlers.registry import HandlerRegistry
from phantom_spire.ids import new_id
from phantom_spire.store import Store

__all__ = ["TaskDefinition", "TaskService", "TaskSpec"]

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
        }

    def execute_task(self, task_id: str, *, actor: str = SYSTEM_ACTOR) -> dict[str, Any]:
        """Queue a pending task for a worker."""
        now = self.store.clock()
        row = self.store.transition_task(
            task_id,
            Event.EXECUTE,
            audit=_audit(actor, "task.execute", task_id),
            available_at=now,
            enqueued_at=now,
        )
        self._on_queued()
        return row

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


def _audit(actor: str, action: str, task_id: str, **details: Any) -> dict[str, Any]:
    return {
        "actor": actor,
        "action": action,
        "target_type": "task",
        "target_id": task_id,
        "outcome": "success",
        "details": details or None,
    }
