"""Fixtures shared by every layer: store URLs for both backends, the shared corpus."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

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
def postgres_url() -> str:
    """A freshly migrated PostgreSQL database; fails instead of skipping when CI is set."""
    url = _postgres_url()
    engine = sa.create_engine(url)
    try:
        with engine.begin() as conn:
            conn.execute(sa.text("DROP SCHEMA public CASCADE"))
            conn.execute(sa.text("CREATE SCHEMA public"))
    except sa.exc.OperationalError as exc:
        message = f"PostgreSQL at {url} is unreachable: {exc.orig}"
        if in_ci():
            pytest.fail(message)
        pytest.skip(message)
    finally:
        engine.dispose()
    migrate(url)
    return url


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
