"""Workflow definitions as DAGs of steps, and the pure rules that run them.

A workflow is a set of steps; each step becomes one task, or one task per item when it fans
out (``forEach``). A step waits for every task of the steps it ``dependsOn`` (fan-in), and
its ``triggerRule`` decides, once they have all finished, whether it runs:

* ``all_success`` (default): every upstream task completed. An upstream that was skipped
  skips this step too; one that failed counts as a failure (see below).
* ``none_failed_min_one_success``: no upstream failed and at least one completed; skipped
  upstreams are tolerated (a join after a branch). All skipped: this step is skipped.
* ``all_done``: runs whatever its upstreams' outcomes (clean-up, reporting).

A ``branch`` step's result names the downstream step(s) to follow (``{"branch": [...]}``);
its other direct dependants see it as skipped. A ``when`` condition (CEL, see
:mod:`phantom_spire.engine.conditions`) over ``params`` and the direct upstream steps'
results may skip a step whose rule said run. A skipped step's dependants follow their own
rules, so a skip travels down a chain until a join that tolerates it.

When an upstream failed (failed, timed out, dead-lettered or cancelled), the workflow's
``failurePolicy`` decides: ``fail_fast`` cancels every task that has not started;
``continue`` cancels only what needs the failed task (an ``all_done`` step still runs) and
lets independent branches finish; ``compensate`` cancels what has not started and queues the
compensation task of every step that had completed, to roll its work back.

Nothing here touches the store: :mod:`phantom_spire.store.workflow_store` applies the rules.
"""

from __future__ import annotations

import logging
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from pydantic.alias_generators import to_camel

from phantom_spire.engine import conditions
from phantom_spire.errors import SpireError

__all__ = [
    "ApprovalSpec",
    "CompensationSpec",
    "InvalidWorkflow",
    "ParameterSpec",
    "PlannedTask",
    "StepSpec",
    "WorkflowCycle",
    "WorkflowDefinition",
    "decide",
    "find_cycle",
    "plan_tasks",
    "validate_parameters",
]

logger = logging.getLogger(__name__)

TriggerRule = Literal["all_success", "none_failed_min_one_success", "all_done"]
FailurePolicy = Literal["fail_fast", "continue", "compensate"]
Decision = Literal["run", "skip", "upstream_failed"]

MAX_TASKS_PER_WORKFLOW = 100_000


class InvalidWorkflow(SpireError):
    """A workflow definition or its parameters are invalid; nothing was created."""

    def __init__(self, message: str, *, field: str | None = None, value: object = None) -> None:
        super().__init__(message)
        self.field = field
        self.value = value


class WorkflowCycle(InvalidWorkflow):
    """The steps' dependencies form a cycle; the message names it."""

    def __init__(self, cycle: list[str]) -> None:
        path = " -> ".join(cycle)
        super().__init__(f"steps depend on each other in a cycle: {path}", value=cycle)
        self.cycle = cycle


class _Camel(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")


class ParameterSpec(_Camel):
    """A typed template parameter."""

    type: Literal["string", "integer", "number", "boolean", "list", "object"]
    required: bool = False
    default: Any = None
    description: str = ""
    items: Literal["string", "integer", "number", "boolean", "object"] | None = None
    enum: list[Any] | None = None
    min_items: int | None = Field(default=None, ge=0)


class ApprovalSpec(_Camel):
    """A human decision: approve or reject within ``timeout_seconds``, else ``default``."""

    timeout_seconds: float = Field(default=86_400.0, gt=0)
    default: Literal["approve", "reject"] = "reject"
    prompt: str = ""


class CompensationSpec(_Camel):
    """The task that undoes a completed step when the workflow fails (``compensate``)."""

    handler: str
    parameters: dict[str, Any] = Field(default_factory=dict)


class StepSpec(_Camel):
    """One step of a workflow."""

    id: str = Field(pattern=r"^[a-z][a-z0-9_]{0,63}$")
    kind: Literal["task", "approval", "branch"] = "task"
    handler: str | None = None
    type: str | None = Field(default=None, pattern=r"^[a-z][a-z0-9_]*$")
    parameters: dict[str, Any] = Field(default_factory=dict)
    depends_on: list[str] = Field(default_factory=list)
    when: str | None = None
    for_each: str | list[Any] | None = None
    trigger_rule: TriggerRule = "all_success"
    gather: bool = Field(
        default=False, description="Pass the upstream steps' results as parameter 'upstream'."
    )
    priority: Literal["critical", "high", "normal", "low", "background"] = "normal"
    compensate: CompensationSpec | None = None
    approval: ApprovalSpec | None = None

    @model_validator(mode="after")
    def _check_kind(self) -> StepSpec:
        if self.kind == "approval" and self.approval is None:
            self.approval = ApprovalSpec()
        if self.kind == "task" and not self.handler:
            raise ValueError(f"step {self.id!r} needs a handler")
        return self

    @property
    def handler_name(self) -> str:
        """The handler the step's tasks run (approvals and branches have built-in ones)."""
        if self.kind == "approval":
            return "approval"
        return self.handler or "branch"


class WorkflowDefinition(_Camel):
    """A workflow template: versioned, with typed parameters and a DAG of steps."""

    name: str = Field(min_length=1, max_length=120, pattern=r"^[A-Za-z][A-Za-z0-9_.-]*$")
    version: int = Field(default=1, ge=1)
    description: str = ""
    parameters: dict[str, ParameterSpec] = Field(default_factory=dict)
    failure_policy: FailurePolicy = "fail_fast"
    max_parallel: int = Field(default=10, ge=1, le=10_000)
    steps: list[StepSpec] = Field(min_length=1)

    @model_validator(mode="after")
    def _check_graph(self) -> WorkflowDefinition:
        ids = [s.id for s in self.steps]
        duplicates = sorted(i for i, n in Counter(ids).items() if n > 1)
        if duplicates:
            raise ValueError(f"step ids must be unique; repeated: {duplicates!r}")
        known = set(ids)
        for step in self.steps:
            unknown = [d for d in step.depends_on if d not in known]
            if unknown:
                raise ValueError(
                    f"step {step.id!r} depends on unknown step(s) {unknown!r}; "
                    f"steps are {sorted(known)!r}"
                )
        return self

    @classmethod
    def parse(cls, data: Any) -> WorkflowDefinition:
        """Validate a mapping (from YAML or JSON) into a definition, checking the whole DAG.

        Raises:
            WorkflowCycle: If the steps' dependencies form a cycle.
            InvalidWorkflow: If anything else is wrong; the message names the field and value.
        """
        try:
            definition = cls.model_validate(data)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"]) or "definition"
            raise InvalidWorkflow(
                f"invalid workflow definition at {where!r}: {first['msg']}",
                field=where,
                value=first.get("input"),
            ) from exc
        cycle = find_cycle({s.id: s.depends_on for s in definition.steps})
        if cycle:
            raise WorkflowCycle(cycle)
        definition._check_expressions()
        return definition

    def step(self, step_id: str) -> StepSpec:
        index = self.__dict__.get("_index")
        if index is None:
            index = self.__dict__["_index"] = {s.id: s for s in self.steps}
        return index[step_id]

    def _check_expressions(self) -> None:
        for step in self.steps:
            texts = [step.when] if step.when else []
            texts += conditions.expressions_in(step.parameters)
            texts += conditions.expressions_in(step.for_each)
            for text in texts:
                try:
                    conditions.check_expression(text)
                except conditions.ConditionError as exc:
                    raise InvalidWorkflow(
                        f"step {step.id!r}: {exc}", field=f"steps.{step.id}", value=text
                    ) from exc


def find_cycle(graph: dict[str, list[str]]) -> list[str] | None:
    """A cycle in ``graph`` (node -> nodes it depends on) as a closed path, or None.

    Iterative depth-first search, so a 10,000-step chain cannot overflow the stack. The
    path is given in dependency order and repeats its first node at the end: ``a -> b -> a``.
    """
    white, grey, black = 0, 1, 2
    colour = dict.fromkeys(graph, white)
    for root in graph:
        if colour[root] != white:
            continue
        path = [root]
        stack = [iter(graph[root])]
        colour[root] = grey
        while stack:
            nxt = next(stack[-1], None)
            if nxt is None:
                colour[path.pop()] = black
                stack.pop()
                continue
            if colour.get(nxt, black) == grey:
                return [*path[path.index(nxt) :], nxt]
            if colour.get(nxt, black) == white:
                colour[nxt] = grey
                path.append(nxt)
                stack.append(iter(graph[nxt]))
    return None


def validate_parameters(definition: WorkflowDefinition, given: dict[str, Any]) -> dict[str, Any]:
    """Check ``given`` against the template's typed parameters; return them with defaults.

    Raises:
        InvalidWorkflow: Naming the parameter and the offending value.
    """
    unknown = sorted(set(given) - set(definition.parameters))
    if unknown:
        raise InvalidWorkflow(
            f"unknown parameter(s) {unknown!r} for template {definition.name!r}; "
            f"it takes {sorted(definition.parameters)!r}",
            field="parameters",
            value=unknown,
        )
    values: dict[str, Any] = {}
    for name, spec in definition.parameters.items():
        if name not in given:
            if spec.required:
                raise InvalidWorkflow(
                    f"parameter {name!r} of template {definition.name!r} is required",
                    field=f"parameters.{name}",
                )
            values[name] = spec.default
            continue
        values[name] = _check_value(definition.name, name, spec, given[name])
    return values


_PY_TYPES: dict[str, tuple[type, ...]] = {
    "string": (str,),
    "integer": (int,),
    "number": (int, float),
    "boolean": (bool,),
    "list": (list,),
    "object": (dict,),
}


def _is_type(kind: str, value: Any) -> bool:
    if kind in ("integer", "number") and isinstance(value, bool):
        return False
    return isinstance(value, _PY_TYPES[kind])


def _check_value(template: str, name: str, spec: ParameterSpec, value: Any) -> Any:
    where = f"parameters.{name}"
    if not _is_type(spec.type, value):
        raise InvalidWorkflow(
            f"parameter {name!r} of template {template!r} must be of type {spec.type!r}, "
            f"got {value!r}",
            field=where,
            value=value,
        )
    if spec.enum is not None and value not in spec.enum:
        raise InvalidWorkflow(
            f"parameter {name!r} must be one of {spec.enum!r}, got {value!r}",
            field=where,
            value=value,
        )
    if spec.type == "list":
        if spec.min_items is not None and len(value) < spec.min_items:
            raise InvalidWorkflow(
                f"parameter {name!r} needs at least {spec.min_items} item(s), got {value!r}",
                field=where,
                value=value,
            )
        bad = [v for v in value if spec.items and not _is_type(spec.items, v)]
        if bad:
            raise InvalidWorkflow(
                f"items of parameter {name!r} must be of type {spec.items!r}, got {bad[0]!r}",
                field=where,
                value=bad[0],
            )
    return value


@dataclass
class PlannedTask:
    """One task a workflow will create, before it has an id."""

    step: StepSpec
    seq: int
    item: Any
    parameters: dict[str, Any]
    depends_on: list[int] = field(default_factory=list)
    kind: str = "task"


def plan_tasks(definition: WorkflowDefinition, params: dict[str, Any]) -> list[PlannedTask]:
    """Expand the steps into tasks: fan-out per item, edges to every upstream task (fan-in).

    Compensation tasks come last, with no dependencies; they wait ``pending`` and are only
    queued if the workflow fails under the ``compensate`` policy.

    Raises:
        InvalidWorkflow: If a ``forEach`` does not give a list, a parameter expression fails,
            or the workflow would have more than ``MAX_TASKS_PER_WORKFLOW`` tasks.
    """
    planned: list[PlannedTask] = []
    by_step: dict[str, list[int]] = {}
    for step in _topological(definition):
        deps = [i for up in step.depends_on for i in by_step[up]]
        indexes: list[int] = []
        for item in _items(step, params):
            scope = {"params": params, "item": item}
            rendered = _render(step, step.parameters, scope)
            task = PlannedTask(step, len(planned), item, rendered, list(deps), step.kind)
            indexes.append(task.seq)
            planned.append(task)
            if len(planned) > MAX_TASKS_PER_WORKFLOW:
                raise InvalidWorkflow(
                    f"workflow would create more than {MAX_TASKS_PER_WORKFLOW} tasks",
                    field=f"steps.{step.id}.forEach",
                )
        by_step[step.id] = indexes
    for step in definition.steps:
        if step.compensate is not None:
            rendered = _render(step, step.compensate.parameters, {"params": params, "item": None})
            planned.append(PlannedTask(step, len(planned), None, rendered, [], "compensation"))
    return planned


def _topological(definition: WorkflowDefinition) -> list[StepSpec]:
    """Kahn's algorithm, keeping the written order among steps that are ready together."""
    waiting = {s.id: len(set(s.depends_on)) for s in definition.steps}
    dependants: dict[str, list[str]] = {s.id: [] for s in definition.steps}
    for step in definition.steps:
        for up in set(step.depends_on):
            dependants[up].append(step.id)
    ready = deque(s.id for s in definition.steps if waiting[s.id] == 0)
    order: list[StepSpec] = []
    while ready:
        step_id = ready.popleft()
        order.append(definition.step(step_id))
        for down in dependants[step_id]:
            waiting[down] -= 1
            if waiting[down] == 0:
                ready.append(down)
    return order


def _items(step: StepSpec, params: dict[str, Any]) -> list[Any]:
    if step.for_each is None:
        return [None]
    items = _render(step, step.for_each, {"params": params, "item": None})
    if not isinstance(items, list):
        raise InvalidWorkflow(
            f"forEach of step {step.id!r} must give a list, got {items!r}",
            field=f"steps.{step.id}.forEach",
            value=items,
        )
    return items


def _render(step: StepSpec, value: Any, scope: dict[str, Any]) -> Any:
    try:
        return conditions.render(value, scope)
    except conditions.ConditionError as exc:
        raise InvalidWorkflow(f"step {step.id!r}: {exc}", field=f"steps.{step.id}") from exc


def decide(rule: str, *, total: int, ok: int, skipped: int, failed: int) -> Decision:
    """What a step does once all ``total`` of its upstream tasks have finished."""
    if total == 0:
        return "run"
    if rule == "all_done":
        return "run"
    if failed:
        return "upstream_failed"
    if rule == "none_failed_min_one_success":
        return "run" if ok else "skip"
    return "skip" if skipped else "run"
