"""The exceptions of Phantom Spire, under one base.

    SpireError
     ├── ConfigError              a setting is missing or contradicts another
     ├── TaskNotFound             no task with that id (or not visible to the caller)
     ├── IllegalTransition        the state machine forbids the move
     ├── IdempotencyConflict      an idempotency key reused with another body
     ├── LeaseLost                a worker no longer owns the task it is working on
     ├── InvalidTaskDefinition    a task definition is malformed (unknown handler, bad parameters)
     ├── InvalidQuery             a listing or search request is malformed
     └── HandlerError             raised by handlers; says whether a retry may help

The API maps each class to an HTTP status in one place (``api.problems``).
"""

from __future__ import annotations

__all__ = [
    "ConfigError",
    "HandlerError",
    "IdempotencyConflict",
    "IllegalTransition",
    "InvalidQuery",
    "InvalidTaskDefinition",
    "LeaseLost",
    "NotFound",
    "SpireError",
    "TaskNotFound",
]


class SpireError(Exception):
    """Base class of every error raised by Phantom Spire."""


class ConfigError(SpireError):
    """A setting is missing, malformed or contradicts another setting."""


class TaskNotFound(SpireError):
    """No task has the given id."""

    def __init__(self, task_id: str) -> None:
        super().__init__(f"no task with id {task_id!r}")
        self.task_id = task_id


class IllegalTransition(SpireError):
    """The task state machine does not allow this event in the task's current state."""

    def __init__(self, task_id: str, current: str, action: str, allowed: frozenset[str]) -> None:
        allowed_text = ", ".join(repr(s) for s in sorted(allowed)) or "no state"
        super().__init__(
            f"cannot {action} task {task_id}: it is {current!r}; "
            f"{action} is allowed from {allowed_text}"
        )
        self.task_id = task_id
        self.current = current
        self.action = action
        self.allowed = allowed


class LeaseLost(SpireError):
    """The worker's lease on a task expired or was taken over; its result is discarded."""

    def __init__(self, task_id: str, worker_id: str) -> None:
        super().__init__(f"worker {worker_id!r} no longer holds the lease on task {task_id}")
        self.task_id = task_id
        self.worker_id = worker_id


class InvalidTaskDefinition(SpireError):
    """A task definition names an unknown handler or carries parameters it cannot accept."""

    def __init__(self, message: str, *, field: str | None = None, value: object = None) -> None:
        super().__init__(message)
        self.field = field
        self.value = value


class IdempotencyConflict(SpireError):
    """An idempotency key was reused with a different request body."""

    def __init__(self, key: str, task_id: str) -> None:
        super().__init__(
            f"idempotency key {key!r} was first used for task {task_id} with a different body"
        )
        self.key = key
        self.task_id = task_id


class InvalidQuery(SpireError):
    """A listing or search request is malformed (a bad filter, sort key or cursor)."""

    def __init__(self, message: str, *, field: str, value: object) -> None:
        super().__init__(message)
        self.field = field
        self.value = value


class NotFound(SpireError):
    """A user, key or other named thing does not exist (answered 404)."""

    def __init__(self, kind: str, name: str) -> None:
        super().__init__(f"no {kind} {name!r}")
        self.kind = kind
        self.name = name


class HandlerError(SpireError):
    """A handler failed. ``retryable=False`` means a retry cannot help (bad input)."""

    def __init__(self, message: str, *, retryable: bool = True) -> None:
        super().__init__(message)
        self.retryable = retryable
