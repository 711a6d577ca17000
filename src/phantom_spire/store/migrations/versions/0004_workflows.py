"""Workflows, their tasks and dependencies; schedules and their fires.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-05
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

Epoch = sa.Float(precision=53)
Json = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")
BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def _counter(name: str) -> sa.Column[int]:
    return sa.Column(name, sa.Integer(), server_default="0", nullable=False)


def upgrade() -> None:
    op.create_table(
        "workflows",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("template", sa.String(length=120), nullable=True),
        sa.Column("template_version", sa.Integer(), nullable=True),
        sa.Column("definition", Json, nullable=False),
        sa.Column("parameters", Json, nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("failure_policy", sa.String(length=20), nullable=False),
        sa.Column("max_parallel", sa.Integer(), nullable=False),
        _counter("active_tasks"),
        _counter("done_tasks"),
        _counter("failed_tasks"),
        sa.Column("total_tasks", sa.Integer(), nullable=False),
        sa.Column("owner", sa.String(length=120), nullable=True),
        sa.Column("created_at", Epoch, nullable=False),
        sa.Column("updated_at", Epoch, nullable=False),
        sa.Column("finished_at", Epoch, nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_workflows")),
    )
    op.create_table(
        "schedules",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("task_id", sa.String(length=36), nullable=False),
        sa.Column("kind", sa.String(length=20), nullable=False),
        sa.Column("spec", Json, nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        _counter("executions"),
        sa.Column("last_fire_at", Epoch, nullable=True),
        sa.Column("next_fire_at", Epoch, nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("owner", sa.String(length=120), nullable=True),
        sa.Column("created_at", Epoch, nullable=False),
        sa.Column("updated_at", Epoch, nullable=False),
        sa.ForeignKeyConstraint(["task_id"], ["tasks.id"], name=op.f("fk_schedules_task_id_tasks")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_schedules")),
        sa.UniqueConstraint("task_id", name=op.f("uq_schedules_task_id")),
    )
    op.create_index("ix_schedules_due", "schedules", ["status", "next_fire_at"], unique=False)
    op.create_table(
        "task_dependencies",
        sa.Column("task_id", sa.String(length=36), nullable=False),
        sa.Column("depends_on_id", sa.String(length=36), nullable=False),
        sa.ForeignKeyConstraint(
            ["depends_on_id"], ["tasks.id"], name=op.f("fk_task_dependencies_depends_on_id_tasks")
        ),
        sa.ForeignKeyConstraint(
            ["task_id"], ["tasks.id"], name=op.f("fk_task_dependencies_task_id_tasks")
        ),
        sa.PrimaryKeyConstraint("task_id", "depends_on_id", name=op.f("pk_task_dependencies")),
    )
    op.create_index(
        "ix_task_dependencies_depends_on",
        "task_dependencies",
        ["depends_on_id", "task_id"],
        unique=False,
    )
    op.create_table(
        "workflow_tasks",
        sa.Column("task_id", sa.String(length=36), nullable=False),
        sa.Column("workflow_id", sa.String(length=36), nullable=False),
        sa.Column("step", sa.String(length=64), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=20), nullable=False),
        sa.Column("item", Json, nullable=True),
        sa.Column("deps_total", sa.Integer(), nullable=False),
        _counter("deps_done"),
        _counter("deps_ok"),
        _counter("deps_skipped"),
        _counter("deps_failed"),
        sa.Column("ready", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column("admitted", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column("approval_due_at", Epoch, nullable=True),
        sa.Column("decision", Json, nullable=True),
        sa.ForeignKeyConstraint(
            ["task_id"], ["tasks.id"], name=op.f("fk_workflow_tasks_task_id_tasks")
        ),
        sa.ForeignKeyConstraint(
            ["workflow_id"], ["workflows.id"], name=op.f("fk_workflow_tasks_workflow_id_workflows")
        ),
        sa.PrimaryKeyConstraint("task_id", name=op.f("pk_workflow_tasks")),
    )
    op.create_index(
        "ix_workflow_tasks_ready", "workflow_tasks", ["workflow_id", "ready", "seq"], unique=False
    )
    op.create_index(
        "ix_workflow_tasks_workflow", "workflow_tasks", ["workflow_id", "step"], unique=False
    )
    op.create_table(
        "schedule_fires",
        sa.Column("id", BigId, autoincrement=True, nullable=False),
        sa.Column("schedule_id", sa.String(length=36), nullable=False),
        sa.Column("fire_time", Epoch, nullable=False),
        sa.Column("trigger_key", sa.String(length=200), server_default="", nullable=False),
        sa.Column("task_id", sa.String(length=36), nullable=True),
        sa.Column("fired_at", Epoch, nullable=False),
        sa.ForeignKeyConstraint(
            ["schedule_id"], ["schedules.id"], name=op.f("fk_schedule_fires_schedule_id_schedules")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_schedule_fires")),
        sa.UniqueConstraint(
            "schedule_id",
            "fire_time",
            "trigger_key",
            name=op.f("uq_schedule_fires_schedule_id_fire_time_trigger_key"),
        ),
    )


def downgrade() -> None:
    op.drop_table("schedule_fires")
    op.drop_index("ix_workflow_tasks_workflow", table_name="workflow_tasks")
    op.drop_index("ix_workflow_tasks_ready", table_name="workflow_tasks")
    op.drop_table("workflow_tasks")
    op.drop_index("ix_task_dependencies_depends_on", table_name="task_dependencies")
    op.drop_table("task_dependencies")
    op.drop_index("ix_schedules_due", table_name="schedules")
    op.drop_table("schedules")
    op.drop_table("workflows")
