"""WorkflowService: templates, starting workflows, their progress, and approvals.

Templates are YAML files: the built-in ones ship in ``phantom_spire/templates``; users add
theirs in the folder named by ``SPIRE_TEMPLATE_DIR``. A template is identified by name and
version; several versions may sit side by side and the newest is used unless a version is
asked for. A workflow stores the whole definition it started from, so editing a template
never changes a workflow that is already running.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydantic.alias_generators import to_camel

from phantom_spire.engine import conditions
from phantom_spire.engine.lifecycle import Priority, TaskStatus
from phantom_spire.engine.workflows import (
    InvalidWorkflow,
    PlannedTask,
    WorkflowDefinition,
    plan_tasks,
    validate_parameters,
)
from phantom_spire.errors import InvalidTaskDefinition
from phantom_spire.ids import new_id
from phantom_spire.security import Permission, authorize
from phantom_spire.services.identity import SYSTEM, Actor
from phantom_spire.services.tasks import TaskDefinition, TaskService, TaskSpec
from phantom_spire.store.workflow_store import WorkflowStore

__all__ = [
    "BUILTIN_TEMPLATE_DIR",
    "TemplateNotFound",
    "TemplateRegistry",
    "WorkflowRequest",
    "WorkflowService",
]

logger = logging.getLogger(__name__)

BUILTIN_TEMPLATE_DIR = Path(__file__).resolve().parent.parent / "templates"


class TemplateNotFound(InvalidWorkflow):
    """No template has that name (and version)."""


class WorkflowRequest(BaseModel):
    """Start a workflow from a template and parameters, or from an inline definition."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")

    template: str | None = None
    version: int | None = Field(default=None, ge=1)
    parameters: dict[str, Any] = Field(default_factory=dict)
    definition: dict[str, Any] | None = None
    name: str | None = Field(default=None, max_length=200)

    @model_validator(mode="after")
    def _one_source(self) -> WorkflowRequest:
        if (self.template is None) == (self.definition is None):
            raise ValueError("give exactly one of 'template' and 'definition'")
        return self


@dataclass(frozen=True)
class _Template:
    definition: WorkflowDefinition
    path: Path
    builtin: bool


class TemplateRegistry:
    """Templates read from the built-in folder and the user's folder."""

    def __init__(self, folders: Iterable[Path]) -> None:
        self.folders = [Path(f) for f in folders]

    def _load(self) -> dict[tuple[str, int], _Template]:
        # Read on every call: a user adding or editing a file needs no restart, and running
        # workflows are unaffected because they keep their own copy of the definition.
        found: dict[tuple[str, int], _Template] = {}
        for folder in self.folders:
            if not folder.is_dir():
                continue
            builtin = folder == BUILTIN_TEMPLATE_DIR
            for path in sorted([*folder.glob("*.yaml"), *folder.glob("*.yml")]):
                try:
                    definition = WorkflowDefinition.parse(yaml.safe_load(path.read_text("utf-8")))
                except (InvalidWorkflow, yaml.YAMLError, OSError) as exc:
                    logger.error(
                        "template %s is invalid and was ignored: %s",
                        path,
                        exc,
                        extra={"event": "template_invalid", "path": str(path)},
                    )
                    continue
                found[(definition.name, definition.version)] = _Template(definition, path, builtin)
        return found

    def list(self) -> list[_Template]:
        return [t for _, t in sorted(self._load().items())]

    def get(self, name: str, version: int | None = None) -> WorkflowDefinition:
        templates = self._load()
        versions = sorted(v for (n, v) in templates if n == name)
        if not versions:
            names = sorted({n for n, _ in templates})
            raise TemplateNotFound(
                f"no template named {name!r}; known templates: {names!r}",
                field="template",
                value=name,
            )
        chosen = versions[-1] if version is None else version
        if chosen not in versions:
            raise TemplateNotFound(
                f"template {name!r} has no version {version!r}; versions: {versions!r}",
                field="version",
                value=version,
            )
        return templates[(name, chosen)].definition


class WorkflowService:
    """Creates workflows (every step an ordinary task) and reports on them."""

    def __init__(
        self, tasks: TaskService, workflow_store: WorkflowStore, templates: TemplateRegistry
    ) -> None:
        self.tasks = tasks
        self.store = workflow_store
        self.templates = templates

    def list_templates(self, *, actor: Actor = SYSTEM) -> list[dict[str, Any]]:
        authorize(actor.principal, Permission.WORKFLOW_READ)
        return [
            {
                "name": t.definition.name,
                "version": t.definition.version,
                "description": t.definition.description,
                "builtin": t.builtin,
                "parameters": {
                    k: p.model_dump(by_alias=True, exclude_none=True)
                    for k, p in t.definition.parameters.items()
                },
                "steps": [s.id for s in t.definition.steps],
            }
            for t in self.templates.list()
        ]

    def create_workflow(self, request: WorkflowRequest, *, actor: Actor = SYSTEM) -> dict[str, Any]:
        """Validate everything, then create the workflow and all its tasks in one transaction.

        Raises:
            InvalidWorkflow: Bad template, parameters, DAG (a cycle is named) or step.
        """
        authorize(actor.principal, Permission.WORKFLOW_RUN)
        if request.template is not None:
            definition = self.templates.get(request.template, request.version)
        else:
            definition = WorkflowDefinition.parse(request.definition)
        params = validate_parameters(definition, request.parameters)
        planned = plan_tasks(definition, params)
        workflow_id = new_id()
        rows = [self._task_row(workflow_id, definition, p, params, actor) for p in planned]
        ids = [r["id"] for r in rows]
        links = [_link(workflow_id, ids[p.seq], p) for p in planned]
        edges = [
            {"task_id": ids[p.seq], "depends_on_id": ids[d]} for p in planned for d in p.depends_on
        ]
        total = sum(1 for p in planned if p.kind != "compensation")
        active = _admit_roots(definition, planned, rows, links, self.tasks.store.clock())
        now = self.tasks.store.clock()
        workflow = {
            "id": workflow_id,
            "name": request.name or definition.name,
            "template": request.template,
            "template_version": definition.version if request.template else None,
            "definition": definition.model_dump(mode="json", by_alias=True, exclude_none=True),
            "parameters": params,
            "status": "running",
            "failure_policy": definition.failure_policy,
            "max_parallel": definition.max_parallel,
            "active_tasks": active,
            "done_tasks": 0,
            "failed_tasks": 0,
            "total_tasks": total,
            "owner": actor.user_id,
            "created_at": now,
            "updated_at": now,
        }
        audit = actor.audit(
            "workflow.create",
            workflow_id,
            target_type="workflow",
            template=request.template,
            tasks=len(rows),
        )
        self.store.insert_workflow(workflow, rows, links, edges, audit=audit)
        conditional_roots = [
            ids[p.seq]
            for p in planned
            if not p.depends_on and p.kind != "compensation" and p.step.when
        ]
        if conditional_roots:
            self.store.resolve_tasks(workflow_id, conditional_roots)
        logger.info(
            "created workflow %s (%s, %d tasks)",
            workflow_id,
            definition.name,
            len(rows),
            extra={"event": "workflow_created", "workflow_id": workflow_id},
        )
        return self.get_workflow(workflow_id, actor=actor)

    def _task_row(
        self,
        workflow_id: str,
        definition: WorkflowDefinition,
        planned: PlannedTask,
        params: dict[str, Any],
        actor: Actor,
    ) -> dict[str, Any]:
        step = planned.step
        handler = step.handler_name
        parameters = planned.parameters
        if planned.kind == "compensation":
            assert step.compensate is not None
            handler = step.compensate.handler
        elif step.kind == "approval":
            assert step.approval is not None
            prompt = conditions.render(step.approval.prompt, {"params": params, "item": None})
            parameters = {"prompt": prompt}
        suffix = "" if planned.item is None else f"[{planned.seq}]"
        label = "compensate " if planned.kind == "compensation" else ""
        spec = TaskSpec(
            name=f"{definition.name}/{label}{step.id}{suffix}"[:200],
            type=step.type or handler,
            priority=Priority(step.priority),
            definition=TaskDefinition(handler=handler, parameters=parameters),
            metadata={"workflowId": workflow_id, "step": step.id},
        )
        try:
            # The task service's own row builder: same validation and defaults as any task.
            row = self.tasks._build_row(spec, execute=False, actor=actor)
        except InvalidTaskDefinition as exc:
            raise InvalidWorkflow(
                f"step {step.id!r}: {exc}", field=f"steps.{step.id}", value=exc.value
            ) from exc
        if planned.kind != "compensation":
            row["status"] = str(TaskStatus.BLOCKED)
        return row

    def get_workflow(self, workflow_id: str, *, actor: Actor = SYSTEM) -> dict[str, Any]:
        """The workflow with per-step status counts and progress."""
        authorize(actor.principal, Permission.WORKFLOW_READ)
        workflow = self.store.get_workflow(workflow_id)
        tasks = self.store.list_workflow_tasks(workflow_id)
        steps: dict[str, dict[str, Any]] = {}
        for task in tasks:
            key = task["step"] if task["kind"] != "compensation" else f"{task['step']}:compensate"
            step = steps.setdefault(
                key,
                {"step": task["step"], "kind": task["kind"], "tasks": 0, "statuses": {}, "ids": []},
            )
            step["tasks"] += 1
            step["statuses"][task["status"]] = step["statuses"].get(task["status"], 0) + 1
            step["ids"].append(task["task_id"])
            if task["kind"] == "approval":
                step["approval"] = {
                    "dueAt": task["approval_due_at"],
                    "decision": task["decision"],
                    "waiting": task["approval_due_at"] is not None,
                }
        for step in steps.values():
            step["status"] = _step_status(step["statuses"])
        total = workflow["total_tasks"]
        return {
            "id": workflow["id"],
            "name": workflow["name"],
            "template": workflow["template"],
            "templateVersion": workflow["template_version"],
            "status": workflow["status"],
            "failurePolicy": workflow["failure_policy"],
            "maxParallel": workflow["max_parallel"],
            "parameters": workflow["parameters"],
            "progress": {
                "done": workflow["done_tasks"],
                "total": total,
                "failed": workflow["failed_tasks"],
                "active": workflow["active_tasks"],
                "percent": round(100 * workflow["done_tasks"] / total, 1) if total else 100.0,
            },
            "createdAt": workflow["created_at"],
            "finishedAt": workflow["finished_at"],
            "steps": list(steps.values()),
        }

    def decide_approval(
        self, workflow_id: str, step: str, approve: bool, *, note: str = "", actor: Actor = SYSTEM
    ) -> dict[str, Any]:
        """Approve or reject the waiting approval step ``step`` of a workflow."""
        authorize(actor.principal, Permission.WORKFLOW_RUN)
        tasks = [
            t
            for t in self.store.list_workflow_tasks(workflow_id)
            if t["step"] == step and t["kind"] == "approval"
        ]
        if not tasks:
            raise InvalidWorkflow(
                f"workflow {workflow_id} has no approval step {step!r}", field="step", value=step
            )
        action = "approve" if approve else "reject"
        for task in tasks:
            self.store.decide_approval(
                task["task_id"],
                approve,
                actor=actor.user_id,
                note=note,
                audit=actor.audit(
                    f"workflow.{action}",
                    task["task_id"],
                    workflowId=workflow_id,
                    step=step,
                    note=note or None,
                ),
            )
        return self.get_workflow(workflow_id, actor=actor)


def _link(workflow_id: str, task_id: str, planned: PlannedTask) -> dict[str, Any]:
    return {
        "task_id": task_id,
        "workflow_id": workflow_id,
        "step": planned.step.id,
        "seq": planned.seq,
        "kind": planned.kind if planned.kind == "compensation" else planned.step.kind,
        "item": planned.item,
        "deps_total": len(planned.depends_on),
        "deps_done": 0,
        "deps_ok": 0,
        "deps_skipped": 0,
        "deps_failed": 0,
        "ready": False,
        "admitted": False,
        "approval_due_at": None,
    }


def _admit_roots(
    definition: WorkflowDefinition,
    planned: list[PlannedTask],
    rows: list[dict[str, Any]],
    links: list[dict[str, Any]],
    now: float,
) -> int:
    """Queue the tasks without dependencies, up to the parallelism limit; hold the rest.

    Roots with a ``when`` condition stay blocked here and are decided right after insert.
    """
    active = 0
    for p, row, link in zip(planned, rows, links, strict=True):
        if p.depends_on or p.kind == "compensation":
            continue
        if p.step.kind == "approval":
            assert p.step.approval is not None
            link["approval_due_at"] = now + p.step.approval.timeout_seconds
        elif p.step.when:
            continue  # decided after insert, by the same rules as any other step
        elif active < definition.max_parallel:
            row.update(
                status=str(TaskStatus.QUEUED),
                available_at=now,
                enqueued_at=now,
                first_enqueued_at=now,
            )
            link["admitted"] = True
            active += 1
        else:
            link["ready"] = True
    return active


def _step_status(statuses: dict[str, int]) -> str:
    if len(statuses) == 1:
        return next(iter(statuses))
    for status in ("running", "queued", "blocked", "failed", "cancelled", "skipped"):
        if statuses.get(status):
            return status
    return "mixed"
