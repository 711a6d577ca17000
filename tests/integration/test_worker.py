"""The worker pool against a real store (SQLite and PostgreSQL)."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from typing import Any, ClassVar

import pytest
from pydantic import BaseModel

from phantom_spire.engine.worker import Worker
from phantom_spire.handlers.context import TaskContext
from phantom_spire.handlers.registry import HandlerRegistry, default_registry
from phantom_spire.services.tasks import TaskService, TaskSpec
from phantom_spire.settings import Settings
from phantom_spire.store import Store


class NoParameters(BaseModel):
    pass


FINAL = {"completed", "failed", "dead_lettered", "timed_out", "cancelled"}


def fast_settings(**overrides: Any) -> Settings:
    values = {
        "workers": 4,
        "poll_seconds": 0.02,
        "heartbeat_seconds": 0.2,
        "lease_seconds": 1.0,
        "reaper_seconds": 0.1,
    }
    values.update(overrides)
    return Settings(**values)


class Env:
    def __init__(self, store_url: str, registry: HandlerRegistry, settings: Settings) -> None:
        self.store = Store(store_url)
        self.settings = settings
        self.registry = registry
        self.service = TaskService(self.store, registry, default_timeout_ms=30_000)

    def submit(self, type_: str = "noop", **definition: Any) -> str:
        spec = TaskSpec.model_validate({"name": type_, "type": type_, "definition": definition})
        return self.service.create_task(spec, execute=True)["id"]

    def status(self, task_id: str) -> str:
        return self.store.get_task(task_id)["status"]

    def run_until(self, done: Callable[[], bool], timeout: float = 15.0) -> Worker:
        worker = Worker(self.store, self.registry, self.settings)

        async def main() -> None:
            job = asyncio.create_task(worker.run())
            deadline = time.monotonic() + timeout
            while not done():
                if time.monotonic() > deadline:
                    worker.stop()
                    await job
                    pytest.fail(f"condition not reached within {timeout}s")
                await asyncio.sleep(0.02)
            worker.stop()
            await job

        asyncio.run(main())
        return worker


@pytest.fixture
def env(store_url: str) -> Env:
    e = Env(store_url, default_registry(), fast_settings())
    yield e
    e.store.dispose()


def test_queued_task_runs_to_completion_with_one_execution_and_logs(env: Env) -> None:
    task_id = env.submit(parameters={"sleepMs": 10})
    env.run_until(lambda: env.status(task_id) in FINAL)

    task = env.store.get_task(task_id)
    assert task["status"] == "completed" and task["result"] == {"attempt": 1}
    (execution,) = env.store.list_executions(task_id)
    assert execution["status"] == "completed" and execution["finished_at"] is not None
    messages = [log["message"] for log in env.store.list_logs(task_id)]
    assert messages[0].startswith("attempt 1 started on ")
    assert messages[-1] == "attempt 1 completed"


def test_retryable_failure_is_retried_then_dead_lettered(env: Env) -> None:
    task_id = env.submit(
        parameters={"fail": True},
        retryPolicy={"maxAttempts": 3, "initialDelay": 10, "backoffStrategy": "fixed"},
    )
    env.run_until(lambda: env.status(task_id) in FINAL)

    task = env.store.get_task(task_id)
    assert task["status"] == "dead_lettered"
    assert "all 3 attempts failed" in task["error"]
    assert [e["status"] for e in env.store.list_executions(task_id)] == ["failed"] * 3


def test_non_retryable_failure_fails_after_one_attempt(env: Env) -> None:
    task_id = env.submit(parameters={"fail": True, "retryable": False})
    env.run_until(lambda: env.status(task_id) in FINAL)

    task = env.store.get_task(task_id)
    assert task["status"] == "failed"
    assert task["error"] == "failed on request (fail=true)"
    assert len(env.store.list_executions(task_id)) == 1


def test_attempt_that_exceeds_its_timeout_is_timed_out_and_retried(env: Env) -> None:
    task_id = env.submit(
        parameters={"sleepMs": 5000},
        timeout=100,
        retryPolicy={"maxAttempts": 2, "initialDelay": 10},
    )
    env.run_until(lambda: env.status(task_id) in FINAL)

    executions = env.store.list_executions(task_id)
    assert [e["status"] for e in executions] == ["timed_out", "timed_out"]
    assert "exceeded its timeout of 100 ms" in executions[0]["error"]
    assert env.status(task_id) == "dead_lettered"


class _Gauge:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.current = 0
        self.peak = 0


class CountingHandler:
    name: ClassVar[str] = "counting"
    Parameters: ClassVar[type[BaseModel]] = NoParameters

    def __init__(self, gauge: _Gauge) -> None:
        self.gauge = gauge

    async def run(self, ctx: TaskContext) -> dict[str, Any]:
        with self.gauge.lock:
            self.gauge.current += 1
            self.gauge.peak = max(self.gauge.peak, self.gauge.current)
        await asyncio.sleep(0.05)
        with self.gauge.lock:
            self.gauge.current -= 1
        return {}


def test_pool_never_runs_more_tasks_than_its_concurrency_limit(store_url: str) -> None:
    gauge = _Gauge()
    registry = HandlerRegistry()
    registry.register(CountingHandler(gauge))
    env = Env(store_url, registry, fast_settings(workers=3))
    ids = [env.submit("counting") for _ in range(12)]

    env.run_until(lambda: all(env.status(i) == "completed" for i in ids))

    assert gauge.peak == 3
    env.store.dispose()


class BusyThreadHandler:
    """Burns CPU in the handler thread pool for a while, as a large feed parse does."""

    name: ClassVar[str] = "busy"
    Parameters: ClassVar[type[BaseModel]] = NoParameters

    async def run(self, ctx: TaskContext) -> dict[str, Any]:
        def burn() -> int:
            end, n = time.monotonic() + 2.0, 0
            while time.monotonic() < end:
                n += sum(range(1000))
            return n

        return {"n": await ctx.run_in_thread(burn)}


def test_cpu_heavy_handler_work_does_not_block_the_event_loop(store_url: str) -> None:
    registry = HandlerRegistry()
    registry.register(BusyThreadHandler())
    env = Env(store_url, registry, fast_settings())
    task_id = env.submit("busy")
    ticks = 0

    async def main() -> None:
        nonlocal ticks
        worker = Worker(env.store, registry, env.settings)
        job = asyncio.create_task(worker.run())
        while env.store.get_task(task_id)["status"] != "running":
            await asyncio.sleep(0.01)
        while env.store.get_task(task_id)["status"] == "running":
            await asyncio.sleep(0.02)
            ticks += 1
        worker.stop()
        await job

    asyncio.run(main())

    # A blocked loop would tick once or twice in the handler's two seconds of work; a free
    # one ticks dozens of times (the GIL is shared, so not the full 100).
    assert ticks >= 8
    assert env.status(task_id) == "completed"
    env.store.dispose()


def test_worker_ids_are_unique_per_start(env: Env) -> None:
    a = Worker(env.store, env.registry, env.settings)
    b = Worker(env.store, env.registry, env.settings)
    assert a.worker_id != b.worker_id
