"""Security: users, API keys, task markings, and the audit hash chain.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

Epoch = sa.Float(precision=53)
Json = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")


def upgrade() -> None:
    with op.batch_alter_table("tasks") as batch:
        batch.add_column(sa.Column("department", sa.String(length=120), nullable=True))
        batch.add_column(
            sa.Column("classification", sa.Integer(), server_default="0", nullable=False)
        )
        batch.add_column(
            sa.Column("tlp", sa.String(length=20), server_default="CLEAR", nullable=False)
        )
    with op.batch_alter_table("audit_events") as batch:
        # The id keeps its old sequence default on PostgreSQL; the chain always inserts
        # explicit ids (previous + 1), so the default is never used.
        batch.add_column(sa.Column("key_id", sa.String(length=64), nullable=True))
        batch.add_column(sa.Column("request_id", sa.String(length=64), nullable=True))
        batch.add_column(sa.Column("source_address", sa.String(length=64), nullable=True))
        batch.add_column(sa.Column("prev_hash", sa.String(length=64), nullable=True))
        batch.add_column(sa.Column("hash", sa.String(length=64), nullable=True))
    op.create_table(
        "users",
        sa.Column("id", sa.String(length=120), nullable=False),
        sa.Column("role", sa.String(length=20), nullable=False),
        sa.Column("department", sa.String(length=120), nullable=False),
        sa.Column("clearance", sa.Integer(), nullable=False),
        sa.Column("grants", Json, nullable=False),
        sa.Column("created_at", Epoch, nullable=False),
        sa.Column("disabled_at", Epoch, nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_users")),
    )
    op.create_table(
        "api_keys",
        sa.Column("key_id", sa.String(length=64), nullable=False),
        sa.Column("user_id", sa.String(length=120), nullable=False),
        sa.Column("secret_hash", sa.String(length=200), nullable=False),
        sa.Column("label", sa.String(length=200), server_default="", nullable=False),
        sa.Column("created_at", Epoch, nullable=False),
        sa.Column("expires_at", Epoch, nullable=True),
        sa.Column("revoked_at", Epoch, nullable=True),
        sa.Column("replaced_by", sa.String(length=64), nullable=True),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], name=op.f("fk_api_keys_user_id_users")),
        sa.PrimaryKeyConstraint("key_id", name=op.f("pk_api_keys")),
    )


def downgrade() -> None:
    op.drop_table("api_keys")
    op.drop_table("users")
    with op.batch_alter_table("audit_events") as batch:
        for column in ("hash", "prev_hash", "source_address", "request_id", "key_id"):
            batch.drop_column(column)
    with op.batch_alter_table("tasks") as batch:
        for column in ("tlp", "classification", "department"):
            batch.drop_column(column)
