"""Which slots of a schedule to fire now, after the scheduler ran late or was down.

The scheduler loop calls :func:`slots_to_fire` on every tick with the newest slot it has fired
(or, before the first fire, the time the schedule was created) and the current time. The answer
lists each due slot at most once as long as the caller then records the newest returned slot as
its new ``last_fire``: older slots that the policy dropped are at or before that slot, so they
are never offered again. The store's uniqueness on (schedule, fire time) stays the guard against
two schedulers firing the same slot.

Cost: walking back from ``now`` is proportional to the slots returned, except with
``max_executions``, where the slots after ``last_fire`` are counted forwards (at most
``max_executions - executions_so_far`` of them) to find where the schedule ends.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

from phantom_spire.scheduling._time import as_utc
from phantom_spire.scheduling.errors import ScheduleError
from phantom_spire.scheduling.specs import (
    IntervalSpec,
    MisfirePolicy,
    OnceSpec,
    RecurringSpec,
    iter_fire_times,
)

__all__ = ["slots_to_fire"]

_ONE_MICROSECOND = timedelta(microseconds=1)


def slots_to_fire(
    spec: OnceSpec | RecurringSpec | IntervalSpec,
    *,
    last_fire: datetime,
    now: datetime,
    executions_so_far: int = 0,
    policy: MisfirePolicy | None = None,
) -> list[datetime]:
    """Return the slots in ``(last_fire, now]`` to fire now, oldest first, in UTC.

    ``skip`` returns the due slots at most ``policy.grace`` late and drops the rest;
    ``catch_up`` returns the newest ``policy.limit`` due slots. Slots outside
    ``start_at``/``end_at`` or beyond ``max_executions`` are never returned.

    Args:
        spec: A time-based schedule.
        last_fire: The newest slot already fired, or the creation time if none was; for an
            interval without ``start_at`` also the anchor its slots are counted from.
        now: The current time, from the caller's clock.
        executions_so_far: Fires already done, counted against ``max_executions``.
        policy: Overrides ``spec.misfire_policy``.

    Raises:
        ScheduleError: If a datetime is naive or ``executions_so_far`` is negative.
    """
    if executions_so_far < 0:
        raise ScheduleError(f"executions_so_far must be zero or more, got {executions_so_far!r}")
    policy = policy or spec.misfire_policy
    since = as_utc(last_fire, "last_fire")
    until = as_utc(now, "now")

    cutoff = _last_allowed_slot(spec, since, until, executions_so_far)
    if cutoff is None:
        return []

    oldest_on_time = until - policy.grace
    chosen: list[datetime] = []
    for slot in _slots_backwards(spec, since, cutoff):
        if policy.kind == "skip" and slot < oldest_on_time:
            break
        chosen.append(slot)
        if policy.kind == "catch_up" and len(chosen) >= policy.limit:
            break
    chosen.reverse()
    return chosen


def _last_allowed_slot(
    spec: OnceSpec | RecurringSpec | IntervalSpec,
    since: datetime,
    until: datetime,
    executions_so_far: int,
) -> datetime | None:
    """The latest instant a slot may have: ``until``, or earlier if the schedule ended."""
    if isinstance(spec, OnceSpec):
        return until if executions_so_far == 0 else None

    cutoff = until if spec.end_at is None else min(until, spec.end_at.astimezone(UTC))
    if spec.max_executions is None:
        return cutoff

    remaining = spec.max_executions - executions_so_far
    if remaining <= 0:
        return None
    # Only the first `remaining` slots after `since` exist; later ones must not fire even when
    # they are the newest, so find the last existing one, stopping early at the cutoff.
    for index, slot in enumerate(iter_fire_times(spec, since), start=1):
        if slot > cutoff:
            break
        if index == remaining:
            return slot
    return cutoff


def _slots_backwards(
    spec: OnceSpec | RecurringSpec | IntervalSpec, since: datetime, cutoff: datetime
) -> Iterator[datetime]:
    """Yield slots in ``(since, cutoff]`` and not before ``start_at``, newest first."""
    if isinstance(spec, OnceSpec):
        run_at = spec.run_at.astimezone(UTC)
        if since < run_at <= cutoff:
            yield run_at
        return

    floor = since if spec.start_at is None else max(since, spec.start_at - _ONE_MICROSECOND)
    if isinstance(spec, RecurringSpec):
        slots = _cron_backwards(spec, cutoff)
    else:
        slots = _interval_backwards(spec, since, cutoff)
    for slot in slots:
        if slot <= floor:
            return
        yield slot


def _cron_backwards(spec: RecurringSpec, cutoff: datetime) -> Iterator[datetime]:
    current = cutoff + _ONE_MICROSECOND  # previous_before is strict; the cutoff itself may fire
    while True:
        current = spec.schedule.previous_before(current)
        yield current


def _interval_backwards(
    spec: IntervalSpec, since: datetime, cutoff: datetime
) -> Iterator[datetime]:
    anchor = since if spec.start_at is None else spec.start_at.astimezone(UTC)
    if cutoff < anchor:
        return
    current = anchor + ((cutoff - anchor) // spec.period) * spec.period
    while current >= anchor:
        yield current
        current -= spec.period
