"""Which slots fire after the scheduler was late or down, driven by a fake clock."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import pytest

from phantom_spire.scheduling import (
    IntervalSpec,
    MisfirePolicy,
    OnceSpec,
    RecurringSpec,
    ScheduleError,
    next_fire_times,
    parse_schedule_spec,
    slots_to_fire,
)

SKIP = MisfirePolicy(kind="skip")


def at(text: str) -> datetime:
    return datetime.fromisoformat(text)


def hourly(**extra: Any) -> RecurringSpec:
    spec = parse_schedule_spec(
        {"type": "recurring", "cron": "0 * * * *", "timezone": "UTC", **extra}
    )
    assert isinstance(spec, RecurringSpec)
    return spec


def catch_up(limit: int) -> MisfirePolicy:
    return MisfirePolicy(kind="catch_up", limit=limit)


@dataclass
class FakeClock:
    """A clock the test moves by hand; nothing sleeps."""

    now: datetime

    def advance(self, delta: timedelta) -> None:
        self.now += delta


@dataclass
class SchedulerLoop:
    """What the scheduler service does on each tick, reduced to its bookkeeping."""

    spec: OnceSpec | RecurringSpec | IntervalSpec
    clock: FakeClock
    policy: MisfirePolicy
    last_fire: datetime
    fired: list[datetime] = field(default_factory=list)

    def tick(self) -> list[datetime]:
        slots = slots_to_fire(
            self.spec,
            last_fire=self.last_fire,
            now=self.clock.now,
            executions_so_far=len(self.fired),
            policy=self.policy,
        )
        self.fired.extend(slots)
        if slots:
            self.last_fire = slots[-1]
        return slots

    def run(self, until: datetime, every: timedelta) -> None:
        while self.clock.now < until:
            self.clock.advance(every)
            self.tick()


# --- one decision ----------------------------------------------------------------------------


def test_slot_due_now_fires_under_either_policy() -> None:
    for policy in (SKIP, catch_up(1)):
        got = slots_to_fire(
            hourly(),
            last_fire=at("2024-01-01T09:00:00Z"),
            now=at("2024-01-01T10:00:05Z"),
            policy=policy,
        )

        assert got == [at("2024-01-01T10:00:00Z")]


def test_nothing_fires_before_the_next_slot() -> None:
    got = slots_to_fire(
        hourly(), last_fire=at("2024-01-01T09:00:00Z"), now=at("2024-01-01T09:59:59Z")
    )

    assert got == []


def test_skip_drops_slots_missed_during_downtime() -> None:
    got = slots_to_fire(
        hourly(), last_fire=at("2024-01-01T04:00:00Z"), now=at("2024-01-01T09:30:00Z"), policy=SKIP
    )

    assert got == []


def test_skip_still_fires_the_slot_that_is_only_slightly_late() -> None:
    got = slots_to_fire(
        hourly(), last_fire=at("2024-01-01T04:00:00Z"), now=at("2024-01-01T09:00:45Z"), policy=SKIP
    )

    assert got == [at("2024-01-01T09:00:00Z")]


def test_skip_grace_decides_what_counts_as_late() -> None:
    strict = MisfirePolicy(kind="skip", grace_seconds=10)

    got = slots_to_fire(
        hourly(),
        last_fire=at("2024-01-01T08:00:00Z"),
        now=at("2024-01-01T09:00:45Z"),
        policy=strict,
    )

    assert got == []


def test_catch_up_fires_the_newest_missed_slots_up_to_its_limit_oldest_first() -> None:
    got = slots_to_fire(
        hourly(),
        last_fire=at("2024-01-01T04:00:00Z"),
        now=at("2024-01-01T09:30:00Z"),
        policy=catch_up(3),
    )

    assert got == [at("2024-01-01T07:00Z"), at("2024-01-01T08:00Z"), at("2024-01-01T09:00Z")]


def test_catch_up_below_its_limit_fires_every_missed_slot_once() -> None:
    got = slots_to_fire(
        hourly(),
        last_fire=at("2024-01-01T04:00:00Z"),
        now=at("2024-01-01T07:00:00Z"),
        policy=catch_up(10),
    )

    assert got == [at("2024-01-01T05:00Z"), at("2024-01-01T06:00Z"), at("2024-01-01T07:00Z")]


def test_default_policy_fires_once_for_a_whole_outage() -> None:
    spec = hourly()

    got = slots_to_fire(spec, last_fire=at("2024-01-01T04:00:00Z"), now=at("2024-01-03T00:10:00Z"))

    assert spec.misfire_policy == catch_up(1)
    assert got == [at("2024-01-03T00:00:00Z")]


def test_catch_up_never_exceeds_max_executions() -> None:
    spec = hourly(maxExecutions=5)

    got = slots_to_fire(
        spec,
        last_fire=at("2024-01-01T03:00:00Z"),
        now=at("2024-01-01T12:00:00Z"),
        executions_so_far=3,
        policy=catch_up(10),
    )

    # only two executions remain, and they belong to the first two slots of the outage
    assert got == [at("2024-01-01T04:00:00Z"), at("2024-01-01T05:00:00Z")]


def test_exhausted_schedule_fires_nothing() -> None:
    got = slots_to_fire(
        hourly(maxExecutions=2),
        last_fire=at("2024-01-01T03:00:00Z"),
        now=at("2024-01-01T12:00:00Z"),
        executions_so_far=2,
        policy=catch_up(10),
    )

    assert got == []


def test_catch_up_stops_at_end_and_waits_for_start() -> None:
    spec = hourly(startAt="2024-01-01T06:00:00Z", endAt="2024-01-01T08:00:00Z")

    got = slots_to_fire(
        spec,
        last_fire=at("2024-01-01T00:00:00Z"),
        now=at("2024-01-01T12:00:00Z"),
        policy=catch_up(10),
    )

    assert got == [at("2024-01-01T06:00Z"), at("2024-01-01T07:00Z"), at("2024-01-01T08:00Z")]


def test_missed_one_off_task_fires_late_under_catch_up_and_not_under_skip() -> None:
    spec = OnceSpec(run_at=at("2024-01-01T09:00:00Z"))
    created = at("2024-01-01T08:00:00Z")
    late = at("2024-01-01T11:00:00Z")

    assert slots_to_fire(spec, last_fire=created, now=late) == [at("2024-01-01T09:00:00Z")]
    assert slots_to_fire(spec, last_fire=created, now=late, policy=SKIP) == []
    assert slots_to_fire(spec, last_fire=created, now=late, executions_so_far=1) == []


def test_interval_catch_up_uses_the_start_grid() -> None:
    spec = IntervalSpec(every=600, start_at=at("2024-01-01T00:05:00Z"))

    got = slots_to_fire(
        spec,
        last_fire=at("2024-01-01T00:15:00Z"),
        now=at("2024-01-01T01:00:00Z"),
        policy=catch_up(2),
    )

    assert got == [at("2024-01-01T00:45:00Z"), at("2024-01-01T00:55:00Z")]


def test_naive_times_and_negative_counts_are_refused() -> None:
    with pytest.raises(ScheduleError, match="naive"):
        slots_to_fire(hourly(), last_fire=datetime(2024, 1, 1), now=at("2024-01-01T01:00:00Z"))
    with pytest.raises(ScheduleError, match="-1"):
        slots_to_fire(
            hourly(),
            last_fire=at("2024-01-01T00:00:00Z"),
            now=at("2024-01-01T01:00:00Z"),
            executions_so_far=-1,
        )


# --- a loop over time ------------------------------------------------------------------------


@pytest.mark.parametrize("policy", [SKIP, catch_up(1), catch_up(4), catch_up(1000)])
def test_running_loop_fires_every_slot_exactly_once(policy: MisfirePolicy) -> None:
    spec = parse_schedule_spec(
        {"type": "recurring", "cron": "*/15 * * * *", "timezone": "Europe/Amsterdam"}
    )
    assert isinstance(spec, RecurringSpec)
    start = at("2024-10-26T22:00:00Z")
    clock = FakeClock(start)
    loop = SchedulerLoop(spec, clock, policy, last_fire=start)

    loop.run(until=at("2024-10-27T04:00:00Z"), every=timedelta(seconds=20))

    expected = next_fire_times(spec, start, n=100)
    expected = [t for t in expected if t <= clock.now]
    assert loop.fired == expected
    assert len(set(loop.fired)) == len(loop.fired)


@pytest.mark.parametrize(
    ("policy", "after_restart"),
    [
        (SKIP, []),
        (catch_up(1), ["2024-03-31T05:00:00+00:00"]),
        (catch_up(3), ["2024-03-31T03:00:00+00:00", "2024-03-31T04:00:00+00:00",
                       "2024-03-31T05:00:00+00:00"]),
    ],
)  # fmt: skip
def test_loop_after_downtime_applies_the_misfire_policy_then_resumes(
    policy: MisfirePolicy, after_restart: list[str]
) -> None:
    spec = hourly()
    clock = FakeClock(at("2024-03-30T23:30:00Z"))
    loop = SchedulerLoop(spec, clock, policy, last_fire=clock.now)
    loop.run(until=at("2024-03-31T01:30:00Z"), every=timedelta(seconds=30))
    fired_before = list(loop.fired)

    clock.advance(timedelta(hours=4))  # scheduler down from 01:30 to 05:30
    restarted = loop.tick()
    loop.run(until=at("2024-03-31T07:30:00Z"), every=timedelta(seconds=30))

    assert fired_before == [at("2024-03-31T00:00:00Z"), at("2024-03-31T01:00:00Z")]
    assert restarted == [at(text) for text in after_restart]
    assert loop.fired[len(fired_before) + len(restarted) :] == [
        at("2024-03-31T06:00:00Z"),
        at("2024-03-31T07:00:00Z"),
    ]


def test_loop_stops_firing_at_max_executions() -> None:
    spec = IntervalSpec(every=60, max_executions=5)
    clock = FakeClock(at("2024-01-01T00:00:00Z"))
    loop = SchedulerLoop(spec, clock, catch_up(100), last_fire=clock.now)

    loop.run(until=at("2024-01-01T00:02:30Z"), every=timedelta(seconds=15))
    clock.advance(timedelta(hours=1))
    loop.tick()
    loop.run(until=clock.now + timedelta(minutes=5), every=timedelta(seconds=15))

    # the three executions left belong to the three slots after the last fire, however late
    assert loop.fired == [at(f"2024-01-01T00:0{minute}:00Z") for minute in range(1, 6)]
