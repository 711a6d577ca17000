from __future__ import annotations

import pytest

from phantom_spire.engine.lifecycle import (
    OUTCOME_EVENTS,
    TERMINAL_STATES,
    TRANSITIONS,
    Event,
    Priority,
    TaskStatus,
    next_status,
    outcome_event,
)
from phantom_spire.errors import IllegalTransition


def test_every_event_has_a_column_in_the_transition_table() -> None:
    assert set(TRANSITIONS) == set(Event)


@pytest.mark.parametrize(
    ("event", "current", "target"),
    [(e, c, t) for e, moves in TRANSITIONS.items() for c, t in moves.items()],
)
def test_allowed_moves_give_the_tabled_state(
    event: Event, current: TaskStatus, target: TaskStatus
) -> None:
    assert next_status("t1", current, event) is target


def test_a_completed_task_accepts_no_event() -> None:
    for event in Event:
        with pytest.raises(IllegalTransition):
            next_status("t1", TaskStatus.COMPLETED, event)


def test_illegal_transition_names_task_state_action_and_allowed_states() -> None:
    with pytest.raises(IllegalTransition) as info:
        next_status("0190abc", "running", Event.EXECUTE)

    assert str(info.value) == (
        "cannot execute task 0190abc: it is 'running'; execute is allowed from 'pending'"
    )
    assert info.value.current == "running" and info.value.action == "execute"


def test_only_a_lost_lease_sends_a_running_task_back_to_the_queue() -> None:
    assert next_status("t", "running", Event.LEASE_EXPIRED) is TaskStatus.QUEUED
    for event in set(Event) - {Event.LEASE_EXPIRED}:
        try:
            assert next_status("t", "running", event) is not TaskStatus.QUEUED, event
        except IllegalTransition:
            pass


def test_every_non_terminal_state_can_be_cancelled() -> None:
    for state in set(TaskStatus) - TERMINAL_STATES - {TaskStatus.CANCELLING}:
        assert next_status("t", state, Event.CANCEL) in {
            TaskStatus.CANCELLED,
            TaskStatus.CANCELLING,
        }


def test_every_attempt_outcome_maps_to_an_event_allowed_while_running_or_cancelling() -> None:
    for status, event in OUTCOME_EVENTS.items():
        source = {
            TaskStatus.CANCELLED: TaskStatus.CANCELLING,
            TaskStatus.PAUSED: TaskStatus.PAUSING,
        }.get(status, TaskStatus.RUNNING)
        assert next_status("t", source, event) is status


def test_every_active_state_can_reach_a_terminal_state() -> None:
    edges: dict[TaskStatus, set[TaskStatus]] = {}
    for moves in TRANSITIONS.values():
        for c, t in moves.items():
            edges.setdefault(c, set()).add(t)
    for state in set(TaskStatus) - TERMINAL_STATES:
        seen, frontier = {state}, [state]
        while frontier:
            for nxt in edges.get(frontier.pop(), ()):
                if nxt not in seen:
                    seen.add(nxt)
                    frontier.append(nxt)
        assert seen & TERMINAL_STATES, state


def test_priorities_rank_critical_highest_and_background_lowest() -> None:
    ranks = [p.rank for p in Priority]
    assert ranks == sorted(ranks, reverse=True)
    assert all(Priority.from_rank(p.rank) is p for p in Priority)


@pytest.mark.parametrize(
    ("current", "proposed", "expected"),
    [
        ("running", TaskStatus.RETRY_WAIT, Event.RETRY_LATER),
        ("cancelling", TaskStatus.RETRY_WAIT, Event.CONFIRM_CANCEL),
        ("cancelling", TaskStatus.FAILED, Event.CONFIRM_CANCEL),
        ("cancelling", TaskStatus.COMPLETED, Event.COMPLETE),
        ("pausing", TaskStatus.RETRY_WAIT, Event.CONFIRM_PAUSE),
        ("pausing", TaskStatus.TIMED_OUT, Event.CONFIRM_PAUSE),
        ("pausing", TaskStatus.FAILED, Event.FAIL),
        ("pausing", TaskStatus.COMPLETED, Event.COMPLETE),
    ],
)
def test_a_pending_cancel_or_pause_decides_how_an_attempt_ends(
    current: str, proposed: TaskStatus, expected: Event
) -> None:
    assert outcome_event(current, proposed) is expected
