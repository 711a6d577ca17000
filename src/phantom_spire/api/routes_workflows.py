"""Routes for workflows, templates, approvals, schedules and trigger events.

Included before the task routes, so that the static ``/tasks/scheduled`` is not taken for a
task id by ``/tasks/{task_id}``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Annotated, Any, TypeVar

from fastapi import APIRouter, Body, Depends, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from phantom_spire.api.auth import CurrentActor
from phantom_spire.api.problems import problem
from phantom_spire.engine.workflows import InvalidWorkflow
from phantom_spire.services.schedules import ScheduleService
from phantom_spire.services.workflows import WorkflowRequest, WorkflowService
from phantom_spire.store.workflow_store import WorkflowNotFound

__all__ = ["router"]

logger = logging.getLogger(__name__)

T = TypeVar("T")


def _workflows(request: Request) -> WorkflowService:
    return request.app.state.runtime.workflows  # type: ignore[no-any-return]


def _schedules(request: Request) -> ScheduleService:
    return request.app.state.runtime.schedules  # type: ignore[no-any-return]


Workflows = Annotated[WorkflowService, Depends(_workflows)]
Schedules = Annotated[ScheduleService, Depends(_schedules)]


class Decision(BaseModel):
    note: str = Field(default="", max_length=2000)


class EventIn(BaseModel):
    type: str = Field(pattern=r"^(data_change|task_completed|indicator_seen)$")
    source: str | None = None
    data: dict[str, Any] = Field(default_factory=dict)
    id: str | None = Field(default=None, max_length=120, description="Makes delivery idempotent.")


def _answer(call: Callable[[], T]) -> T | JSONResponse:
    """Turn the workflow layer's errors into problem details."""
    try:
        return call()
    except WorkflowNotFound as exc:
        return problem(404, "Workflow not found", str(exc), "workflow-not-found")
    except InvalidWorkflow as exc:
        errors = [{"field": exc.field, "value": _plain(exc.value), "message": str(exc)}]
        return problem(422, "Invalid workflow", str(exc), "invalid-workflow", errors=errors)


def _plain(value: Any) -> Any:
    return (
        value if isinstance(value, str | int | float | bool | list | dict | None) else repr(value)
    )


def router() -> APIRouter:
    """The workflow and schedule routes (mounted under ``/api/v1``)."""
    api = APIRouter()

    @api.get("/workflows/templates", tags=["workflows"])
    def list_templates(workflows: Workflows, actor: CurrentActor) -> Any:
        """Built-in and user templates, each with its version, parameters and steps."""
        return workflows.list_templates(actor=actor)

    @api.post("/workflows", status_code=201, tags=["workflows"])
    def create_workflow(body: WorkflowRequest, workflows: Workflows, actor: CurrentActor) -> Any:
        """Start a workflow from a template and parameters (or an inline definition)."""
        return _answer(lambda: workflows.create_workflow(body, actor=actor))

    @api.get("/workflows/{workflow_id}", tags=["workflows"])
    def get_workflow(workflow_id: str, workflows: Workflows, actor: CurrentActor) -> Any:
        """Status, progress, and per-step task counts by status."""
        return _answer(lambda: workflows.get_workflow(workflow_id, actor=actor))

    for verb, approve in (("approve", True), ("reject", False)):
        api.add_api_route(
            f"/workflows/{{workflow_id}}/steps/{{step}}/{verb}",
            _decision_endpoint(approve),
            methods=["POST"],
            tags=["workflows"],
            name=f"{verb}_step",
            summary=f"{verb.capitalize()} a waiting human-approval step.",
        )

    @api.get("/tasks/scheduled", tags=["schedules"])
    def list_scheduled(
        schedules: Schedules,
        actor: CurrentActor,
        include_finished: Annotated[bool, Query(alias="includeFinished")] = False,
    ) -> Any:
        """Active (and broken) schedules with their next fire time."""
        return schedules.list_scheduled(include_finished=include_finished, actor=actor)

    @api.post("/tasks/{task_id}/schedule", status_code=201, tags=["schedules"])
    def schedule_task(
        task_id: str,
        schedules: Schedules,
        actor: CurrentActor,
        spec: Annotated[dict[str, Any], Body(description="A schedule spec (type ...).")],
    ) -> Any:
        """Put a pending task on a schedule: once, recurring, interval or event_driven."""
        return schedules.schedule_task(task_id, spec, actor=actor)

    @api.delete("/tasks/{task_id}/schedule", tags=["schedules"])
    def unschedule_task(task_id: str, schedules: Schedules, actor: CurrentActor) -> Any:
        """Take the task off its schedule; a task still waiting goes back to pending."""
        return schedules.unschedule_task(task_id, actor=actor)

    @api.get("/tasks/{task_id}/schedule", tags=["schedules"])
    def get_schedule(
        task_id: str,
        schedules: Schedules,
        actor: CurrentActor,
        count: Annotated[int, Query(ge=1, le=100)] = 10,
    ) -> Any:
        """The schedule and its next fire times (ten by default), to check before trusting it."""
        described = schedules.get_schedule(task_id, actor=actor)
        described["nextFireTimes"] = schedules.fire_times(task_id, count, actor=actor)
        return described

    @api.post("/events", status_code=202, tags=["schedules"])
    def emit_event(event: EventIn, schedules: Schedules, actor: CurrentActor) -> Any:
        """Deliver an event to event-driven schedules; returns the tasks it queued."""
        queued = schedules.emit_event(event.type, event.source, event.data, event.id, actor=actor)
        return {"queued": queued}

    return api


def _decision_endpoint(approve: bool) -> Callable[..., Any]:
    def endpoint(
        workflow_id: str,
        step: str,
        workflows: Workflows,
        actor: CurrentActor,
        body: Decision | None = None,
    ) -> Any:
        note = body.note if body else ""
        return _answer(
            lambda: workflows.decide_approval(workflow_id, step, approve, note=note, actor=actor)
        )

    return endpoint
