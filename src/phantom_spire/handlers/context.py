"""What a handler receives: its parameters, a logger, progress, checkpoints and stop signals."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import Any, TypeVar

from phantom_spire.store import IndicatorRecord, ProgressUpdate, Store, UpsertStats

__all__ = ["TaskContext", "TaskLogger"]

T = TypeVar("T")

handler_logger = logging.getLogger("phantom_spire.handlers")


class TaskLogger:
    """Collects a handler's log lines as task logs (and forwards them to ``logging``).

    Thread-safe: handlers that do their work in a thread log from there.
    """

    def __init__(self, task_id: str, execution_id: str, attempt: int, clock: Callable[[], float]):
        self._task_id = task_id
        self._execution_id = execution_id
        self._attempt = attempt
        self._clock = clock
        self._lock = threading.Lock()
        self._pending: list[dict[str, Any]] = []

    def _log(self, level: str, message: str, **fields: Any) -> None:
        row = {
            "task_id": self._task_id,
            "execution_id": self._execution_id,
            "attempt": self._attempt,
            "at": self._clock(),
            "level": level,
            "message": message,
            "fields": fields or None,
        }
        with self._lock:
            self._pending.append(row)
        handler_logger.log(
            logging.getLevelName(level.upper()),
            "task %s: %s",
            self._task_id,
            message,
            extra={"event": "task_log", "task_id": self._task_id, "attempt": self._attempt},
        )

    def debug(self, message: str, **fields: Any) -> None:
        self._log("debug", message, **fields)

    def info(self, message: str, **fields: Any) -> None:
        self._log("info", message, **fields)

    def warning(self, message: str, **fields: Any) -> None:
        self._log("warning", message, **fields)

    def error(self, message: str, **fields: Any) -> None:
        self._log("error", message, **fields)

    def drain(self) -> list[dict[str, Any]]:
        """Take the lines logged since the last drain."""
        with self._lock:
            rows, self._pending = self._pending, []
        return rows


@dataclass
class TaskContext:
    """The engine's side of one attempt, as a handler sees it.

    ``*_blocking`` methods are for handler code running in a worker thread (see
    :meth:`run_in_thread`); the async ones are for code on the event loop.
    """

    task_id: str
    execution_id: str
    attempt: int
    parameters: dict[str, Any]
    checkpoint: Any
    logger: TaskLogger
    store: Store
    worker_id: str
    thread_pool: Executor
    stop_requested: threading.Event = field(default_factory=threading.Event)
    stop_reason: str | None = None  # "cancel", "pause", "timeout" or "shutdown"
    # The task's own markings: whatever it produces is marked at least this high.
    classification: int = 0
    tlp: str = "CLEAR"

    @property
    def idempotency_key(self) -> str:
        """Unique per attempt: lets a handler make its side effects safe to repeat."""
        return f"{self.task_id}:{self.attempt}"

    def should_stop(self) -> bool:
        """True once the engine wants the handler to stop (timeout, cancel, shutdown)."""
        return self.stop_requested.is_set()

    async def run_in_thread(self, fn: Callable[..., T], *args: Any) -> T:
        """Run CPU-heavy or blocking work off the event loop, in the handler thread pool."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.thread_pool, fn, *args)

    def save_checkpoint_blocking(
        self, state: Any, done: int | None = None, total: int | None = None
    ) -> None:
        self.checkpoint = state
        self.store.save_progress(
            self.task_id,
            self.worker_id,
            done=done,
            total=total,
            checkpoint=state,
            attempt=self.attempt,
        )

    def progress_blocking(self, done: int, total: int | None = None) -> None:
        self.store.save_progress(
            self.task_id, self.worker_id, done=done, total=total, attempt=self.attempt
        )

    async def save_checkpoint(
        self, state: Any, done: int | None = None, total: int | None = None
    ) -> None:
        await asyncio.to_thread(self.save_checkpoint_blocking, state, done, total)

    async def progress(self, done: int, total: int | None = None) -> None:
        await asyncio.to_thread(self.progress_blocking, done, total)

    def previous_ingestion_volumes(self, source_name: str, limit: int = 10) -> list[int]:
        """How many indicators the last completed ingestions of this source accepted."""
        return self.store.previous_ingestion_volumes(
            source_name, before_task=self.task_id, limit=limit
        )

    def store_indicators_blocking(
        self,
        records: list[IndicatorRecord],
        source: str,
        *,
        checkpoint: Callable[[UpsertStats], Any] | None = None,
        done: int | None = None,
    ) -> UpsertStats:
        """Merge indicators into the intel store, with the checkpoint that follows them.

        ``checkpoint`` turns the batch's stats into the state to save; both are written in
        one transaction, so resuming from the checkpoint never merges the same records twice.
        """
        progress = None
        if checkpoint is not None:

            def progress(stats: UpsertStats) -> ProgressUpdate:
                self.checkpoint = checkpoint(stats)
                return ProgressUpdate(
                    self.task_id, self.worker_id, done, None, self.checkpoint, self.attempt
                )

        return self.store.upsert_indicators(records, source, progress=progress)
