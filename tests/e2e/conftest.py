"""An in-process API with its worker pool, on each store backend."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from phantom_spire.api import create_app
from phantom_spire.runtime import Runtime
from phantom_spire.settings import Settings

FINAL = {"completed", "failed", "cancelled", "timed_out", "skipped", "dead_lettered"}


@pytest.fixture
def client(store_url: str) -> Iterator[TestClient]:
    settings = Settings(
        database_url=store_url,
        workers=4,
        poll_seconds=0.05,
        heartbeat_seconds=0.5,
        lease_seconds=5,
        reaper_seconds=0.5,
    )
    runtime = Runtime(settings, run_migrations=False)
    with TestClient(create_app(runtime)) as test_client:
        yield test_client
    runtime.close()


def wait_final(client: TestClient, task_id: str, timeout: float = 20.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        task = client.get(f"/api/v1/tasks/{task_id}").json()
        if task["status"] in FINAL:
            return task
        time.sleep(0.05)
    raise AssertionError(f"task {task_id} did not finish within {timeout}s: {task['status']}")
