"""Columns for execution control: failures, idempotency hash, first queue time, stop requests.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("tasks") as batch:
        batch.add_column(sa.Column("failures", sa.Integer(), server_default="0", nullable=False))
        batch.add_column(sa.Column("idempotency_hash", sa.String(length=64), nullable=True))
        batch.add_column(sa.Column("first_enqueued_at", sa.Float(precision=53), nullable=True))
        batch.add_column(sa.Column("stop_requested_at", sa.Float(precision=53), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("tasks") as batch:
        batch.drop_column("stop_requested_at")
        batch.drop_column("first_enqueued_at")
        batch.drop_column("idempotency_hash")
        batch.drop_column("failures")
