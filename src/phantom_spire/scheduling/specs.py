"""Schedule specs as the REST API takes them, and the fire times they produce.

Four kinds, told apart by ``type``: ``once`` (``runAt``), ``recurring`` (``cron`` read in
``timezone``), ``interval`` (``every`` seconds) and ``event_driven`` (``triggers``). Field names
are snake_case in Python and camelCase on the wire; both spellings are accepted on input, and
``model_dump(by_alias=True)`` gives the wire form.

Bounds are inclusive: a slot at exactly ``startAt`` or ``endAt`` fires. ``maxExecutions``
counts fires of the schedule, which the caller tracks and passes in as ``executions_so_far``.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    PositiveInt,
    PrivateAttr,
    TypeAdapter,
    field_validator,
    model_validator,
)
from pydantic.alias_generators import to_camel

from phantom_spire.scheduling._time import as_utc
from phantom_spire.scheduling.cron import CronSchedule, resolve_timezone
from phantom_spire.scheduling.errors import ScheduleError

__all__ = [
    "EventDrivenSpec",
    "EventTrigger",
    "IntervalSpec",
    "MisfirePolicy",
    "OnceSpec",
    "RecurringSpec",
    "ScheduleSpec",
    "TimedSpec",
    "iter_fire_times",
    "next_fire_times",
    "parse_schedule_spec",
]

_ONE_MICROSECOND = timedelta(microseconds=1)


class _WireModel(BaseModel):
    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
        frozen=True,
    )


class MisfirePolicy(_WireModel):
    """What to do with slots whose time passed while no scheduler was running.

    ``skip`` fires only slots that are at most ``grace_seconds`` late and drops older ones.
    ``catch_up`` fires the newest ``limit`` slots that are due, however late; the default
    (``catch_up`` with limit 1) fires once for a whole outage.

    Attributes:
        kind: ``"skip"`` or ``"catch_up"``.
        limit: Most slots ``catch_up`` fires in one decision; ignored by ``skip``.
        grace_seconds: How late a slot may be and still count as on time rather than missed.
    """

    kind: Literal["skip", "catch_up"] = "catch_up"
    limit: PositiveInt = 1
    grace_seconds: Annotated[float, Field(ge=0)] = 60.0

    @property
    def grace(self) -> timedelta:
        """``grace_seconds`` as a ``timedelta``."""
        return timedelta(seconds=self.grace_seconds)


class _Bounded(_WireModel):
    start_at: AwareDatetime | None = None
    end_at: AwareDatetime | None = None
    max_executions: PositiveInt | None = None
    misfire_policy: MisfirePolicy = Field(default_factory=MisfirePolicy)

    @model_validator(mode="after")
    def _check_window(self) -> _Bounded:
        if self.start_at is not None and self.end_at is not None and self.end_at < self.start_at:
            raise ValueError(
                f"endAt {self.end_at.isoformat()!r} is before startAt "
                f"{self.start_at.isoformat()!r}; endAt must be at or after startAt"
            )
        return self


class OnceSpec(_WireModel):
    """Fire once, at ``run_at`` (wire name ``runAt``)."""

    type: Literal["once"] = "once"
    run_at: AwareDatetime
    misfire_policy: MisfirePolicy = Field(default_factory=MisfirePolicy)


class RecurringSpec(_Bounded):
    """Fire on a cron expression read in an IANA time zone.

    Attributes:
        cron: Five-field expression or macro; see :mod:`phantom_spire.scheduling.cron`.
        timezone: IANA zone name such as ``"Europe/Amsterdam"``; required, because a silent
            UTC default moves every fire by the team's offset.
    """

    type: Literal["recurring"] = "recurring"
    cron: str
    timezone: str
    _schedule: CronSchedule | None = PrivateAttr(default=None)

    @field_validator("timezone")
    @classmethod
    def _check_timezone(cls, value: str) -> str:
        resolve_timezone(value)
        return value

    @model_validator(mode="after")
    def _parse_cron(self) -> RecurringSpec:
        self._schedule = CronSchedule.parse(self.cron, self.timezone)
        return self

    @property
    def schedule(self) -> CronSchedule:
        """The parsed cron expression (parsed once, at validation)."""
        if self._schedule is None:  # model_construct() skips validation
            self._schedule = CronSchedule.parse(self.cron, self.timezone)
        return self._schedule


class IntervalSpec(_Bounded):
    """Fire every ``every`` seconds.

    With ``start_at`` the slots are ``start_at + k * every``. Without it they are counted from
    the ``after`` the caller passes (the last fire, or the creation time before the first one),
    so the first slot is ``every`` seconds after it.
    """

    type: Literal["interval"] = "interval"
    every: PositiveInt

    @property
    def period(self) -> timedelta:
        """``every`` as a ``timedelta``."""
        return timedelta(seconds=self.every)


class EventTrigger(_WireModel):
    """One event that starts the task.

    Attributes:
        type: Kind of event.
        source: Where the event must come from (a feed, a task id); any source if omitted.
        conditions: Field values the event must carry, e.g. ``{"severity": "critical"}``.
    """

    type: Literal["data_change", "task_completed", "indicator_seen"]
    source: str | None = None
    conditions: dict[str, Any] | None = None


class EventDrivenSpec(_WireModel):
    """Fire when any of ``triggers`` happens; it has no fire times of its own."""

    type: Literal["event_driven"] = "event_driven"
    triggers: Annotated[list[EventTrigger], Field(min_length=1)]


TimedSpec = OnceSpec | RecurringSpec | IntervalSpec
"""The specs that fire at computed times (every kind except ``event_driven``)."""

ScheduleSpec = Annotated[
    OnceSpec | RecurringSpec | IntervalSpec | EventDrivenSpec,
    Field(discriminator="type"),
]
"""Any schedule spec, chosen by its ``type`` field."""

_SPEC_ADAPTER: TypeAdapter[OnceSpec | RecurringSpec | IntervalSpec | EventDrivenSpec] = TypeAdapter(
    ScheduleSpec
)


def parse_schedule_spec(data: Any) -> OnceSpec | RecurringSpec | IntervalSpec | EventDrivenSpec:
    """Validate a wire-format mapping (camelCase or snake_case) into a spec.

    Raises:
        pydantic.ValidationError: If the mapping is not a valid spec; cron and time zone errors
            appear in it with the message of the underlying :class:`ScheduleError`.
    """
    return _SPEC_ADAPTER.validate_python(data)


def next_fire_times(
    spec: OnceSpec | RecurringSpec | IntervalSpec | EventDrivenSpec,
    after: datetime,
    n: int = 10,
    executions_so_far: int = 0,
) -> list[datetime]:
    """Return the next ``n`` fire times strictly after ``after``, ascending, in UTC.

    The list is shorter, possibly empty, when ``end_at`` or ``max_executions`` ends the
    schedule first. Event-driven specs have no fire times and give an empty list.

    Args:
        spec: The schedule.
        after: Aware instant; for an interval without ``start_at`` also the anchor of its slots.
        n: How many fire times at most.
        executions_so_far: Fires already done, counted against ``max_executions``.

    Raises:
        ScheduleError: If ``after`` is naive or ``n`` or ``executions_so_far`` is negative.
    """
    if n < 0:
        raise ScheduleError(f"n must be zero or more, got {n!r}")
    if executions_so_far < 0:
        raise ScheduleError(f"executions_so_far must be zero or more, got {executions_so_far!r}")
    moment = as_utc(after, "after")

    if isinstance(spec, EventDrivenSpec):
        return []
    if isinstance(spec, OnceSpec):
        run_at = spec.run_at.astimezone(UTC)
        return [run_at] if n > 0 and executions_so_far == 0 and run_at > moment else []

    count = n if spec.max_executions is None else min(n, spec.max_executions - executions_so_far)
    times: list[datetime] = []
    for slot in iter_fire_times(spec, moment):
        if len(times) >= count or (spec.end_at is not None and slot > spec.end_at):
            break
        times.append(slot)
    return times


def iter_fire_times(spec: RecurringSpec | IntervalSpec, after: datetime) -> Iterator[datetime]:
    """Yield fire times strictly after ``after`` and not before ``start_at``, ascending, in UTC.

    The iterator is endless: it ignores ``end_at`` and ``max_executions``, which
    :func:`next_fire_times` applies.

    Raises:
        ScheduleError: If ``after`` is naive.
    """
    moment = as_utc(after, "after")
    if isinstance(spec, RecurringSpec):
        return _cron_times(spec, moment)
    return _interval_times(spec, moment)


def _cron_times(spec: RecurringSpec, after: datetime) -> Iterator[datetime]:
    current = after
    if spec.start_at is not None and spec.start_at - _ONE_MICROSECOND > current:
        current = spec.start_at - _ONE_MICROSECOND  # so that a slot at startAt itself fires
    while True:
        current = spec.schedule.next_after(current)
        yield current


def _interval_times(spec: IntervalSpec, after: datetime) -> Iterator[datetime]:
    period = spec.period
    if spec.start_at is None:
        current = after + period
    elif after < spec.start_at:
        current = spec.start_at.astimezone(UTC)
    else:
        current = spec.start_at.astimezone(UTC) + ((after - spec.start_at) // period + 1) * period
    while True:
        yield current
        current += period
