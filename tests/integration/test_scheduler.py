"""The scheduler loop on both stores, driven by a fake clock (no test sleeps on wall time).

Covers what the pure schedule maths in ``tests/unit/scheduling`` cannot: fires recorded in the
store, ``maxExecutions``, misfire after downtime, a broken schedule beside healthy ones,
restarts, two schedulers racing for the same slots, and approval time-outs.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
import sqlalchemy as sa

from phantom_spire.engine.scheduler import Scheduler
from phantom_spire.runtime import Runtime
from phantom_spire.services.tasks import TaskSpec
from phantom_spire.services.workflows import WorkflowRequest
from phantom_spire.settings import Settings
from phantom_spire.store.schema import schedules, tasks
from phantom_spire.testing import FakeClock

# 2027-01-15T08:00:00Z, a whole hour, so cron slots are easy to name.
START = 1_800_000_000.0


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(START)


@pytest.fixture
def runtime(store_url: str, clock: FakeClock) -> Iterator[Runtime]:
    rt = Runtime(Settings(database_url=store_url), clock=clock, run_migrations=False)
    yield rt
    rt.close()


def new_task(rt: Runtime, name: str = "scheduled noop") -> str:
    return str(rt.tasks.create_task(TaskSpec(name=name, type="noop"))["id"])


def schedule(rt: Runtime, spec: dict[str, Any], name: str = "scheduled noop") -> str:
    """Create a noop task, put it on ``spec``; return the task id."""
    task_id = new_task(rt, name)
    rt.schedules.schedule_task(task_id, spec)
    return task_id


def fires(rt: Runtime, task_id: str) -> list[dict[str, Any]]:
    row = rt.workflows.store.get_schedule_for_task(task_id)
    return rt.workflows.store.list_fires(row["id"])


def fire_offsets(rt: Runtime, task_id: str) -> list[float]:
    """Fire times of a task's schedule, in seconds after START."""
    return [f["fire_time"] - START for f in fires(rt, task_id)]


def copies(rt: Runtime, task_id: str) -> list[dict[str, Any]]:
    """The tasks a recurring schedule queued from its template task."""
    with rt.store._read() as conn:
        rows = conn.execute(sa.select(tasks.c.id, tasks.c.status, tasks.c.metadata)).mappings()
        return [dict(r) for r in rows if (r["metadata"] or {}).get("scheduledFrom") == task_id]


def at(offset: float) -> str:
    return datetime.fromtimestamp(START + offset, UTC).isoformat()


def test_max_executions_stops_the_schedule_and_releases_its_task(
    runtime: Runtime, clock: FakeClock
) -> None:
    task_id = schedule(runtime, {"type": "interval", "every": 60, "maxExecutions": 3})
    for _ in range(6):
        clock.advance(60)
        runtime.scheduler.tick()

    assert fire_offsets(runtime, task_id) == [60, 120, 180]
    assert len(copies(runtime, task_id)) == 3
    described = runtime.schedules.get_schedule(task_id)
    assert (described["status"], described["executions"], described["nextFireAt"]) == (
        "finished",
        3,
        None,
    )
    # The template goes back to pending once its schedule ended.
    assert runtime.tasks.get_task(task_id)["status"] == "pending"


def test_max_executions_caps_a_catch_up_after_downtime(runtime: Runtime, clock: FakeClock) -> None:
    spec = {
        "type": "interval",
        "every": 60,
        "maxExecutions": 2,
        "misfirePolicy": {"kind": "catch_up", "limit": 10},
    }
    task_id = schedule(runtime, spec)
    clock.advance(600)
    assert runtime.scheduler.tick() == 2
    # The first two slots exist; the newer eight are beyond maxExecutions.
    assert fire_offsets(runtime, task_id) == [60, 120]
    assert runtime.schedules.get_schedule(task_id)["status"] == "finished"


def test_misfire_skip_drops_slots_missed_during_downtime(
    runtime: Runtime, clock: FakeClock
) -> None:
    spec = {"type": "interval", "every": 60, "misfirePolicy": {"kind": "skip", "graceSeconds": 10}}
    task_id = schedule(runtime, spec)
    clock.advance(630)  # down for ten slots; the newest (600) is 30 s late, beyond the grace
    assert runtime.scheduler.tick() == 0
    assert fire_offsets(runtime, task_id) == []
    assert runtime.schedules.get_schedule(task_id)["nextFireAt"] == at(660)

    clock.advance(35)  # 665: the 660 slot is 5 s late, within the grace
    assert runtime.scheduler.tick() == 1
    assert fire_offsets(runtime, task_id) == [660]


def test_misfire_catch_up_fires_the_newest_slots_up_to_its_limit(
    runtime: Runtime, clock: FakeClock
) -> None:
    spec = {
        "type": "recurring",
        "cron": "0 * * * *",
        "timezone": "Asia/Kolkata",  # UTC+05:30: hourly slots fall on the half hour UTC
        "misfirePolicy": {"kind": "catch_up", "limit": 3},
    }
    task_id = schedule(runtime, spec)
    clock.advance(8 * 3600)  # down 08:00 -> 16:00 UTC; eight slots missed (08:30 ... 15:30)
    assert runtime.scheduler.tick() == 3
    assert fire_offsets(runtime, task_id) == [5.5 * 3600, 6.5 * 3600, 7.5 * 3600]
    assert runtime.schedules.get_schedule(task_id)["nextFireAt"] == at(8.5 * 3600)

    # Back to normal: the next tick after the next slot fires that slot alone.
    clock.advance(1800)
    assert runtime.scheduler.tick() == 1
    assert fire_offsets(runtime, task_id)[-1] == 8.5 * 3600
    assert len(copies(runtime, task_id)) == 4


def test_broken_schedule_is_reported_and_skipped_while_the_others_fire(
    runtime: Runtime, clock: FakeClock
) -> None:
    healthy = [schedule(runtime, {"type": "interval", "every": 60}) for _ in range(2)]
    broken = schedule(runtime, {"type": "interval", "every": 60})
    with runtime.store._write() as conn:
        # A spec corrupted in the store (by hand, or by an older version's bug).
        conn.execute(
            sa.update(schedules)
            .where(schedules.c.task_id == broken)
            .values(spec={"type": "recurring", "cron": "not a cron", "timezone": "UTC"})
        )

    for _ in range(3):
        clock.advance(60)
        runtime.scheduler.tick()

    for task_id in healthy:
        assert fire_offsets(runtime, task_id) == [60, 120, 180]
    assert fire_offsets(runtime, broken) == []
    listed = {s["taskId"]: s for s in runtime.schedules.list_scheduled()}
    assert listed[broken]["status"] == "broken"
    assert "not a cron" in listed[broken]["lastError"]
    assert all(listed[t]["status"] == "active" for t in healthy)


def test_schedules_survive_a_restart_and_no_slot_fires_twice(
    store_url: str, runtime: Runtime, clock: FakeClock
) -> None:
    task_id = schedule(runtime, {"type": "interval", "every": 60})
    clock.advance(60)
    assert runtime.scheduler.tick() == 1
    runtime.close()  # the process stops

    restarted = Runtime(Settings(database_url=store_url), clock=clock, run_migrations=False)
    try:
        # Same instant as the last tick before the restart: nothing is due again.
        assert restarted.scheduler.tick() == 0
        clock.advance(60)
        assert restarted.scheduler.tick() == 1

        # Even if the schedule's own bookkeeping is rewound, the store refuses a second fire
        # of a slot: the guarantee is the unique key on (schedule, fire time), not the row.
        with restarted.store._write() as conn:
            conn.execute(
                sa.update(schedules)
                .where(schedules.c.task_id == task_id)
                .values(last_fire_at=START, next_fire_at=START + 60, executions=0)
            )
        assert restarted.scheduler.tick() == 0
        assert fire_offsets(restarted, task_id) == [60, 120]
        assert len(copies(restarted, task_id)) == 2
    finally:
        restarted.close()


def test_two_schedulers_on_one_store_fire_each_slot_exactly_once(
    store_url: str, runtime: Runtime, clock: FakeClock
) -> None:
    if store_url.startswith("sqlite"):
        pytest.skip("two scheduler processes share a store only on PostgreSQL")
    spec = {"type": "interval", "every": 60, "misfirePolicy": {"kind": "catch_up", "limit": 5}}
    task_ids = [schedule(runtime, spec, name=f"s{i}") for i in range(6)]
    second = Runtime(Settings(database_url=store_url), clock=clock, run_migrations=False)
    schedulers: list[Scheduler] = [runtime.scheduler, second.scheduler]
    rounds = 5
    fired = [0, 0]
    errors: list[BaseException] = []
    barrier = threading.Barrier(2)

    def run(index: int) -> None:
        try:
            for _ in range(rounds):
                barrier.wait(timeout=30)
                if index == 0:
                    # One thread moves time, then both tick at once on the same instant;
                    # every other round leaves two slots due, so catch-up is raced too.
                    clock.advance(60 if _ % 2 else 120)
                barrier.wait(timeout=30)
                fired[index] += schedulers[index].tick()
        except BaseException as exc:  # reported below; a dead thread must fail the test
            errors.append(exc)
            barrier.abort()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(2)]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
    finally:
        second.close()
    assert not errors, errors

    elapsed = clock() - START
    expected = [60.0 * k for k in range(1, int(elapsed // 60) + 1)]
    for task_id in task_ids:
        fire_rows = fires(runtime, task_id)
        assert [f["fire_time"] - START for f in fire_rows] == expected, task_id
        queued = copies(runtime, task_id)
        # One queued task per slot, and each fire row names a different one of them.
        assert len(queued) == len(expected)
        assert Counter(f["task_id"] for f in fire_rows) == Counter(t["id"] for t in queued)
        assert {t["status"] for t in queued} == {"queued"}
    assert sum(fired) == len(task_ids) * len(expected)


def _approval_workflow(rt: Runtime, default: str) -> str:
    definition = {
        "name": f"gate_{default}",
        "steps": [
            {
                "id": "ask",
                "kind": "approval",
                "approval": {"timeoutSeconds": 300, "default": default},
            },
            {"id": "act", "handler": "noop", "dependsOn": ["ask"]},
        ],
    }
    created = rt.workflows.create_workflow(WorkflowRequest(definition=definition))
    return str(created["id"])


def _steps(rt: Runtime, workflow_id: str) -> dict[str, Any]:
    return {s["step"]: s for s in rt.workflows.get_workflow(workflow_id)["steps"]}


@pytest.mark.parametrize(("default", "ask", "act"), [("reject", "skipped", "skipped"),
                                                     ("approve", "queued", "blocked")])  # fmt: skip
def test_approval_timeout_applies_the_default_outcome(
    runtime: Runtime, clock: FakeClock, default: str, ask: str, act: str
) -> None:
    workflow_id = _approval_workflow(runtime, default)
    assert _steps(runtime, workflow_id)["ask"]["approval"]["waiting"] is True

    clock.advance(299)
    runtime.scheduler.tick()
    assert _steps(runtime, workflow_id)["ask"]["status"] == "blocked"  # not yet due

    clock.advance(2)
    runtime.scheduler.tick()
    steps = _steps(runtime, workflow_id)
    assert (steps["ask"]["status"], steps["act"]["status"]) == (ask, act)
    assert steps["ask"]["approval"]["waiting"] is False
