"""Connections to the store: SQLite in WAL mode (embedded) or PostgreSQL (distributed)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import Engine, make_url

from phantom_spire.errors import ConfigError

__all__ = ["create_engines", "normalise_url"]

logger = logging.getLogger(__name__)

SQLITE_BUSY_TIMEOUT_MS = 30_000


def normalise_url(url: str) -> str:
    """Pick the driver we ship for a bare ``postgresql://`` URL, and reject unknown stores."""
    parsed = make_url(url)
    backend = parsed.get_backend_name()

    if backend == "postgresql" and parsed.drivername == "postgresql":
        return parsed.set(drivername="postgresql+psycopg").render_as_string(hide_password=False)
    if backend not in ("sqlite", "postgresql"):
        raise ConfigError(
            f"SPIRE_DATABASE_URL uses {backend!r}; supported stores are 'sqlite' and 'postgresql'"
        )
    return url


def create_engines(url: str) -> tuple[Engine, Engine]:
    """Return ``(write_engine, read_engine)`` for ``url``.

    On SQLite every write transaction starts with ``BEGIN IMMEDIATE``, so a transaction that
    reads and then writes (a claim) holds the single write lock from its first statement and
    can never fail half-way with SQLITE_BUSY on lock upgrade. Reads use a second engine that
    begins deferred transactions, so the API's reads do not queue behind the writer (WAL).
    On PostgreSQL both are the same engine.
    """
    url = normalise_url(url)
    if make_url(url).get_backend_name() == "sqlite":
        return _sqlite_engine(url, immediate=True), _sqlite_engine(url, immediate=False)

    engine = sa.create_engine(url, pool_size=10, max_overflow=20, pool_pre_ping=True)
    return engine, engine


def _sqlite_engine(url: str, *, immediate: bool) -> Engine:
    database = make_url(url).database
    if database and database != ":memory:":
        Path(database).parent.mkdir(parents=True, exist_ok=True)

    engine = sa.create_engine(
        url,
        connect_args={"check_same_thread": False, "timeout": SQLITE_BUSY_TIMEOUT_MS / 1000},
        pool_size=8,
        max_overflow=16,
    )

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy's begin event issue BEGIN itself; pysqlite's implicit transactions
        # would otherwise start a deferred one behind our back.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        # FULL: a transaction acknowledged to a client survives a power cut, not only a crash.
        cursor.execute("PRAGMA synchronous=FULL")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    begin_sql = "BEGIN IMMEDIATE" if immediate else "BEGIN"

    @event.listens_for(engine, "begin")
    def _on_begin(connection: sa.Connection) -> None:
        connection.exec_driver_sql(begin_sql)

    return engine
