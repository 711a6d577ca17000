"""The task state machine: every state, and the one table of moves between them.

Every state change in the engine goes through :func:`check_transition`; the store refuses
to write a status that this table does not allow, so no code path can bypass it.
"""

from __future__ import annotations

from enum import StrEnum

from phantom_spire.errors import IllegalTransition

__all__ = [
    "ACTIVE_STATES",
    "TERMINAL_STATES",
    "TRANSITIONS",
    "ExecutionStatus",
    "Priority",
    "TaskStatus",
    "allowed_from",
    "check_transition",
]


class TaskStatus(StrEnum):
    PENDING = "pending"
    BLOCKED = "blocked"
    SCHEDULED = "scheduled"
    QUEUED = "queued"
    RUNNING = "running"
    PAUSED = "paused"
    RETRY_WAIT = "retry_wait"
    CANCELLING = "cancelling"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"
    TIMED_OUT = "timed_out"
    SKIPPED = "skipped"
    DEAD_LETTERED = "dead_lettered"


class ExecutionStatus(StrEnum):
    """Outcome of one attempt. ``lost`` means its worker vanished and the lease expired."""

    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    TIMED_OUT = "timed_out"
    CANCELLED = "cancelled"
    LOST = "lost"


class Priority(StrEnum):
    CRITICAL = "critical"
    HIGH = "high"
    NORMAL = "normal"
    LOW = "low"
    BACKGROUND = "background"

    @property
    def rank(self) -> int:
        """Numeric rank stored with the task; higher runs first."""
        return _PRIORITY_RANKS[self]

    @classmethod
    def from_rank(cls, rank: int) -> Priority:
        return next(p for p, r in _PRIORITY_RANKS.items() if r == rank)


_PRIORITY_RANKS = {
    Priority.CRITICAL: 400,
    Priority.HIGH: 300,
    Priority.NORMAL: 200,
    Priority.LOW: 100,
    Priority.BACKGROUND: 0,
}

S = TaskStatus

TRANSITIONS: dict[TaskStatus, frozenset[TaskStatus]] = {
    S.PENDING: frozenset({S.QUEUED, S.BLOCKED, S.SCHEDULED, S.CANCELLED, S.SKIPPED}),
    S.BLOCKED: frozenset({S.QUEUED, S.CANCELLED, S.SKIPPED}),
    S.SCHEDULED: frozenset({S.QUEUED, S.CANCELLED}),
    S.QUEUED: frozenset({S.RUNNING, S.PAUSED, S.CANCELLED}),
    S.RUNNING: frozenset(
        {
            S.COMPLETED,
            S.FAILED,
            S.TIMED_OUT,
            S.RETRY_WAIT,
            S.QUEUED,  # lease expired and the attempt is retried
            S.PAUSED,
            S.CANCELLING,
            S.DEAD_LETTERED,
        }
    ),
    S.RETRY_WAIT: frozenset({S.QUEUED, S.PAUSED, S.CANCELLED}),
    S.PAUSED: frozenset({S.QUEUED, S.CANCELLED}),
    S.CANCELLING: frozenset({S.CANCELLED}),
    S.COMPLETED: frozenset(),
    S.FAILED: frozenset({S.QUEUED}),  # an operator's manual retry
    S.CANCELLED: frozenset({S.QUEUED}),
    S.TIMED_OUT: frozenset({S.QUEUED}),
    S.SKIPPED: frozenset(),
    S.DEAD_LETTERED: frozenset({S.QUEUED}),
}

TERMINAL_STATES = frozenset(
    {S.COMPLETED, S.FAILED, S.CANCELLED, S.TIMED_OUT, S.SKIPPED, S.DEAD_LETTERED}
)
ACTIVE_STATES = frozenset(TaskStatus) - TERMINAL_STATES


def allowed_from(current: TaskStatus) -> frozenset[TaskStatus]:
    """The states a task may move to from ``current``."""
    return TRANSITIONS[current]


def check_transition(task_id: str, current: str, target: str) -> None:
    """Raise :class:`IllegalTransition` unless the table allows ``current`` -> ``target``."""
    allowed = TRANSITIONS[TaskStatus(current)]
    if TaskStatus(target) not in allowed:
        raise IllegalTransition(
            task_id, str(current), str(target), frozenset(s.value for s in allowed)
        )
