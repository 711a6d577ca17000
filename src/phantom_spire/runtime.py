"""Wires settings, store, handlers, services and the worker into one running engine.

This is also the Python API::

    runtime = Runtime(Settings())
    task = runtime.tasks.create_task(TaskSpec(name="feed", type="data_ingestion", ...))
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from phantom_spire.engine.worker import Worker
from phantom_spire.handlers.registry import HandlerRegistry, default_registry
from phantom_spire.security import ClassificationScheme, RateLimit, TokenBucketLimiter
from phantom_spire.services.identity import IdentityService
from phantom_spire.services.schedules import build_workflow_services
from phantom_spire.services.tasks import TaskService
from phantom_spire.settings import Settings
from phantom_spire.store import Store, migrate

__all__ = ["Runtime"]

logger = logging.getLogger(__name__)


class Runtime:
    """One engine instance: store, handler registry, task service and (optionally) a worker."""

    def __init__(
        self,
        settings: Settings,
        *,
        clock: Callable[[], float] = time.time,
        registry: HandlerRegistry | None = None,
        run_migrations: bool = True,
    ) -> None:
        self.settings = settings
        url = settings.resolved_database_url
        if run_migrations:
            migrate(url)
        self.store = Store(
            url,
            clock=clock,
            aging_points_per_minute=settings.aging_points_per_minute,
            audit_key=settings.audit_key_bytes,
        )
        self.scheme = ClassificationScheme.from_string(settings.classification_levels)
        self.registry = registry or default_registry(settings)
        self.tasks = TaskService(
            self.store,
            self.registry,
            default_timeout_ms=settings.default_timeout_ms,
            on_queued=self._wake_worker,
            scheme=self.scheme,
        )
        self.identity = IdentityService(
            self.store, pepper=settings.pepper_bytes, scheme=self.scheme
        )
        self.limiter = TokenBucketLimiter(RateLimit.parse(settings.rate_limit))
        wired = build_workflow_services(settings, self.tasks, self.registry)
        self.workflows, self.schedules = wired.workflows, wired.schedules
        self.scheduler = wired.scheduler
        self.worker: Worker | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def new_worker(self) -> Worker:
        self.worker = Worker(self.store, self.registry, self.settings)
        return self.worker

    async def run_worker(self) -> None:
        """Run a worker on the current event loop until it is stopped."""
        self._loop = asyncio.get_running_loop()
        worker = self.worker or self.new_worker()
        run_scheduler = self.settings.run_scheduler
        scheduler = asyncio.create_task(self.scheduler.run()) if run_scheduler else None
        try:
            await worker.run()
        finally:
            if scheduler is not None:
                self.scheduler.stop()
                await scheduler

    def stop_worker(self) -> None:
        if self.worker is not None and self._loop is not None:
            self._loop.call_soon_threadsafe(self.worker.stop)

    def _wake_worker(self) -> None:
        # Called from API threads: hand the wake-up to the worker's own loop.
        if self.worker is not None and self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self.worker.wake)

    def close(self) -> None:
        self.store.dispose()
