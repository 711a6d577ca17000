"""Named task handlers and the context they run in."""

from __future__ import annotations

from phantom_spire.handlers.context import TaskContext, TaskLogger
from phantom_spire.handlers.registry import Handler, HandlerRegistry, default_registry

__all__ = ["Handler", "HandlerRegistry", "TaskContext", "TaskLogger", "default_registry"]
