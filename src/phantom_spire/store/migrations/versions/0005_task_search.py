"""Task search: snapshot cursors, and full-text indexes (SQLite FTS5, PostgreSQL tsvector).

The full-text structures are outside the SQLAlchemy metadata (a virtual table and triggers on
SQLite, an expression index on PostgreSQL); the store queries them by name.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

Json = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")

# What search sees of a task: its name, its tags, and metadata.description.
PG_DOCUMENT = (
    "to_tsvector('simple', coalesce(name, '') || ' ' || coalesce(tags::text, '') || ' ' "
    "|| coalesce(metadata->>'description', ''))"
)

SQLITE_FTS = [
    "CREATE VIRTUAL TABLE tasks_fts USING fts5(task_id UNINDEXED, name, tags, description)",
    """CREATE TRIGGER tasks_fts_insert AFTER INSERT ON tasks BEGIN
        INSERT INTO tasks_fts (task_id, name, tags, description)
        VALUES (new.id, new.name, new.tags, json_extract(new.metadata, '$.description'));
    END""",
    """CREATE TRIGGER tasks_fts_update AFTER UPDATE OF name, tags, metadata ON tasks BEGIN
        DELETE FROM tasks_fts WHERE task_id = old.id;
        INSERT INTO tasks_fts (task_id, name, tags, description)
        VALUES (new.id, new.name, new.tags, json_extract(new.metadata, '$.description'));
    END""",
    """CREATE TRIGGER tasks_fts_delete AFTER DELETE ON tasks BEGIN
        DELETE FROM tasks_fts WHERE task_id = old.id;
    END""",
    """INSERT INTO tasks_fts (task_id, name, tags, description)
        SELECT id, name, tags, json_extract(metadata, '$.description') FROM tasks""",
]


def upgrade() -> None:
    op.create_table(
        "task_cursors",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("owner", sa.String(length=120), nullable=False),
        sa.Column("task_ids", Json, nullable=False),
        sa.Column("created_at", sa.Float(precision=53), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_task_cursors")),
    )
    if op.get_bind().dialect.name == "sqlite":
        for statement in SQLITE_FTS:
            op.execute(statement)
    else:
        op.execute(f"CREATE INDEX ix_tasks_search ON tasks USING gin ({PG_DOCUMENT})")


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        for name in ("tasks_fts_insert", "tasks_fts_update", "tasks_fts_delete"):
            op.execute(f"DROP TRIGGER IF EXISTS {name}")
        op.execute("DROP TABLE IF EXISTS tasks_fts")
    else:
        op.execute("DROP INDEX IF EXISTS ix_tasks_search")
    op.drop_table("task_cursors")
