"""The task state machine: every state, every event, and the one table of moves.

Every state change in the engine is an :class:`Event` applied through :func:`next_status`;
the store computes the new status from this table and nothing else, so no code path can
write a status the table does not allow. Keying the table by event (not only by the pair of
states) keeps distinct what looks alike: a worker's lost lease may send a running task back
to the queue, but an operator's ``execute`` may not.
"""

from __future__ import annotations

from enum import StrEnum

from phantom_spire.errors import IllegalTransition

__all__ = [
    "ACTIVE_STATES",
    "HELD_STATES",
    "OUTCOME_EVENTS",
    "TERMINAL_STATES",
    "TRANSITIONS",
    "Event",
    "ExecutionStatus",
    "Priority",
    "TaskStatus",
    "allowed_from",
    "next_status",
    "outcome_event",
]


class TaskStatus(StrEnum):
    PENDING = "pending"
    BLOCKED = "blocked"
    SCHEDULED = "scheduled"
    QUEUED = "queued"
    RUNNING = "running"
    PAUSED = "paused"
    RETRY_WAIT = "retry_wait"
    PAUSING = "pausing"
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
    PAUSED = "paused"
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


class Event(StrEnum):
    """Everything that can happen to a task. Each names one column of the table below."""

    EXECUTE = "execute"
    CLAIM = "claim"
    COMPLETE = "complete"
    FAIL = "fail"
    TIME_OUT = "time_out"
    RETRY_LATER = "retry_later"
    DEAD_LETTER = "dead_letter"
    PROMOTE = "promote"
    LEASE_EXPIRED = "lease_expired"
    CANCEL = "cancel"
    CONFIRM_CANCEL = "confirm_cancel"
    PAUSE = "pause"
    CONFIRM_PAUSE = "confirm_pause"
    RESUME = "resume"
    RETRY = "retry"
    BLOCK = "block"
    UNBLOCK = "unblock"
    SCHEDULE = "schedule"
    FIRE = "fire"
    SKIP = "skip"
    UNSCHEDULE = "unschedule"


S = TaskStatus
E = Event

# The one table of moves: for each event, the state it moves a task to from each state
# where it is allowed. Anything missing is an IllegalTransition.
TRANSITIONS: dict[Event, dict[TaskStatus, TaskStatus]] = {
    E.EXECUTE: {S.PENDING: S.QUEUED},
    E.CLAIM: {S.QUEUED: S.RUNNING},
    # An attempt that finishes its work while a cancel or pause is pending still completes.
    E.COMPLETE: {S.RUNNING: S.COMPLETED, S.CANCELLING: S.COMPLETED, S.PAUSING: S.COMPLETED},
    E.FAIL: {S.RUNNING: S.FAILED, S.PAUSING: S.FAILED},
    E.TIME_OUT: {S.RUNNING: S.TIMED_OUT},
    E.RETRY_LATER: {S.RUNNING: S.RETRY_WAIT},
    E.DEAD_LETTER: {S.RUNNING: S.DEAD_LETTERED},
    E.PROMOTE: {S.RETRY_WAIT: S.QUEUED},
    # The worker vanished: its attempt is lost and the task goes back to the queue (or is
    # dead-lettered by DEAD_LETTER when no attempts are left); a pending cancel or pause ends.
    E.LEASE_EXPIRED: {S.RUNNING: S.QUEUED, S.CANCELLING: S.CANCELLED, S.PAUSING: S.PAUSED},
    # Cancelling a running task is a handshake: `cancelling` until the worker confirms (or
    # its lease expires); everything else is cancelled at once.
    E.CANCEL: {
        S.PENDING: S.CANCELLED,
        S.BLOCKED: S.CANCELLED,
        S.SCHEDULED: S.CANCELLED,
        S.QUEUED: S.CANCELLED,
        S.RETRY_WAIT: S.CANCELLED,
        S.PAUSED: S.CANCELLED,
        S.RUNNING: S.CANCELLING,
        S.PAUSING: S.CANCELLING,
    },
    E.CONFIRM_CANCEL: {S.CANCELLING: S.CANCELLED},
    E.PAUSE: {S.QUEUED: S.PAUSED, S.RETRY_WAIT: S.PAUSED, S.RUNNING: S.PAUSING},
    E.CONFIRM_PAUSE: {S.PAUSING: S.PAUSED},
    E.RESUME: {S.PAUSED: S.QUEUED},
    E.RETRY: {
        S.FAILED: S.QUEUED,
        S.DEAD_LETTERED: S.QUEUED,
        S.CANCELLED: S.QUEUED,
        S.TIMED_OUT: S.QUEUED,
    },
    E.BLOCK: {S.PENDING: S.BLOCKED},
    E.UNBLOCK: {S.BLOCKED: S.QUEUED},
    E.SCHEDULE: {S.PENDING: S.SCHEDULED},
    E.FIRE: {S.SCHEDULED: S.QUEUED},
    E.SKIP: {S.PENDING: S.SKIPPED, S.BLOCKED: S.SKIPPED},
    # Deleting a task's schedule hands the task back to its owner, who may execute it by hand.
    E.UNSCHEDULE: {S.SCHEDULED: S.PENDING},
}

TERMINAL_STATES = frozenset(
    {S.COMPLETED, S.FAILED, S.CANCELLED, S.TIMED_OUT, S.SKIPPED, S.DEAD_LETTERED}
)
ACTIVE_STATES = frozenset(TaskStatus) - TERMINAL_STATES

# How an attempt's outcome is applied to its task.
OUTCOME_EVENTS: dict[TaskStatus, Event] = {
    S.COMPLETED: E.COMPLETE,
    S.FAILED: E.FAIL,
    S.TIMED_OUT: E.TIME_OUT,
    S.RETRY_WAIT: E.RETRY_LATER,
    S.DEAD_LETTERED: E.DEAD_LETTER,
    S.CANCELLED: E.CONFIRM_CANCEL,
    S.PAUSED: E.CONFIRM_PAUSE,
}

# States in which a worker holds the task.
HELD_STATES = frozenset({S.RUNNING, S.CANCELLING, S.PAUSING})


def outcome_event(current: str, proposed: TaskStatus) -> Event:
    """The event that ends an attempt, given the task's state when the attempt ended.

    ``proposed`` is what the attempt's own outcome and the retry policy ask for. A cancel or
    pause asked for while the attempt ran takes precedence, unless the work completed (or,
    for a pause, failed for good).
    """
    if current == S.CANCELLING and proposed is not S.COMPLETED:
        return E.CONFIRM_CANCEL
    if current == S.PAUSING and proposed not in (S.COMPLETED, S.FAILED):
        return E.CONFIRM_PAUSE
    return OUTCOME_EVENTS[proposed]


def allowed_from(event: Event) -> frozenset[TaskStatus]:
    """The states in which ``event`` may happen."""
    return frozenset(TRANSITIONS[event])


def next_status(task_id: str, current: str, event: Event) -> TaskStatus:
    """The state ``event`` moves a task to from ``current``; raise if the table forbids it."""
    moves = TRANSITIONS[event]
    target = moves.get(TaskStatus(current))
    if target is None:
        raise IllegalTransition(task_id, str(current), str(event), frozenset(str(s) for s in moves))
    return target
