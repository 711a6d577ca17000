"""Fixtures shared by every layer: store URLs for both backends, the shared corpus."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from phantom_spire.api import create_app
from phantom_spire.runtime import Runtime
from phantom_spire.settings import Settings
from phantom_spire.store import migrate
from phantom_spire.store.engine import normalise_url
from phantom_spire.store.schema import metadata

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DIR = (REPO_ROOT / ".." / "shared").resolve()
SAMPLE_FEEDS = REPO_ROOT / "tests" / "data" / "feeds"
DEFAULT_TEST_PG = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


def in_ci() -> bool:
    return bool(os.environ.get("CI"))


def shared_path(*parts: str) -> Path:
    """A path under ../shared, skipping the test when a user's clone has none (never in CI)."""
    if not SHARED_DIR.is_dir():
        if in_ci():
            pytest.fail(f"CI is set but the shared folder {SHARED_DIR} is missing")
        pytest.skip(f"needs the shared corpus at {SHARED_DIR}, absent in this clone")
    return SHARED_DIR.joinpath(*parts)


def _postgres_url() -> str:
    return normalise_url(os.environ.get("SPIRE_TEST_POSTGRES_URL", DEFAULT_TEST_PG))


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A freshly migrated PostgreSQL schema of this test session's own.

    Every run gets its own schema (dropped at the end), so two runs sharing the database
    `test` never see each other's tables. Fails instead of skipping when CI is set.
    """
    base = _postgres_url()
    schema = f"spire_test_{os.getpid()}_{int(time.time())}"
    engine = sa.create_engine(base)
    try:
        with engine.begin() as conn:
            conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    except sa.exc.OperationalError as exc:
        engine.dispose()
        message = f"PostgreSQL at {base} is unreachable: {exc.orig}"
        if in_ci():
            pytest.fail(message)
        pytest.skip(message)
    url = sa.engine.make_url(base).update_query_dict({"options": f"-csearch_path={schema}"})
    rendered = url.render_as_string(hide_password=False)
    migrate(rendered)
    yield rendered
    with engine.begin() as conn:
        conn.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
    engine.dispose()


def _truncate_postgres(url: str) -> None:
    engine = sa.create_engine(url)
    names = ", ".join(t.name for t in metadata.sorted_tables)
    with engine.begin() as conn:
        conn.execute(sa.text(f"TRUNCATE {names} CASCADE"))
    engine.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A migrated, empty store: once on SQLite, once on PostgreSQL."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'spire.db'}"
        migrate(url)
        yield url
        return
    url = request.getfixturevalue("postgres_url")
    _truncate_postgres(url)
    yield url


FINAL = {"completed", "failed", "cancelled", "timed_out", "skipped", "dead_lettered"}


def make_test_settings(store_url: str, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "database_url": store_url,
        "workers": 4,
        "poll_seconds": 0.05,
        "heartbeat_seconds": 0.5,
        "lease_seconds": 5,
        "reaper_seconds": 0.5,
        # Tests poll fast; the rate limit has its own test.
        "rate_limit": "1000000/minute",
    }
    values.update(overrides)
    return Settings(**values)


@pytest.fixture
def client(store_url: str) -> Iterator[TestClient]:
    """The API in-process, with its worker pool running, on each store backend.

    It sends the key of the admin created on first start, as a user would.
    """
    runtime = Runtime(make_test_settings(store_url), run_migrations=False)
    _key_id, key = runtime.identity.bootstrap_admin()
    with TestClient(create_app(runtime), headers={"X-API-Key": key}) as test_client:
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
