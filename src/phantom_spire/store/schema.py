"""The tables of the store, as SQLAlchemy Core metadata.

Times are stored as UNIX epoch seconds (double precision) so that lease, backoff and aging
arithmetic is the same plain SQL on SQLite and PostgreSQL. The Alembic migrations create
these tables; this module is their single description in code, and a test checks the two
agree.
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB

__all__ = [
    "api_keys",
    "audit_events",
    "executions",
    "indicator_sources",
    "indicators",
    "metadata",
    "schedule_fires",
    "schedules",
    "task_cursors",
    "task_dependencies",
    "task_logs",
    "tasks",
    "users",
    "workflow_tasks",
    "workflows",
]

metadata = sa.MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

Json = sa.JSON().with_variant(JSONB(), "postgresql")
BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
Epoch = sa.Float(precision=53)

tasks = sa.Table(
    "tasks",
    metadata,
    sa.Column("id", sa.String(36), primary_key=True),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("type", sa.String(64), nullable=False),
    sa.Column("handler", sa.String(64), nullable=False),
    sa.Column("parameters", Json, nullable=False),
    sa.Column("priority", sa.Integer, nullable=False),
    sa.Column("effective_priority", sa.Integer, nullable=False),
    sa.Column("status", sa.String(20), nullable=False),
    sa.Column("timeout_ms", sa.BigInteger, nullable=False),
    sa.Column("retry_policy", Json, nullable=False),
    sa.Column("max_attempts", sa.Integer, nullable=False),
    sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
    sa.Column("tags", Json, nullable=False),
    sa.Column("metadata", Json, nullable=False),
    sa.Column("owner", sa.String(120)),
    sa.Column("result", Json),
    sa.Column("error", sa.Text),
    sa.Column("checkpoint", Json),
    sa.Column("progress_done", sa.BigInteger),
    sa.Column("progress_total", sa.BigInteger),
    sa.Column("lease_owner", sa.String(200)),
    sa.Column("lease_expires_at", Epoch),
    sa.Column("available_at", Epoch),
    sa.Column("enqueued_at", Epoch),
    sa.Column("created_at", Epoch, nullable=False),
    sa.Column("updated_at", Epoch, nullable=False),
    sa.Column("started_at", Epoch),
    sa.Column("finished_at", Epoch),
    sa.Column("idempotency_key", sa.String(200), unique=True),
    sa.Column("deleted_at", Epoch),
    sa.Column("version", sa.Integer, nullable=False, server_default="1"),
    # Added in 0002: attempts that failed (a pause does not use up the retry budget), the
    # body hash behind an idempotency key, the first time the task was queued (queue wait),
    # and when a cancel or pause was asked of a running task (its grace period).
    sa.Column("failures", sa.Integer, nullable=False, server_default="0"),
    sa.Column("idempotency_hash", sa.String(64)),
    sa.Column("first_enqueued_at", Epoch),
    sa.Column("stop_requested_at", Epoch),
    # Added in 0003: who may see and act on the task.
    sa.Column("department", sa.String(120)),
    sa.Column("classification", sa.Integer, nullable=False, server_default="0"),
    sa.Column("tlp", sa.String(20), nullable=False, server_default="CLEAR"),
    sa.Index("ix_tasks_claim", "status", "effective_priority", "enqueued_at"),
    sa.Index("ix_tasks_lease", "status", "lease_expires_at"),
    sa.Index("ix_tasks_due", "status", "available_at"),
    sa.Index("ix_tasks_type_status", "type", "status"),
)

executions = sa.Table(
    "executions",
    metadata,
    sa.Column("id", sa.String(36), primary_key=True),
    sa.Column("task_id", sa.String(36), sa.ForeignKey("tasks.id"), nullable=False),
    sa.Column("attempt", sa.Integer, nullable=False),
    sa.Column("status", sa.String(20), nullable=False),
    sa.Column("worker_id", sa.String(200), nullable=False),
    sa.Column("started_at", Epoch, nullable=False),
    sa.Column("finished_at", Epoch),
    sa.Column("error", sa.Text),
    sa.Column("error_type", sa.String(120)),
    sa.Column("metrics", Json),
    # Two workers can never record the same attempt of a task: the store refuses the second.
    sa.UniqueConstraint("task_id", "attempt"),
)

task_logs = sa.Table(
    "task_logs",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("task_id", sa.String(36), sa.ForeignKey("tasks.id"), nullable=False),
    sa.Column("execution_id", sa.String(36)),
    sa.Column("attempt", sa.Integer),
    sa.Column("at", Epoch, nullable=False),
    sa.Column("level", sa.String(10), nullable=False),
    sa.Column("message", sa.Text, nullable=False),
    sa.Column("fields", Json),
    sa.Index("ix_task_logs_task", "task_id", "id"),
)

audit_events = sa.Table(
    "audit_events",
    metadata,
    # Ids are chain positions, assigned as previous + 1 in the appending transaction (a
    # sequence's gaps would be indistinguishable from deleted events).
    sa.Column("id", BigId, primary_key=True, autoincrement=False),
    sa.Column("at", Epoch, nullable=False),
    sa.Column("actor", sa.String(200), nullable=False),
    sa.Column("action", sa.String(64), nullable=False),
    sa.Column("target_type", sa.String(32), nullable=False),
    sa.Column("target_id", sa.String(64)),
    sa.Column("outcome", sa.String(16), nullable=False),
    sa.Column("details", Json),
    # Added in 0003: the hash chain and request context.
    sa.Column("key_id", sa.String(64)),
    sa.Column("request_id", sa.String(64)),
    sa.Column("source_address", sa.String(64)),
    sa.Column("prev_hash", sa.String(64)),
    sa.Column("hash", sa.String(64)),
    sa.Index("ix_audit_events_target", "target_type", "target_id"),
)

users = sa.Table(
    "users",
    metadata,
    sa.Column("id", sa.String(120), primary_key=True),
    sa.Column("role", sa.String(20), nullable=False),
    sa.Column("department", sa.String(120), nullable=False),
    sa.Column("clearance", sa.Integer, nullable=False),
    sa.Column("grants", Json, nullable=False),
    sa.Column("created_at", Epoch, nullable=False),
    sa.Column("disabled_at", Epoch),
)

api_keys = sa.Table(
    "api_keys",
    metadata,
    sa.Column("key_id", sa.String(64), primary_key=True),
    sa.Column("user_id", sa.String(120), sa.ForeignKey("users.id"), nullable=False),
    sa.Column("secret_hash", sa.String(200), nullable=False),
    sa.Column("label", sa.String(200), nullable=False, server_default=""),
    sa.Column("created_at", Epoch, nullable=False),
    sa.Column("expires_at", Epoch),
    sa.Column("revoked_at", Epoch),
    sa.Column("replaced_by", sa.String(64)),
)

indicators = sa.Table(
    "indicators",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("type", sa.String(32), nullable=False),
    sa.Column("value", sa.Text, nullable=False),
    sa.Column("first_seen", Epoch, nullable=False),
    sa.Column("last_seen", Epoch, nullable=False),
    sa.Column("count", sa.BigInteger, nullable=False),
    sa.Column("confidence", sa.Integer),
    sa.Column("tags", Json, nullable=False),
    # Added in 0006: the strictest TLP (rank, CLEAR=0 ... RED=4) and the highest
    # classification (level rank) of every task that reported the indicator.
    sa.Column("tlp", sa.Integer, nullable=False, server_default="0"),
    sa.Column("classification", sa.Integer, nullable=False, server_default="0"),
    sa.UniqueConstraint("type", "value"),
)

indicator_sources = sa.Table(
    "indicator_sources",
    metadata,
    sa.Column(
        "indicator_id", BigId, sa.ForeignKey("indicators.id"), primary_key=True, nullable=False
    ),
    sa.Column("source", sa.Text, primary_key=True, nullable=False),
    sa.Column("first_seen", Epoch, nullable=False),
    sa.Column("last_seen", Epoch, nullable=False),
    sa.Column("count", sa.BigInteger, nullable=False),
)

# -- workflows and schedules (0004) ----------------------------------------------------------

workflows = sa.Table(
    "workflows",
    metadata,
    sa.Column("id", sa.String(36), primary_key=True),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("template", sa.String(120)),
    sa.Column("template_version", sa.Integer),
    # The whole definition the workflow started from: it stays pinned to it when the template
    # file changes later.
    sa.Column("definition", Json, nullable=False),
    sa.Column("parameters", Json, nullable=False),
    sa.Column("status", sa.String(20), nullable=False),
    sa.Column("failure_policy", sa.String(20), nullable=False),
    sa.Column("max_parallel", sa.Integer, nullable=False),
    # Admission counters, changed in the transaction of each step's state change: tasks let
    # into the queue and not yet finished, tasks finished, tasks that ended badly.
    sa.Column("active_tasks", sa.Integer, nullable=False, server_default="0"),
    sa.Column("done_tasks", sa.Integer, nullable=False, server_default="0"),
    sa.Column("failed_tasks", sa.Integer, nullable=False, server_default="0"),
    sa.Column("total_tasks", sa.Integer, nullable=False),
    sa.Column("owner", sa.String(120)),
    sa.Column("created_at", Epoch, nullable=False),
    sa.Column("updated_at", Epoch, nullable=False),
    sa.Column("finished_at", Epoch),
)

workflow_tasks = sa.Table(
    "workflow_tasks",
    metadata,
    sa.Column("task_id", sa.String(36), sa.ForeignKey("tasks.id"), primary_key=True),
    sa.Column("workflow_id", sa.String(36), sa.ForeignKey("workflows.id"), nullable=False),
    sa.Column("step", sa.String(64), nullable=False),
    sa.Column("seq", sa.Integer, nullable=False),
    sa.Column("kind", sa.String(20), nullable=False),
    sa.Column("item", Json),
    # Readiness counters over the task's direct dependencies, so a finished dependency costs
    # one update here instead of a scan of every other dependency.
    sa.Column("deps_total", sa.Integer, nullable=False),
    sa.Column("deps_done", sa.Integer, nullable=False, server_default="0"),
    sa.Column("deps_ok", sa.Integer, nullable=False, server_default="0"),
    sa.Column("deps_skipped", sa.Integer, nullable=False, server_default="0"),
    sa.Column("deps_failed", sa.Integer, nullable=False, server_default="0"),
    # Dependencies met but held back by the workflow's parallelism limit or a human approval.
    sa.Column("ready", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("admitted", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("approval_due_at", Epoch),
    sa.Column("decision", Json),
    sa.Index("ix_workflow_tasks_workflow", "workflow_id", "step"),
    sa.Index("ix_workflow_tasks_ready", "workflow_id", "ready", "seq"),
    # Migration 0007: a workflow's compensation links; approvals past their deadline.
    sa.Index("ix_workflow_tasks_kind", "workflow_id", "kind"),
    sa.Index("ix_workflow_tasks_approval_due", "approval_due_at"),
)

task_dependencies = sa.Table(
    "task_dependencies",
    metadata,
    sa.Column("task_id", sa.String(36), sa.ForeignKey("tasks.id"), primary_key=True),
    sa.Column("depends_on_id", sa.String(36), sa.ForeignKey("tasks.id"), primary_key=True),
    # The reverse direction: who waits on a task that just finished.
    sa.Index("ix_task_dependencies_depends_on", "depends_on_id", "task_id"),
)

schedules = sa.Table(
    "schedules",
    metadata,
    sa.Column("id", sa.String(36), primary_key=True),
    sa.Column("task_id", sa.String(36), sa.ForeignKey("tasks.id"), nullable=False, unique=True),
    sa.Column("kind", sa.String(20), nullable=False),
    sa.Column("spec", Json, nullable=False),
    sa.Column("status", sa.String(20), nullable=False),
    sa.Column("executions", sa.Integer, nullable=False, server_default="0"),
    sa.Column("last_fire_at", Epoch),
    sa.Column("next_fire_at", Epoch),
    sa.Column("last_error", sa.Text),
    sa.Column("owner", sa.String(120)),
    sa.Column("created_at", Epoch, nullable=False),
    sa.Column("updated_at", Epoch, nullable=False),
    sa.Index("ix_schedules_due", "status", "next_fire_at"),
)

schedule_fires = sa.Table(
    "schedule_fires",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("schedule_id", sa.String(36), sa.ForeignKey("schedules.id"), nullable=False),
    sa.Column("fire_time", Epoch, nullable=False),
    # '' for timed slots; for an event-driven fire, the event's identity (so two events at the
    # same instant are two fires, and one event delivered twice is one).
    sa.Column("trigger_key", sa.String(200), nullable=False, server_default=""),
    sa.Column("task_id", sa.String(36)),
    sa.Column("fired_at", Epoch, nullable=False),
    # The guarantee behind "each slot fires once", even with several schedulers running.
    sa.UniqueConstraint("schedule_id", "fire_time", "trigger_key"),
)

# -- query snapshots (0005) ------------------------------------------------------------------
# A paged listing remembers the ordered ids of its first page's query, so later pages neither
# skip nor repeat a task while others are inserted or updated between requests.
task_cursors = sa.Table(
    "task_cursors",
    metadata,
    sa.Column("id", sa.String(36), primary_key=True),
    sa.Column("owner", sa.String(120), nullable=False),
    sa.Column("task_ids", Json, nullable=False),
    sa.Column("created_at", Epoch, nullable=False),
)
