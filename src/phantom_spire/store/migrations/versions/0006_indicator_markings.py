"""Indicator markings: strictest TLP and highest classification of the reporting tasks.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("indicators") as batch:
        batch.add_column(sa.Column("tlp", sa.Integer(), server_default="0", nullable=False))
        batch.add_column(
            sa.Column("classification", sa.Integer(), server_default="0", nullable=False)
        )


def downgrade() -> None:
    with op.batch_alter_table("indicators") as batch:
        batch.drop_column("classification")
        batch.drop_column("tlp")
