"""Schedule specs as the API receives them, and their next fire times."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from itertools import pairwise
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from pydantic import ValidationError

import phantom_spire.scheduling as scheduling
from phantom_spire.scheduling import (
    EventDrivenSpec,
    IntervalSpec,
    MisfirePolicy,
    OnceSpec,
    RecurringSpec,
    ScheduleError,
    next_fire_times,
    parse_schedule_spec,
)

JAN_1 = datetime(2024, 1, 1, tzinfo=UTC)


def at(text: str) -> datetime:
    return datetime.fromisoformat(text)


def recurring(**extra: Any) -> RecurringSpec:
    data = {"type": "recurring", "cron": "0 8 * * *", "timezone": "Europe/Amsterdam", **extra}
    spec = parse_schedule_spec(data)
    assert isinstance(spec, RecurringSpec)
    return spec


# --- validation ------------------------------------------------------------------------------


def test_package_exports_exactly_its_declared_public_names() -> None:
    public = {name for name in dir(scheduling) if not name.startswith("_")}
    modules = {"cron", "errors", "misfire", "specs", "annotations"}  # annotations: __future__

    assert set(scheduling.__all__) == public - modules
    for name in scheduling.__all__:
        assert getattr(scheduling, name) is not None


def test_camel_case_wire_fields_are_read_and_written() -> None:
    spec = recurring(
        startAt="2024-01-01T00:00:00Z",
        endAt="2024-02-01T00:00:00+01:00",
        maxExecutions=5,
        misfirePolicy={"kind": "catch_up", "limit": 3, "graceSeconds": 30},
    )

    assert spec.start_at == JAN_1
    assert spec.max_executions == 5
    assert spec.misfire_policy == MisfirePolicy(kind="catch_up", limit=3, grace_seconds=30)
    wire = spec.model_dump(by_alias=True, mode="json")
    assert wire["startAt"] == "2024-01-01T00:00:00Z"
    assert wire["maxExecutions"] == 5
    assert wire["misfirePolicy"] == {"kind": "catch_up", "limit": 3, "graceSeconds": 30.0}


def test_snake_case_field_names_are_accepted_too() -> None:
    spec = parse_schedule_spec({"type": "once", "run_at": "2024-01-01T00:00:00Z"})

    assert spec == OnceSpec(run_at=JAN_1)


@pytest.mark.parametrize(
    ("data", "fragment"),
    [
        ({"type": "recurring", "cron": "0 0 30 2 *", "timezone": "UTC"}, "can never fire"),
        ({"type": "recurring", "cron": "61 * * * *", "timezone": "UTC"}, "minute value 61"),
        ({"type": "recurring", "cron": "* * * * *", "timezone": "Nowhere/City"}, "'Nowhere/City'"),
        ({"type": "recurring", "cron": "* * * * *"}, "timezone"),
        ({"type": "once", "runAt": "2024-01-01T00:00:00"}, "timezone"),
        ({"type": "interval", "every": 0}, "greater than 0"),
        ({"type": "interval", "every": 60, "maxExecutions": 0}, "greater than 0"),
        ({"type": "interval", "every": 60, "startAt": "2024-01-02T00:00:00Z",
          "endAt": "2024-01-01T00:00:00Z"}, "endAt '2024-01-01T00:00:00+00:00' is before"),
        ({"type": "event_driven", "triggers": []}, "at least 1"),
        ({"type": "event_driven", "triggers": [{"type": "moon_phase"}]}, "moon_phase"),
        ({"type": "hourly"}, "hourly"),
        ({"type": "once", "runAt": "2024-01-01T00:00:00Z", "colour": "red"}, "colour"),
        ({"type": "interval", "every": 60, "misfirePolicy": {"kind": "panic"}}, "panic"),
        ({"type": "interval", "every": 60, "misfirePolicy": {"kind": "catch_up", "limit": 0}},
         "greater than 0"),
    ],
)  # fmt: skip
def test_invalid_spec_is_refused_with_the_reason(data: dict[str, Any], fragment: str) -> None:
    with pytest.raises(ValidationError) as caught:
        parse_schedule_spec(data)

    assert fragment in str(caught.value)


def test_event_driven_spec_keeps_its_triggers() -> None:
    spec = parse_schedule_spec(
        {
            "type": "event_driven",
            "triggers": [
                {"type": "data_change", "source": "feed:abuse-ch", "conditions": {"severity": "critical"}},
                {"type": "task_completed", "source": "0190aaaa-0000-7000-8000-000000000000"},
                {"type": "indicator_seen"},
            ],
        }
    )  # fmt: skip

    assert isinstance(spec, EventDrivenSpec)
    assert [t.type for t in spec.triggers] == ["data_change", "task_completed", "indicator_seen"]
    assert spec.triggers[0].conditions == {"severity": "critical"}
    assert spec.triggers[2].source is None


def test_specs_are_immutable() -> None:
    spec = recurring()

    with pytest.raises(ValidationError):
        spec.cron = "* * * * *"  # type: ignore[misc]


# --- next fire times -------------------------------------------------------------------------


def test_recurring_spec_gives_ten_fire_times_by_default() -> None:
    got = next_fire_times(recurring(), JAN_1)

    assert len(got) == 10
    assert got[0] == at("2024-01-01T07:00:00+00:00")
    assert all(b - a == timedelta(days=1) for a, b in pairwise(got))


def test_recurring_spec_stops_after_max_executions() -> None:
    spec = recurring(maxExecutions=3)

    assert len(next_fire_times(spec, JAN_1, n=10)) == 3
    assert next_fire_times(spec, JAN_1, n=10, executions_so_far=2) == [
        at("2024-01-01T07:00:00+00:00")
    ]
    assert next_fire_times(spec, JAN_1, n=10, executions_so_far=3) == []
    assert next_fire_times(spec, JAN_1, n=10, executions_so_far=7) == []


def test_start_and_end_bounds_are_inclusive() -> None:
    spec = recurring(startAt="2024-03-01T08:00:00+01:00", endAt="2024-03-03T08:00:00+01:00")

    got = next_fire_times(spec, JAN_1, n=10)

    assert got == [at("2024-03-01T07:00:00Z"), at("2024-03-02T07:00:00Z"), at("2024-03-03T07:00Z")]


def test_schedule_past_its_end_has_no_fire_times() -> None:
    spec = recurring(endAt="2024-01-05T00:00:00Z")

    assert next_fire_times(spec, at("2024-01-05T00:00:00Z")) == []


def test_recurring_spec_fires_in_its_time_zone_across_dst() -> None:
    spec = recurring(cron="30 2 * * *")

    got = next_fire_times(spec, at("2024-03-30T12:00:00+01:00"), n=2)

    assert got == [at("2024-03-31T03:00:00+02:00"), at("2024-04-01T02:30:00+02:00")]


def test_once_spec_fires_once_if_it_has_not_yet() -> None:
    spec = OnceSpec(run_at=at("2024-05-01T12:00:00+02:00"))

    assert next_fire_times(spec, JAN_1) == [at("2024-05-01T10:00:00Z")]
    assert next_fire_times(spec, JAN_1, executions_so_far=1) == []
    assert next_fire_times(spec, at("2024-05-01T10:00:00Z")) == []
    assert next_fire_times(spec, JAN_1, n=0) == []


def test_interval_without_start_counts_from_the_given_instant() -> None:
    spec = IntervalSpec(every=90)

    got = next_fire_times(spec, at("2024-01-01T00:00:10Z"), n=3)

    assert got == [
        at("2024-01-01T00:01:40Z"),
        at("2024-01-01T00:03:10Z"),
        at("2024-01-01T00:04:40Z"),
    ]


def test_interval_with_start_keeps_its_grid_whatever_the_instant() -> None:
    spec = IntervalSpec(every=3600, start_at=at("2024-01-01T00:30:00Z"), max_executions=100)

    before_start = next_fire_times(spec, JAN_1, n=2)
    on_a_slot = next_fire_times(spec, at("2024-01-01T02:30:00Z"), n=2)
    between = next_fire_times(spec, at("2024-01-01T02:31:00Z"), n=2, executions_so_far=98)

    assert before_start == [at("2024-01-01T00:30:00Z"), at("2024-01-01T01:30:00Z")]
    assert on_a_slot == [at("2024-01-01T03:30:00Z"), at("2024-01-01T04:30:00Z")]
    assert between == [at("2024-01-01T03:30:00Z"), at("2024-01-01T04:30:00Z")]


def test_interval_ignores_dst_because_it_counts_elapsed_time() -> None:
    spec = IntervalSpec(every=3600, start_at=at("2024-10-27T00:00:00+02:00"))

    got = next_fire_times(spec, at("2024-10-26T00:00:00Z"), n=4)

    walls = [t.astimezone(ZoneInfo("Europe/Amsterdam")).isoformat() for t in got]
    assert walls == [
        "2024-10-27T00:00:00+02:00",
        "2024-10-27T01:00:00+02:00",
        "2024-10-27T02:00:00+02:00",
        "2024-10-27T02:00:00+01:00",
    ]


def test_event_driven_spec_has_no_fire_times() -> None:
    spec = EventDrivenSpec(triggers=[{"type": "indicator_seen"}])  # type: ignore[list-item]

    assert next_fire_times(spec, JAN_1) == []


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"after": datetime(2024, 1, 1)}, "naive"),
        ({"after": JAN_1, "n": -1}, "-1"),
        ({"after": JAN_1, "executions_so_far": -2}, "-2"),
    ],
)
def test_next_fire_times_refuses_bad_arguments(kwargs: dict[str, Any], fragment: str) -> None:
    with pytest.raises(ScheduleError, match=fragment):
        next_fire_times(recurring(), **kwargs)
