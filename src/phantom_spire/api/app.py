"""The FastAPI application: routes under /api/v1, OpenAPI at /api-docs."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, Header, Query, Request, Response
from fastapi.exceptions import RequestValidationError

from phantom_spire import __version__
from phantom_spire.api import routes_workflows
from phantom_spire.api.auth import CurrentActor
from phantom_spire.api.guards import RequestGuard
from phantom_spire.api.problems import (
    COMMON_RESPONSES,
    CONFLICT,
    NOT_FOUND,
    install_problem_handlers,
)
from phantom_spire.api.queries import TaskFilters, epoch_of, split_values
from phantom_spire.api.routes_admin import admin_routes, audit_routes
from phantom_spire.api.schemas import (
    ExecutionOut,
    IndicatorOut,
    LogOut,
    TaskOut,
    TaskStatusOut,
)
from phantom_spire.cti import indicators as indicator_types
from phantom_spire.runtime import Runtime
from phantom_spire.security import Permission, authorize
from phantom_spire.services.tasks import TaskService, TaskSpec, TaskUpdate

__all__ = ["create_app"]

# Every route may answer these; 404 and 409 are declared broadly (a route that cannot meet
# a missing id or a state conflict simply never sends them).
ERROR_RESPONSES = {**COMMON_RESPONSES, **NOT_FOUND, **CONFLICT}

logger = logging.getLogger(__name__)


def create_app(runtime: Runtime, *, run_worker: bool | None = None) -> FastAPI:
    """Build the app around ``runtime``; with ``run_worker`` it also runs the worker pool."""
    run_worker = runtime.settings.run_workers if run_worker is None else run_worker

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        worker_job = asyncio.create_task(runtime.run_worker()) if run_worker else None
        try:
            yield
        finally:
            if worker_job is not None and runtime.worker is not None:
                runtime.worker.stop()
                await worker_job

    app = FastAPI(
        title="Phantom Spire",
        version=__version__,
        description="Task orchestration for cyber-threat-intelligence teams.",
        docs_url="/api-docs",
        openapi_url="/api-docs/openapi.json",
        redoc_url=None,
        lifespan=lifespan,
    )
    app.state.runtime = runtime
    app.add_middleware(RequestGuard)
    install_problem_handlers(app)
    # Before the task routes: /tasks/scheduled must not be read as a task id.
    app.include_router(routes_workflows.router(), prefix="/api/v1", responses=ERROR_RESPONSES)
    app.include_router(_task_routes(), prefix="/api/v1", responses=ERROR_RESPONSES)
    app.include_router(_indicator_routes(), prefix="/api/v1", responses=ERROR_RESPONSES)
    app.include_router(audit_routes(), prefix="/api/v1", responses=ERROR_RESPONSES)
    app.include_router(admin_routes(), prefix="/api/v1", responses=ERROR_RESPONSES)
    return app


def _tasks(request: Request) -> TaskService:
    runtime: Runtime = request.app.state.runtime
    return runtime.tasks


Tasks = Annotated[TaskService, Depends(_tasks)]


def _set_cursor(response: Response, cursor: str | None) -> None:
    if cursor is not None:
        response.headers["X-Next-Cursor"] = cursor


def _task_routes() -> APIRouter:
    router = APIRouter(prefix="/tasks", tags=["tasks"])

    @router.post(
        "",
        status_code=201,
        response_model=TaskOut,
        responses={200: {"model": TaskOut, "description": "Repeat of an idempotent request."}},
    )
    def create_task(
        spec: TaskSpec,
        tasks: Tasks,
        actor: CurrentActor,
        response: Response,
        execute: Annotated[bool, Query(description="Queue the task right away.")] = False,
        idempotency_key: Annotated[
            str | None,
            Header(
                max_length=200,
                description="Same key and body: the first task is returned (200); "
                "same key, other body: 409.",
            ),
        ] = None,
    ) -> TaskOut:
        """Create a task. It does not run until executed (or ``?execute=true``)."""
        if idempotency_key is None:
            return TaskOut.from_row(tasks.create_task(spec, execute=execute, actor=actor))
        row, created = tasks.create_task_idempotent(
            spec, idempotency_key, execute=execute, actor=actor
        )
        if not created:
            response.status_code = 200
        return TaskOut.from_row(row)

    @router.get("", response_model=list[TaskOut])
    def list_tasks(
        tasks: Tasks,
        actor: CurrentActor,
        response: Response,
        filters: Annotated[TaskFilters, Depends()],
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
        cursor: Annotated[
            str | None, Query(max_length=200, description="From the X-Next-Cursor header.")
        ] = None,
    ) -> list[TaskOut]:
        """Tasks by filters and sort keys; page on with the ``X-Next-Cursor`` header's value.

        Pages come from a snapshot of the first request's order: a task that exists
        throughout appears exactly once, whatever is inserted or updated between pages.
        """
        query = filters.to_query(tasks.scheme)
        page = tasks.page_tasks(query, actor=actor, limit=limit, cursor=cursor)
        _set_cursor(response, page.next_cursor)
        return [TaskOut.from_row(r) for r in page.rows]

    @router.get("/search", response_model=list[TaskOut])
    def search_tasks(
        tasks: Tasks,
        actor: CurrentActor,
        response: Response,
        q: Annotated[str, Query(min_length=1, max_length=10_000, description="Words to find.")],
        filters: Annotated[TaskFilters, Depends()],
        fields: Annotated[
            list[str] | None,
            Query(description="Any of name, tags, metadata.description (default: all)."),
        ] = None,
        limit: Annotated[int, Query(ge=1, le=1000)] = 50,
        cursor: Annotated[str | None, Query(max_length=200)] = None,
    ) -> list[TaskOut]:
        """Full-text search over tasks, best match first. Every character of ``q`` is taken
        literally: quotes and operators are not a query language here."""
        query = filters.to_query(tasks.scheme, text=q, fields=split_values(fields))
        page = tasks.page_tasks(query, actor=actor, limit=limit, cursor=cursor)
        _set_cursor(response, page.next_cursor)
        return [TaskOut.from_row(r) for r in page.rows]

    @router.get("/system/health")
    def health(tasks: Tasks, actor: CurrentActor, response: Response) -> dict[str, object]:
        """Store reachability and task counts by status."""
        report = tasks.health(actor)
        if report["status"] != "healthy":
            response.status_code = 503
        report["version"] = __version__
        return report

    @router.get("/dead-letters", response_model=list[TaskOut])
    def dead_letters(
        tasks: Tasks, actor: CurrentActor, limit: Annotated[int, Query(ge=1, le=1000)] = 100
    ) -> list[TaskOut]:
        """Tasks whose attempts ran out, with their last error. Retry requeues one."""
        return [TaskOut.from_row(r) for r in tasks.list_dead_letters(limit=limit, actor=actor)]

    @router.get("/{task_id}", response_model=TaskOut)
    def get_task(task_id: str, tasks: Tasks, actor: CurrentActor) -> TaskOut:
        return TaskOut.from_row(tasks.get_task(task_id, actor))

    @router.post("/{task_id}/execute", status_code=202, response_model=TaskOut)
    def execute_task(task_id: str, tasks: Tasks, actor: CurrentActor) -> TaskOut:
        """Queue the task for a worker."""
        return TaskOut.from_row(tasks.execute_task(task_id, actor=actor))

    @router.get("/{task_id}/status", response_model=TaskStatusOut)
    def task_status(task_id: str, tasks: Tasks, actor: CurrentActor) -> TaskStatusOut:
        """State, attempts, progress, and for a task that is not running, why it waits."""
        row = tasks.get_task(task_id, actor)
        return TaskStatusOut.from_row(row, waiting=tasks.waiting_reason(row, actor))

    @router.get("/{task_id}/metrics")
    def task_metrics(task_id: str, tasks: Tasks, actor: CurrentActor) -> dict[str, Any]:
        """Queue wait, run time per attempt, CPU and memory where measured, records/s."""
        return tasks.get_metrics(task_id, actor)

    @router.put("/{task_id}", response_model=TaskOut)
    def update_task(task_id: str, update: TaskUpdate, tasks: Tasks, actor: CurrentActor) -> TaskOut:
        """Change a task; refused (409) while a worker holds it."""
        return TaskOut.from_row(tasks.update_task(task_id, update, actor=actor))

    @router.delete("/{task_id}", status_code=204)
    def delete_task(task_id: str, tasks: Tasks, actor: CurrentActor) -> Response:
        """Soft delete; a running task must be cancelled first (409)."""
        tasks.delete_task(task_id, actor=actor)
        return Response(status_code=204)

    for action, summary in (
        ("cancel", "Cancel: at once, or at the handler's next checkpoint if it is running."),
        ("pause", "Pause: a running handler stops at its next checkpoint; resume continues."),
        ("resume", "Resume a paused task from its last checkpoint."),
        ("retry", "Requeue a failed, timed-out, cancelled or dead-lettered task."),
    ):
        router.add_api_route(
            f"/{{task_id}}/{action}",
            _control_endpoint(action),
            methods=["POST"],
            status_code=202,
            response_model=TaskOut,
            summary=summary,
            name=f"{action}_task",
        )

    @router.get("/{task_id}/history", response_model=list[ExecutionOut])
    def task_history(task_id: str, tasks: Tasks, actor: CurrentActor) -> list[ExecutionOut]:
        """Every attempt, oldest first."""
        return [ExecutionOut.from_row(r) for r in tasks.get_history(task_id, actor)]

    @router.get("/{task_id}/logs", response_model=list[LogOut])
    def task_logs(
        task_id: str,
        tasks: Tasks,
        actor: CurrentActor,
        after: Annotated[
            int, Query(ge=0, le=2**62, description="Only lines after this log id.")
        ] = 0,
        limit: Annotated[int, Query(ge=1, le=10_000)] = 1000,
    ) -> list[LogOut]:
        return [
            LogOut.from_row(r)
            for r in tasks.get_logs(task_id, after_id=after, limit=limit, actor=actor)
        ]

    return router


def _control_endpoint(action: str) -> Callable[..., TaskOut]:
    def endpoint(task_id: str, tasks: Tasks, actor: CurrentActor) -> TaskOut:
        return TaskOut.from_row(tasks.control_task(task_id, action, actor=actor))

    return endpoint


def _indicator_routes() -> APIRouter:
    router = APIRouter(prefix="/indicators", tags=["indicators"])

    @router.get("", response_model=list[IndicatorOut])
    def list_indicators(
        request: Request,
        actor: CurrentActor,
        type: str | None = None,
        value: str | None = None,
        source: str | None = None,
        tag: Annotated[str | None, Query(max_length=200, description="e.g. private")] = None,
        seen_after: Annotated[
            datetime | None, Query(alias="seenAfter", description="Last seen at or after.")
        ] = None,
        limit: Annotated[int, Query(ge=1, le=10_000)] = 100,
        offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0,
    ) -> list[IndicatorOut]:
        """Stored indicators, most recently seen first."""
        runtime: Runtime = request.app.state.runtime
        authorize(actor.principal, Permission.INDICATOR_READ)
        if type is not None and type not in indicator_types.TYPES:
            raise RequestValidationError(
                [
                    {
                        "loc": ("query", "type"),
                        "msg": f"unknown indicator type; known: {', '.join(indicator_types.TYPES)}",
                        "input": type,
                        "type": "value_error",
                    }
                ]
            )
        if value is not None:
            # Look up what a user pastes from a report: defanged or upper-case forms too.
            try:
                parsed = indicator_types.parse_indicator(value, hint=type)
                value, type = parsed.value, type or parsed.type
            except indicator_types.InvalidIndicator:
                pass
        rows = runtime.store.list_indicators(
            max_classification=actor.principal.clearance.rank,
            type=type,
            value=value,
            source=source,
            limit=limit,
            offset=offset,
            tag=tag,
            seen_after=epoch_of(seen_after, "seenAfter"),
        )
        return [IndicatorOut.from_row(r) for r in rows]

    return router
