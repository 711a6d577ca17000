from __future__ import annotations

import pytest

from phantom_spire.engine.lifecycle import (
    TERMINAL_STATES,
    TRANSITIONS,
    Priority,
    TaskStatus,
    check_transition,
)
from phantom_spire.errors import IllegalTransition


def test_every_state_has_a_row_in_the_transition_table() -> None:
    assert set(TRANSITIONS) == set(TaskStatus)


@pytest.mark.parametrize(
    ("current", "target"),
    [(c, t) for c, targets in TRANSITIONS.items() for t in targets],
)
def test_allowed_transitions_pass(current: TaskStatus, target: TaskStatus) -> None:
    check_transition("t1", current, target)


def test_completed_task_cannot_move_anywhere() -> None:
    for target in TaskStatus:
        with pytest.raises(IllegalTransition):
            check_transition("t1", TaskStatus.COMPLETED, target)


def test_illegal_transition_names_task_states_and_what_is_allowed() -> None:
    with pytest.raises(IllegalTransition) as info:
        check_transition("0190abc", "pending", "completed")

    message = str(info.value)
    assert "0190abc" in message
    assert "'pending'" in message and "'completed'" in message
    assert "blocked, cancelled, queued, scheduled, skipped" in message


def test_a_queued_task_cannot_be_queued_again() -> None:
    with pytest.raises(IllegalTransition):
        check_transition("t1", TaskStatus.QUEUED, TaskStatus.QUEUED)


def test_every_active_state_can_reach_a_terminal_state() -> None:
    for state in set(TaskStatus) - TERMINAL_STATES:
        seen, frontier = {state}, [state]
        while frontier:
            for nxt in TRANSITIONS[frontier.pop()]:
                if nxt not in seen:
                    seen.add(nxt)
                    frontier.append(nxt)
        assert seen & TERMINAL_STATES, state


def test_priorities_rank_critical_highest_and_background_lowest() -> None:
    ranks = [p.rank for p in Priority]
    assert ranks == sorted(ranks, reverse=True)
    assert all(Priority.from_rank(p.rank) is p for p in Priority)
