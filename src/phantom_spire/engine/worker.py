"""The worker: claims tasks, runs their handlers under a concurrency limit, and reports back.

One :class:`Worker` per process. It runs three loops on one event loop:

* claim: take as many queued tasks as there are free slots, start each as an asyncio task;
* heartbeat: renew the leases of running tasks, and notice a task taken away by the reaper;
* reaper: return tasks whose lease expired (their worker died) to the queue.

Store calls run in the default thread pool; handler threads get a pool of their own, so a
handler parsing a large feed can never starve the claims and heartbeats.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import resource
import socket
import threading
import time
import traceback
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from phantom_spire.engine.lifecycle import ExecutionStatus, TaskStatus
from phantom_spire.engine.retry import RetryPolicy, compute_delay
from phantom_spire.errors import HandlerError, InvalidTaskDefinition, LeaseLost
from phantom_spire.handlers.context import TaskContext, TaskLogger
from phantom_spire.handlers.registry import HandlerRegistry
from phantom_spire.settings import Settings
from phantom_spire.store import Claim, Store

__all__ = ["AttemptOutcome", "Worker", "decide_next_status", "new_worker_id"]

logger = logging.getLogger(__name__)

LOG_FLUSH_SECONDS = 1.0


def new_worker_id() -> str:
    """Host, pid and a random part: unique per process start, even if a pid is reused."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


@dataclass(frozen=True)
class AttemptOutcome:
    """How one attempt ended, before the retry policy has been applied."""

    status: ExecutionStatus
    result: dict[str, Any] | None = None
    error: str | None = None
    error_type: str | None = None
    retryable: bool = True


def _controlled_outcome(control: str) -> AttemptOutcome:
    if control == TaskStatus.CANCELLING:
        return AttemptOutcome(ExecutionStatus.CANCELLED, error="cancelled on request")
    return AttemptOutcome(ExecutionStatus.PAUSED)


def decide_next_status(
    outcome: AttemptOutcome,
    failures: int,
    policy: RetryPolicy,
    now: float,
    rng: random.Random | None = None,
) -> tuple[TaskStatus, float | None]:
    """The task's next status after an attempt, and when it may run again if retried.

    ``failures`` counts the task's failed attempts including this one; paused attempts do
    not count, so pausing never uses up the retry budget.
    """
    if outcome.status is ExecutionStatus.COMPLETED:
        return TaskStatus.COMPLETED, None
    if outcome.status is ExecutionStatus.CANCELLED:
        return TaskStatus.CANCELLED, None
    if outcome.status is ExecutionStatus.PAUSED:
        return TaskStatus.PAUSED, None
    if not outcome.retryable:
        terminal = (
            TaskStatus.TIMED_OUT
            if outcome.status is ExecutionStatus.TIMED_OUT
            else TaskStatus.FAILED
        )
        return terminal, None
    if failures >= policy.max_attempts:
        return TaskStatus.DEAD_LETTERED, None
    return TaskStatus.RETRY_WAIT, now + compute_delay(policy, failures, rng)


@dataclass
class _Running:
    claim: Claim
    ctx: TaskContext
    job: asyncio.Task[None] | None = None
    lost: bool = False
    # Set when an operator asked to cancel or pause: "cancelling" or "pausing".
    control: str | None = None
    force_at: float | None = None


@dataclass
class Worker:
    """Runs tasks from the store until :meth:`stop` is called."""

    store: Store
    registry: HandlerRegistry
    settings: Settings
    worker_id: str = field(default_factory=new_worker_id)
    run_reaper: bool = True

    def __post_init__(self) -> None:
        self._running: dict[str, _Running] = {}
        self._stopping = asyncio.Event()
        self._wake = asyncio.Event()
        self._handler_threads = ThreadPoolExecutor(
            max_workers=self.settings.workers, thread_name_prefix="spire-handler"
        )

    @property
    def running_task_ids(self) -> list[str]:
        return list(self._running)

    def wake(self) -> None:
        """Claim now instead of at the next poll (a task was just queued in this process)."""
        self._wake.set()

    def stop(self) -> None:
        self._stopping.set()
        self._wake.set()

    async def run(self) -> None:
        """Claim and run tasks until stopped; then wait for running attempts to finish."""
        logger.info(
            "worker %s started with %d slots",
            self.worker_id,
            self.settings.workers,
            extra={"event": "worker_started", "worker_id": self.worker_id},
        )
        loops = [
            asyncio.create_task(self._claim_loop()),
            asyncio.create_task(self._heartbeat_loop()),
        ]
        if self.run_reaper:
            loops.append(asyncio.create_task(self._reaper_loop()))
        try:
            await self._stopping.wait()
        finally:
            for loop in loops:
                loop.cancel()
            await asyncio.gather(*loops, return_exceptions=True)
            await self._drain()
            self._handler_threads.shutdown(wait=False, cancel_futures=True)
            logger.info("worker %s stopped", self.worker_id, extra={"event": "worker_stopped"})

    async def _drain(self) -> None:
        jobs = [r.job for r in self._running.values() if r.job is not None]
        if jobs:
            # Attempts still running are left to their leases: another worker (or this one
            # after a restart) takes them over once the lease expires.
            for running in self._running.values():
                running.ctx.stop_requested.set()
            await asyncio.wait(jobs, timeout=self.settings.heartbeat_seconds)

    # -- loops -----------------------------------------------------------------------------

    async def _claim_loop(self) -> None:
        while not self._stopping.is_set():
            claimed = 0
            free = self.settings.workers - len(self._running)
            if free > 0:
                try:
                    claims = await asyncio.to_thread(
                        self.store.claim_tasks, self.worker_id, free, self.settings.lease_seconds
                    )
                except Exception:
                    logger.exception("claim failed; retrying", extra={"event": "claim_failed"})
                    claims = []
                for claim in claims:
                    self._start(claim)
                claimed = len(claims)

            if claimed == 0 or len(self._running) >= self.settings.workers:
                self._wake.clear()
                try:
                    await asyncio.wait_for(self._wake.wait(), self.settings.poll_seconds)
                except TimeoutError:
                    pass

    async def _heartbeat_loop(self) -> None:
        # Logs are flushed every tick so `spire task logs` shows a long attempt as it runs;
        # leases are renewed every heartbeat_seconds.
        tick = min(LOG_FLUSH_SECONDS, self.settings.heartbeat_seconds)
        last_beat = time.monotonic()
        while not self._stopping.is_set():
            await asyncio.sleep(tick)
            for running in list(self._running.values()):
                await self._flush_logs(running.ctx)
            await self._check_control_requests()
            if time.monotonic() - last_beat >= self.settings.heartbeat_seconds:
                last_beat = time.monotonic()
                await self._heartbeat()

    async def _check_control_requests(self) -> None:
        """Pass an operator's cancel or pause to the handler; force it after the grace period.

        The handler sees ``ctx.should_stop()`` at its next checkpoint. One that ignores it is
        cancelled (its coroutine gets CancelledError) once ``stop_grace_seconds`` have passed.
        """
        ids = list(self._running)
        if not ids:
            return
        try:
            statuses = await asyncio.to_thread(self.store.statuses_of, ids)
        except Exception:
            logger.exception("control poll failed", extra={"event": "control_poll_failed"})
            return
        now = time.monotonic()
        for task_id, status in statuses.items():
            running = self._running.get(task_id)
            if running is None or status not in (TaskStatus.CANCELLING, TaskStatus.PAUSING):
                continue
            if running.control is None:
                running.control = status
                running.force_at = now + self.settings.stop_grace_seconds
                running.ctx.stop_reason = "cancel" if status == TaskStatus.CANCELLING else "pause"
                running.ctx.stop_requested.set()
                running.ctx.logger.info(f"{running.ctx.stop_reason} requested; stopping")
            elif running.force_at is not None and now >= running.force_at and running.job:
                running.ctx.logger.warning(
                    f"handler did not stop within {self.settings.stop_grace_seconds}s; forcing"
                )
                running.force_at = None
                running.job.cancel()

    async def _heartbeat(self) -> None:
        ids = list(self._running)
        if not ids:
            return
        try:
            held = await asyncio.to_thread(
                self.store.renew_leases, self.worker_id, ids, self.settings.lease_seconds
            )
        except Exception:
            logger.exception("heartbeat failed", extra={"event": "heartbeat_failed"})
            return
        for task_id in ids:
            running = self._running.get(task_id)
            if running is not None and task_id not in held:
                # The reaper gave the task to another attempt: stop ours, discard its result.
                running.lost = True
                running.ctx.stop_requested.set()
                if running.job is not None:
                    running.job.cancel()

    async def _reaper_loop(self) -> None:
        while not self._stopping.is_set():
            try:
                reaped = await asyncio.to_thread(self.store.reap_expired_leases)
                if reaped:
                    self.wake()
            except Exception:
                logger.exception("reaper sweep failed", extra={"event": "reaper_failed"})
            await asyncio.sleep(self.settings.reaper_seconds)

    # -- one attempt -----------------------------------------------------------------------

    def _start(self, claim: Claim) -> None:
        task = claim.task
        ctx = TaskContext(
            task_id=task["id"],
            execution_id=claim.execution_id,
            attempt=claim.attempt,
            parameters=task["parameters"],
            checkpoint=task["checkpoint"],
            logger=TaskLogger(task["id"], claim.execution_id, claim.attempt, self.store.clock),
            store=self.store,
            worker_id=self.worker_id,
            thread_pool=self._handler_threads,
            stop_requested=threading.Event(),
            classification=task.get("classification") or 0,
            tlp=task.get("tlp") or "CLEAR",
        )
        running = _Running(claim=claim, ctx=ctx)
        self._running[task["id"]] = running
        running.job = asyncio.create_task(self._execute(running), name=f"task-{task['id']}")
        logger.info(
            "claimed task %s (attempt %d)",
            task["id"],
            claim.attempt,
            extra={
                "event": "task_claimed",
                "task_id": task["id"],
                "execution_id": claim.execution_id,
                "attempt": claim.attempt,
                "worker_id": self.worker_id,
            },
        )

    async def _execute(self, running: _Running) -> None:
        claim, ctx = running.claim, running.ctx
        started = time.perf_counter()
        cpu_started = time.process_time()
        try:
            try:
                outcome = await self._run_handler(claim, ctx)
            except asyncio.CancelledError:
                if running.control is None:
                    raise
                outcome = AttemptOutcome(ExecutionStatus.FAILED, error="forced to stop")
            if running.lost:
                return
            if running.control is not None and outcome.status is not ExecutionStatus.COMPLETED:
                outcome = _controlled_outcome(running.control)
            metrics = {
                "wallSeconds": round(time.perf_counter() - started, 6),
                # Process-wide CPU time and peak memory: exact only when one attempt runs at
                # a time; per-attempt figures would need process isolation.
                "processCpuSeconds": round(time.process_time() - cpu_started, 6),
                "processPeakRssMb": round(
                    resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1
                ),
            }
            await self._finish(claim, outcome, metrics, ctx.logger.drain())
        except LeaseLost:
            logger.warning(
                "lost the lease on task %s",
                claim.task["id"],
                extra={"event": "lease_lost", "task_id": claim.task["id"]},
            )
        except asyncio.CancelledError:
            if not running.lost:
                raise
        except Exception:
            logger.exception(
                "could not record the outcome of task %s",
                claim.task["id"],
                extra={"event": "finish_failed", "task_id": claim.task["id"]},
            )
        finally:
            self._running.pop(claim.task["id"], None)
            self._wake.set()

    async def _run_handler(self, claim: Claim, ctx: TaskContext) -> AttemptOutcome:
        task = claim.task
        timeout = task["timeout_ms"] / 1000
        try:
            handler = self.registry.get(task["handler"])
            ctx.logger.info(f"attempt {claim.attempt} started on {self.worker_id}")
            result = await asyncio.wait_for(handler.run(ctx), timeout)
        except TimeoutError:
            ctx.stop_requested.set()
            message = f"attempt {claim.attempt} exceeded its timeout of {task['timeout_ms']} ms"
            ctx.logger.error(message)
            return AttemptOutcome(ExecutionStatus.TIMED_OUT, error=message, error_type="timeout")
        except HandlerError as exc:
            ctx.logger.error(str(exc))
            return AttemptOutcome(
                ExecutionStatus.FAILED,
                error=str(exc),
                error_type=type(exc).__name__,
                retryable=exc.retryable,
            )
        except InvalidTaskDefinition as exc:
            ctx.logger.error(str(exc))
            return AttemptOutcome(
                ExecutionStatus.FAILED,
                error=str(exc),
                error_type=type(exc).__name__,
                retryable=False,
            )
        except LeaseLost:
            raise
        except Exception as exc:
            # An unexpected exception is a bug or an outage, not bad input: worth a retry.
            message = f"{type(exc).__name__}: {exc}"
            ctx.logger.error(message, traceback=traceback.format_exc(limit=20))
            return AttemptOutcome(
                ExecutionStatus.FAILED, error=message, error_type=type(exc).__name__
            )
        ctx.logger.info(f"attempt {claim.attempt} completed")
        return AttemptOutcome(ExecutionStatus.COMPLETED, result=result)

    async def _flush_logs(self, ctx: TaskContext) -> None:
        rows = ctx.logger.drain()
        if rows:
            try:
                await asyncio.to_thread(self.store.append_logs, rows)
            except Exception:
                logger.exception(
                    "could not store %d log lines of task %s",
                    len(rows),
                    ctx.task_id,
                    extra={"event": "log_flush_failed"},
                )

    async def _finish(
        self,
        claim: Claim,
        outcome: AttemptOutcome,
        metrics: dict[str, Any],
        logs: list[dict[str, Any]],
    ) -> None:
        policy = RetryPolicy.model_validate(claim.task["retry_policy"])
        failures = claim.task["failures"] + (outcome.status is not ExecutionStatus.COMPLETED)
        next_status, available_at = decide_next_status(
            outcome, failures, policy, self.store.clock()
        )
        error = outcome.error
        if next_status is TaskStatus.DEAD_LETTERED:
            error = f"all {policy.max_attempts} attempts failed; last error: {outcome.error}"
        if outcome.status is ExecutionStatus.PAUSED:
            error = None

        await asyncio.to_thread(
            lambda: self.store.finish_execution(
                claim,
                self.worker_id,
                execution_status=outcome.status,
                task_status=next_status,
                error=error,
                error_type=outcome.error_type,
                result=outcome.result,
                available_at=available_at,
                metrics=metrics,
                logs=logs,
            )
        )
        level = logging.INFO if next_status is TaskStatus.COMPLETED else logging.WARNING
        if next_status in (TaskStatus.FAILED, TaskStatus.DEAD_LETTERED, TaskStatus.TIMED_OUT):
            level = logging.ERROR
        logger.log(
            level,
            "task %s attempt %d -> %s",
            claim.task["id"],
            claim.attempt,
            next_status,
            extra={
                "event": "task_finished",
                "task_id": claim.task["id"],
                "attempt": claim.attempt,
                "status": str(next_status),
            },
        )
