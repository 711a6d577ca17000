"""Services: the one place that validates requests, applies policy and writes audit events."""

from __future__ import annotations

from phantom_spire.services.tasks import TaskService, TaskSpec

__all__ = ["TaskService", "TaskSpec"]
