"""Workflow indexes: compensation steps by workflow, approvals by deadline.

Neither query runs per finished task, but both scanned more than they needed:

* Finding a workflow's compensation tasks (when it finishes or fails) started on SQLite
  from ``tasks.status``, reading every pending task in the store; ``(workflow_id, kind)``
  lets it read only that workflow's compensation links.
* The scheduler looks for approvals whose deadline passed on every tick (every second by
  default), which read all of ``workflow_tasks``; ``approval_due_at`` is NULL except on
  approvals still waiting, so its index stays small and the lookup is a range read.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-05
"""

from __future__ import annotations

from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_workflow_tasks_kind", "workflow_tasks", ["workflow_id", "kind"])
    op.create_index("ix_workflow_tasks_approval_due", "workflow_tasks", ["approval_due_at"])


def downgrade() -> None:
    op.drop_index("ix_workflow_tasks_approval_due", table_name="workflow_tasks")
    op.drop_index("ix_workflow_tasks_kind", table_name="workflow_tasks")
