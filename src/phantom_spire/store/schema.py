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
    "task_logs",
    "tasks",
    "users",
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
