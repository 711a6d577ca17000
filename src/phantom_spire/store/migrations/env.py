"""Alembic environment: runs migrations on the URL the engine passes in its config."""

from __future__ import annotations

from alembic import context

from phantom_spire.store.engine import create_engines
from phantom_spire.store.schema import metadata

config = context.config


def run_migrations_online() -> None:
    engine, _ = create_engines(config.get_main_option("sqlalchemy.url") or "")
    try:
        with engine.connect() as connection:
            context.configure(
                connection=connection,
                target_metadata=metadata,
                render_as_batch=connection.dialect.name == "sqlite",
            )
            with context.begin_transaction():
                context.run_migrations()
    finally:
        engine.dispose()


run_migrations_online()
