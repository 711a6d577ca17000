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
from phantom_spire.errors import (
    IdempotencyConflict,
    InvalidQuery,
    InvalidTaskDefinition,
    TaskNotFound,
)
from phantom_spire.handlers.registry import HandlerRegistry
from phantom_spire.ids import new_id
from phantom_spire.security import (
    DEFAULT_SCHEME,
    ClassificationError,
    ClassificationScheme,
    Permission,
    PermissionDenied,
    Resource,
    ResourceHidden,
    Tlp,
    authorize,
    listing_scope,
)
from phantom_spire.services.identity import SYSTEM, Actor
from phantom_spire.store import Store, TaskScope
from phantom_spire.store.task_query import Page, TaskQuery

__all__ = ["TaskDefinition", "TaskService", "TaskSpec", "TaskUpdate"]

logger = logging.getLogger(__name__)


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
    classification: str | None = Field(
        default=None, description="Classification level; defaults to the lowest."
    )
    tlp: Tlp = Field(default=Tlp.CLEAR, description="TLP 2.0 marking.")


class TaskService:
    """Creates and queues tasks and answers questions about them."""

    def __init__(
        self,
        store: Store,
        registry: HandlerRegistry,
        *,
        default_timeout_ms: int,
        on_queued: Callable[[], None] | None = None,
        scheme: ClassificationScheme = DEFAULT_SCHEME,
    ) -> None:
        self.store = store
        self.registry = registry
        self.default_timeout_ms = default_timeout_ms
        self._on_queued = on_queued or (lambda: None)
        self.scheme = scheme

    # -- authorisation ----------------------------------------------------------------------

    def _resource(self, row: dict[str, Any]) -> Resource:
        levels = self.scheme.levels
        return Resource(
            "task",
            owner=row.get("owner"),
            department=row.get("department"),
            level=levels[min(row.get("classification") or 0, len(levels) - 1)],
        )

    def _authorize(self, actor: Actor, permission: Permission, task_id: str) -> dict[str, Any]:
        """Load a task the actor may act on; a task above their clearance is 'not found'."""
        row = self.store.get_task(task_id)
        try:
            authorize(actor.principal, permission, self._resource(row))
        except ResourceHidden:
            self._audit_denial(actor, permission, task_id, "clearance")
            raise TaskNotFound(task_id) from None
        except PermissionDenied as exc:
            self._audit_denial(actor, permission, task_id, exc.reason)
            raise
        if (row.get("classification") or 0) > 0 and permission is Permission.TASK_READ:
            self.store.record_audit(actor.audit("task.read", task_id))
        return row

    def _authorize_action(self, actor: Actor, permission: Permission) -> None:
        try:
            authorize(actor.principal, permission)
        except PermissionDenied as exc:
            self._audit_denial(actor, permission, None, exc.reason)
            raise

    def _audit_denial(
        self, actor: Actor, permission: Permission, task_id: str | None, reason: str
    ) -> None:
        self.store.record_audit(
            actor.audit(f"authz.{permission.value}", task_id, outcome="denied", reason=reason)
        )

    def scope(self, actor: Actor, permission: Permission = Permission.TASK_READ) -> TaskScope:
        """The tasks the actor may see, for listings and counts."""
        self._authorize_action(actor, permission)
        listing = listing_scope(actor.principal, permission)
        return TaskScope(listing.max_level.rank, listing.department, listing.owner)

    def create_task(
        self, spec: TaskSpec, *, execute: bool = False, actor: Actor = SYSTEM
    ) -> dict[str, Any]:
        """Validate ``spec`` and store the task (``pending``, or ``queued`` if ``execute``)."""
        self._authorize_action(actor, Permission.TASK_CREATE)
        if execute:
            self._authorize_action(actor, Permission.TASK_EXECUTE)
        row = self._build_row(spec, execute=execute, actor=actor)
        self.store.insert_task(row, audit=actor.audit("task.create", row["id"], execute=execute))
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

    def create_tasks(
        self, specs: list[TaskSpec], *, execute: bool = False, actor: Actor = SYSTEM
    ) -> list[dict[str, Any]]:
        """Create many tasks in one transaction."""
        self._authorize_action(actor, Permission.TASK_CREATE)
        rows = [self._build_row(spec, execute=execute, actor=actor) for spec in specs]
        self.store.insert_tasks(rows)
        if execute and rows:
            self._on_queued()
        return rows

    def _build_row(self, spec: TaskSpec, *, execute: bool, actor: Actor) -> dict[str, Any]:
        level = self._classification(spec, actor)
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
            "owner": actor.user_id,
            "department": actor.principal.department,
            "classification": level,
            "tlp": spec.tlp.value,
        }

    def _classification(self, spec: TaskSpec, actor: Actor) -> int:
        if spec.classification is None:
            return self.scheme.lowest.rank
        try:
            level = self.scheme.parse(spec.classification)
        except ClassificationError as exc:
            raise InvalidTaskDefinition(
                str(exc), field="classification", value=spec.classification
            ) from None
        if level > actor.principal.clearance:
            # Said without naming the caller's clearance or what lies above it.
            raise InvalidTaskDefinition(
                f"cannot create a task classified {spec.classification!r}: above your clearance",
                field="classification",
                value=spec.classification,
            )
        return level.rank

    def create_task_idempotent(
        self,
        spec: TaskSpec,
        key: str,
        *,
        execute: bool = False,
        actor: Actor = SYSTEM,
    ) -> tuple[dict[str, Any], bool]:
        """Create a task once per idempotency ``key``; return ``(task, created)``.

        The same key with the same body returns the first task; with a different body it is
        refused (IdempotencyConflict), so a client never mistakes one request for another.
        """
        self._authorize_action(actor, Permission.TASK_CREATE)
        digest = _body_digest(spec, execute)
        existing = self.store.find_task_by_idempotency_key(key)
        if existing is None:
            row = self._build_row(spec, execute=execute, actor=actor)
            row.update(idempotency_key=key, idempotency_hash=digest)
            try:
                self.store.insert_task(
                    row, audit=actor.audit("task.create", row["id"], execute=execute)
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
        existing = self._authorize(actor, Permission.TASK_READ, existing["id"])
        if existing["idempotency_hash"] != digest:
            raise IdempotencyConflict(key, existing["id"])
        return existing, False

    def execute_task(self, task_id: str, *, actor: Actor = SYSTEM) -> dict[str, Any]:
        """Queue a pending task for a worker."""
        self._authorize(actor, Permission.TASK_EXECUTE, task_id)
        now = self.store.clock()
        row = self.store.transition_task(
            task_id,
            Event.EXECUTE,
            audit=actor.audit("task.execute", task_id),
            available_at=now,
            enqueued_at=now,
            first_enqueued_at=now,
        )
        self._on_queued()
        return row

    def control_task(self, task_id: str, action: str, *, actor: Actor = SYSTEM) -> dict[str, Any]:
        """Cancel, pause, resume or retry a task, as the transition table allows."""
        self._authorize(actor, Permission.TASK_CONTROL, task_id)
        event = _CONTROL_EVENTS[action]
        row = self.store.control_task(task_id, event, audit=actor.audit(f"task.{action}", task_id))
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
        self, task_id: str, update: TaskUpdate, *, actor: Actor = SYSTEM
    ) -> dict[str, Any]:
        """Change name, priority, tags, parameters, timeout or retry policy of a task."""
        current = self._authorize(actor, Permission.TASK_CONTROL, task_id)
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
            task_id, values, audit=actor.audit("task.update", task_id, fields=changed)
        )

    def delete_task(self, task_id: str, *, actor: Actor = SYSTEM) -> dict[str, Any]:
        """Soft delete: hidden from listings; executions, logs and audit events are kept."""
        self._authorize(actor, Permission.TASK_DELETE, task_id)
        return self.store.soft_delete_task(task_id, audit=actor.audit("task.delete", task_id))

    def list_dead_letters(self, *, limit: int = 100, actor: Actor = SYSTEM) -> list[dict[str, Any]]:
        """Tasks that ended in failure and need a person: dead-lettered (attempts ran out),
        failed (a non-retryable error) or timed out for good. Each carries its last error."""
        statuses = [TaskStatus.DEAD_LETTERED, TaskStatus.FAILED, TaskStatus.TIMED_OUT]
        return self.store.list_tasks(statuses=statuses, limit=limit, scope=self.scope(actor))

    def waiting_reason(self, row: dict[str, Any], actor: Actor = SYSTEM) -> dict[str, Any] | None:
        """Why a task that is not running is not running (None when it is, or is done)."""
        status = row["status"]
        if status == TaskStatus.PENDING:
            return {"reason": "not_executed", "detail": "created but not executed yet"}
        if status == TaskStatus.QUEUED:
            # Counted over every task, not only visible ones: a number, never a name.
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

    def get_metrics(self, task_id: str, actor: Actor = SYSTEM) -> dict[str, Any]:
        """Queue wait, run time per attempt, attempts, resources and throughput."""
        row = self._authorize(actor, Permission.TASK_READ, task_id)
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

    def get_task(self, task_id: str, actor: Actor = SYSTEM) -> dict[str, Any]:
        return self._authorize(actor, Permission.TASK_READ, task_id)

    def list_tasks(
        self,
        *,
        types: list[str],
        statuses: list[str],
        limit: int,
        offset: int = 0,
        actor: Actor = SYSTEM,
    ) -> list[dict[str, Any]]:
        return self.store.list_tasks(
            types=types, statuses=statuses, limit=limit, offset=offset, scope=self.scope(actor)
        )

    def page_tasks(
        self, query: TaskQuery, *, actor: Actor = SYSTEM, limit: int, cursor: str | None = None
    ) -> Page:
        """A page of the tasks the actor may see, filtered, sorted, or searched."""
        scope = self.scope(actor)
        try:
            page = self.store.page_tasks(
                query, scope, owner=actor.user_id, limit=limit, cursor=cursor
            )
        except ValueError as exc:  # search text without a single word
            raise InvalidQuery(str(exc), field="q", value=query.text) from None
        classified = sum(1 for r in page.rows if (r.get("classification") or 0) > 0)
        if classified:
            self.store.record_audit(actor.audit("task.list", None, classified=classified))
        return page

    def get_history(self, task_id: str, actor: Actor = SYSTEM) -> list[dict[str, Any]]:
        self._authorize(actor, Permission.TASK_READ, task_id)
        return self.store.list_executions(task_id)

    def get_logs(
        self, task_id: str, *, after_id: int = 0, limit: int = 1000, actor: Actor = SYSTEM
    ) -> list[dict[str, Any]]:
        self._authorize(actor, Permission.TASK_READ, task_id)
        return self.store.list_logs(task_id, after_id=after_id, limit=limit)

    def health(self, actor: Actor = SYSTEM) -> dict[str, Any]:
        scope = self.scope(actor)
        try:
            self.store.ping()
            counts = self.store.count_tasks_by_status(scope)
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
