"""Pure schedule computation: cron fire times, schedule specs and misfire decisions.

Nothing here reads a clock or a store: every function takes the instants it needs, so the
scheduler service decides what "now" is and tests can pass any time they like.
"""

from __future__ import annotations

from phantom_spire.scheduling.cron import CronSchedule, resolve_timezone
from phantom_spire.scheduling.errors import ScheduleError
from phantom_spire.scheduling.misfire import slots_to_fire
from phantom_spire.scheduling.specs import (
    EventDrivenSpec,
    EventTrigger,
    IntervalSpec,
    MisfirePolicy,
    OnceSpec,
    RecurringSpec,
    ScheduleSpec,
    TimedSpec,
    iter_fire_times,
    next_fire_times,
    parse_schedule_spec,
)

__all__ = [
    "CronSchedule",
    "EventDrivenSpec",
    "EventTrigger",
    "IntervalSpec",
    "MisfirePolicy",
    "OnceSpec",
    "RecurringSpec",
    "ScheduleError",
    "ScheduleSpec",
    "TimedSpec",
    "iter_fire_times",
    "next_fire_times",
    "parse_schedule_spec",
    "resolve_timezone",
    "slots_to_fire",
]
