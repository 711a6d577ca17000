"""Schema migrations, run through Alembic from code (``spire migrate`` and start-up)."""

from __future__ import annotations

import logging
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext

from phantom_spire.store.engine import create_engines, normalise_url

__all__ = ["alembic_config", "current_revision", "migrate"]

logger = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).parent / "migrations"


def alembic_config(url: str) -> Config:
    """An Alembic config pointing at the shipped migrations and ``url``."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    # ConfigParser would read '%' in a password as interpolation.
    config.set_main_option("sqlalchemy.url", normalise_url(url).replace("%", "%%"))
    return config


def migrate(url: str, revision: str = "head") -> None:
    """Bring the store at ``url`` up to ``revision``."""
    logger.info("migrating store to %s", revision, extra={"event": "store_migrate"})
    command.upgrade(alembic_config(url), revision)


def current_revision(url: str) -> str | None:
    """The revision the store at ``url`` is at, or None for an empty database."""
    engine, _ = create_engines(url)
    try:
        with engine.connect() as conn:
            return MigrationContext.configure(conn).get_current_revision()
    finally:
        engine.dispose()
