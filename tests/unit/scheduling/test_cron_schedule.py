"""Cron parsing and fire times, including the DST nights of several zones."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from phantom_spire.scheduling.cron import CronSchedule, ScheduleError


def at(text: str) -> datetime:
    return datetime.fromisoformat(text)


def local_fires(expr: str, zone: str, after: str, n: int) -> list[str]:
    schedule = CronSchedule.parse(expr, zone)
    return [t.astimezone(ZoneInfo(zone)).isoformat() for t in schedule.next_n(at(after), n)]


# --- parsing ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("expr", "minutes", "hours", "doms", "months", "dows"),
    [
        ("* * * * *", range(60), range(24), range(1, 32), range(1, 13), range(7)),
        ("*/7 * * * *", range(0, 60, 7), range(24), range(1, 32), range(1, 13), range(7)),
        ("5/15 1-5/2 */10 JAN,jun-Aug MON-FRI", [5, 20, 35, 50], [1, 3, 5], [1, 11, 21, 31],
         [1, 6, 7, 8], [1, 2, 3, 4, 5]),
        ("0 0 1 1 7", [0], [0], [1], [1], [0]),
        ("0 0 * * FRI-SUN", [0], [0], range(1, 32), range(1, 13), [0, 5, 6]),
        ("0 0 * * 5-7", [0], [0], range(1, 32), range(1, 13), [0, 5, 6]),
        ("0 0 * * */2", [0], [0], range(1, 32), range(1, 13), [0, 2, 4, 6]),
        ("1,2,2,3 0 1 1 *", [1, 2, 3], [0], [1], [1], range(7)),
    ],
)  # fmt: skip
def test_parse_expands_lists_ranges_steps_and_names_into_value_sets(
    expr: str, minutes, hours, doms, months, dows
) -> None:
    schedule = CronSchedule.parse(expr, "UTC")

    assert schedule.minutes == tuple(minutes)
    assert schedule.hours == tuple(hours)
    assert schedule.days_of_month == frozenset(doms)
    assert schedule.months == tuple(months)
    assert schedule.days_of_week == frozenset(dows)


@pytest.mark.parametrize(
    ("macro", "equivalent"),
    [
        ("@yearly", "0 0 1 1 *"),
        ("@annually", "0 0 1 1 *"),
        ("@monthly", "0 0 1 * *"),
        ("@weekly", "0 0 * * 0"),
        ("@daily", "0 0 * * *"),
        ("@MIDNIGHT", "0 0 * * *"),
        ("@hourly", "0 * * * *"),
    ],
)
def test_macros_fire_like_the_expression_they_stand_for(macro: str, equivalent: str) -> None:
    after = at("2023-12-30T13:14:00+00:00")

    got = CronSchedule.parse(macro, "Europe/London").next_n(after, 5)

    assert got == CronSchedule.parse(equivalent, "Europe/London").next_n(after, 5)


@pytest.mark.parametrize(
    ("expr", "fragments"),
    [
        ("60 * * * *", ["minute", "60", "0-59"]),
        ("* 24 * * *", ["hour", "24", "0-23"]),
        ("* * 0 * *", ["day-of-month", "0", "1-31"]),
        ("* * 32 * *", ["day-of-month", "32", "1-31"]),
        ("* * * 13 *", ["month", "13", "1-12 or JAN-DEC"]),
        ("* * * * 8", ["day-of-week", "8", "0-7 or SUN-SAT"]),
        ("* * * FOO *", ["month", "'FOO'", "JAN-DEC"]),
        ("* * * * MON-FUN", ["day-of-week", "'FUN'", "SUN-SAT"]),
        ("*/0 * * * *", ["minute", "'*/0'", "step", "0-59"]),
        ("*/x * * * *", ["minute", "'x'", "step"]),
        ("30-10 * * * *", ["minute", "'30-10'", "upwards"]),
        ("1,,2 * * * *", ["minute", "''", "0-59"]),
        ("-5 * * * *", ["minute", "''", "0-59"]),
        ("L * * * *", ["minute", "'L'", "0-59"]),
        ("* * ? * *", ["day-of-month", "'?'", "1-31"]),
        ("* * * *", ["4 fields", "expected 5"]),
        ("* * * * * *", ["6 fields", "expected 5"]),
        ("", ["0 fields"]),
        ("@reboot", ["'@reboot'", "@daily"]),
        ("² * * * *", ["minute", "'²'"]),
    ],
)
def test_invalid_expression_error_names_field_value_and_allowed_range(
    expr: str, fragments: list[str]
) -> None:
    with pytest.raises(ScheduleError) as caught:
        CronSchedule.parse(expr, "UTC")

    message = str(caught.value)
    assert repr(expr) in message
    for fragment in fragments:
        assert fragment in message


def test_schedule_error_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="out of range"):
        CronSchedule.parse("99 * * * *", "UTC")


@pytest.mark.parametrize("zone", ["Mars/Olympus_Mons", "", "../../etc/passwd", "Europe/"])
def test_unknown_time_zone_is_refused_by_name(zone: str) -> None:
    with pytest.raises(ScheduleError, match="unknown time zone") as caught:
        CronSchedule.parse("* * * * *", zone)

    assert repr(zone) in str(caught.value)


@pytest.mark.parametrize(
    "expr", ["0 0 30 2 *", "0 0 31 2 *", "0 0 31 4,6,9,11 *", "0 0 30,31 FEB */2", "0 0 31 4 *"]
)
def test_expression_that_can_never_fire_is_refused_with_its_text(expr: str) -> None:
    with pytest.raises(ScheduleError, match="can never fire") as caught:
        CronSchedule.parse(expr, "UTC")

    assert repr(expr) in str(caught.value)


def test_impossible_day_of_month_still_fires_when_weekday_is_restricted_too() -> None:
    # Both day fields restricted: the Vixie "or" rule makes every Monday of February match.
    got = CronSchedule.parse("0 0 30 2 MON", "UTC").next_n(at("2024-01-01T00:00:00+00:00"), 4)

    assert [t.date().isoformat() for t in got] == [
        "2024-02-05",
        "2024-02-12",
        "2024-02-19",
        "2024-02-26",
    ]


# --- day rules -------------------------------------------------------------------------------


def test_29_february_waits_for_the_next_leap_year() -> None:
    schedule = CronSchedule.parse("0 0 29 2 *", "UTC")

    got = schedule.next_n(at("2023-06-01T00:00:00+00:00"), 3)

    assert got == [at("2024-02-29T00:00+00:00"), at("2028-02-29T00:00+00:00"),
                   at("2032-02-29T00:00+00:00")]  # fmt: skip


def test_29_february_skips_2100_which_is_not_a_leap_year() -> None:
    schedule = CronSchedule.parse("0 0 29 2 *", "America/New_York")

    got = schedule.next_after(at("2096-02-29T12:00:00-05:00"))

    assert got.astimezone(schedule.zone).isoformat() == "2104-02-29T00:00:00-05:00"


def test_31st_fires_only_in_months_that_have_one() -> None:
    schedule = CronSchedule.parse("0 0 31 * *", "Europe/Amsterdam")

    got = schedule.next_n(at("2023-01-01T00:00:00+01:00"), 8)

    months = [t.astimezone(schedule.zone).strftime("%Y-%m-%d") for t in got]
    assert months == ["2023-01-31", "2023-03-31", "2023-05-31", "2023-07-31", "2023-08-31",
                      "2023-10-31", "2023-12-31", "2024-01-31"]  # fmt: skip


def test_day_matches_either_field_when_both_are_restricted() -> None:
    # 13th of the month or any Friday
    schedule = CronSchedule.parse("0 0 13 * FRI", "UTC")

    got = schedule.next_n(at("2023-10-01T00:00:00+00:00"), 5)

    assert [t.date().isoformat() for t in got] == [
        "2023-10-06", "2023-10-13", "2023-10-20", "2023-10-27", "2023-11-03",
    ]  # fmt: skip


def test_day_must_match_both_fields_when_one_starts_with_a_star() -> None:
    # Vixie treats "*/2" as a star: odd days of the month that are also Mondays.
    schedule = CronSchedule.parse("0 0 */2 * MON", "UTC")

    got = schedule.next_n(at("2024-01-01T00:00:00+00:00"), 4)

    assert [t.date().isoformat() for t in got] == [
        "2024-01-15", "2024-01-29", "2024-02-05", "2024-02-19",
    ]  # fmt: skip
    assert all(t.weekday() == 0 and t.day % 2 == 1 for t in got)


def test_sunday_may_be_written_as_0_or_7() -> None:
    after = at("2024-05-01T00:00:00+00:00")

    seven = CronSchedule.parse("0 12 * * 7", "UTC").next_n(after, 3)

    assert seven == CronSchedule.parse("0 12 * * SUN", "UTC").next_n(after, 3)
    assert all(t.weekday() == 6 for t in seven)


# --- results and arguments -------------------------------------------------------------------


def test_next_after_is_strictly_after_and_returns_utc() -> None:
    schedule = CronSchedule.parse("0 9 * * *", "Europe/Amsterdam")

    got = schedule.next_after(at("2024-06-10T09:00:00+02:00"))

    assert got == at("2024-06-11T07:00:00+00:00")
    assert got.tzinfo is UTC


def test_next_after_a_partial_minute_returns_the_next_whole_minute() -> None:
    schedule = CronSchedule.parse("* * * * *", "UTC")

    assert schedule.next_after(at("2024-06-10T09:00:00.000001+00:00")) == at(
        "2024-06-10T09:01:00+00:00"
    )


def test_naive_datetime_is_refused() -> None:
    schedule = CronSchedule.parse("* * * * *", "UTC")

    with pytest.raises(ScheduleError, match="naive"):
        schedule.next_after(datetime(2024, 1, 1))
    with pytest.raises(ScheduleError, match="naive"):
        schedule.previous_before(datetime(2024, 1, 1))


def test_next_n_rejects_a_negative_count_and_allows_zero() -> None:
    schedule = CronSchedule.parse("* * * * *", "UTC")

    assert schedule.next_n(at("2024-01-01T00:00:00+00:00"), 0) == []
    with pytest.raises(ScheduleError, match="-1"):
        schedule.next_n(at("2024-01-01T00:00:00+00:00"), -1)


def test_previous_before_is_strictly_before() -> None:
    schedule = CronSchedule.parse("0 9 * * *", "Europe/Amsterdam")

    assert schedule.previous_before(at("2024-06-11T09:00:00+02:00")) == at(
        "2024-06-10T07:00:00+00:00"
    )


# --- daylight saving time --------------------------------------------------------------------

SPRING_FORWARD = [
    # zone, expression, after, expected local fire times
    ("Europe/Amsterdam", "30 2 * * *", "2024-03-30T12:00:00+01:00",
     ["2024-03-31T03:00:00+02:00", "2024-04-01T02:30:00+02:00"]),
    ("Europe/London", "30 1 * * *", "2024-03-30T12:00:00+00:00",
     ["2024-03-31T02:00:00+01:00", "2024-04-01T01:30:00+01:00"]),
    ("America/New_York", "30 2 * * *", "2024-03-09T12:00:00-05:00",
     ["2024-03-10T03:00:00-04:00", "2024-03-11T02:30:00-04:00"]),
    # wall times inside the gap collapse onto its end and fire once, together with 03:00 itself
    ("Europe/Amsterdam", "*/20 * * * *", "2024-03-31T01:30:00+01:00",
     ["2024-03-31T01:40:00+01:00", "2024-03-31T03:00:00+02:00", "2024-03-31T03:20:00+02:00"]),
    ("America/New_York", "15,45 2 * * *", "2024-03-09T12:00:00-05:00",
     ["2024-03-10T03:00:00-04:00", "2024-03-11T02:15:00-04:00", "2024-03-11T02:45:00-04:00"]),
    # Lord Howe Island moves its clocks by half an hour
    ("Australia/Lord_Howe", "10 2 * * *", "2024-10-05T12:00:00+10:30",
     ["2024-10-06T02:30:00+11:00", "2024-10-07T02:10:00+11:00"]),
]  # fmt: skip

FALL_BACK = [
    ("Europe/Amsterdam", "30 2 * * *", "2024-10-26T12:00:00+02:00",
     ["2024-10-27T02:30:00+02:00", "2024-10-28T02:30:00+01:00"]),
    ("Europe/London", "30 1 * * *", "2024-10-26T12:00:00+01:00",
     ["2024-10-27T01:30:00+01:00", "2024-10-28T01:30:00+00:00"]),
    ("America/New_York", "30 1 * * *", "2024-11-02T12:00:00-04:00",
     ["2024-11-03T01:30:00-04:00", "2024-11-04T01:30:00-05:00"]),
    ("America/New_York", "0,30 * * * *", "2024-11-03T00:45:00-04:00",
     ["2024-11-03T01:00:00-04:00", "2024-11-03T01:30:00-04:00", "2024-11-03T02:00:00-05:00"]),
    # southern hemisphere: Sydney falls back in April
    ("Australia/Sydney", "30 2 * * *", "2024-04-06T12:00:00+11:00",
     ["2024-04-07T02:30:00+11:00", "2024-04-08T02:30:00+10:00"]),
]  # fmt: skip


@pytest.mark.parametrize(("zone", "expr", "after", "expected"), SPRING_FORWARD)
def test_missing_wall_time_fires_once_at_the_end_of_the_gap(
    zone: str, expr: str, after: str, expected: list[str]
) -> None:
    assert local_fires(expr, zone, after, len(expected)) == expected


@pytest.mark.parametrize(("zone", "expr", "after", "expected"), FALL_BACK)
def test_repeated_wall_time_fires_once_at_its_first_occurrence(
    zone: str, expr: str, after: str, expected: list[str]
) -> None:
    assert local_fires(expr, zone, after, len(expected)) == expected


def test_fire_times_from_inside_the_second_pass_of_a_repeated_hour_are_not_repeated() -> None:
    schedule = CronSchedule.parse("*/15 * * * *", "Europe/Amsterdam")
    second_pass = at("2024-10-27T02:20:00+01:00")  # the first pass already fired 02:00..02:45

    assert schedule.next_after(second_pass) == at("2024-10-27T03:00:00+01:00")
    assert schedule.previous_before(second_pass) == at("2024-10-27T02:45:00+02:00")


def test_daily_fire_keeps_its_wall_clock_across_both_changes_of_the_year() -> None:
    schedule = CronSchedule.parse("0 8 * * *", "Europe/London")

    got = schedule.next_n(at("2024-01-01T00:00:00+00:00"), 366)

    walls = {t.astimezone(schedule.zone).strftime("%H:%M") for t in got}
    assert walls == {"08:00"}
    assert len({t.date() for t in got}) == 366
    assert {t.utcoffset() for t in (x.astimezone(schedule.zone) for x in got)} == {
        timedelta(0),
        timedelta(hours=1),
    }


# --- agreement with a brute-force walk over UTC minutes --------------------------------------

DST_ZONES = ["Europe/Amsterdam", "Europe/London", "America/New_York", "Australia/Lord_Howe"]
TRANSITION_DAYS = {
    "Europe/Amsterdam": ["2024-03-31", "2024-10-27", "2017-10-29"],
    "Europe/London": ["2024-03-31", "2024-10-27"],
    "America/New_York": ["2024-03-10", "2024-11-03"],
    "Australia/Lord_Howe": ["2024-04-07", "2024-10-06"],
}


def brute_force_next(
    schedule: CronSchedule, after: datetime, horizon: timedelta
) -> datetime | None:
    """The spec, spelled out minute by minute: a UTC minute fires if its wall time matches on
    the first pass of the wall clock, or if a matching wall time was skipped just before it."""
    zone = schedule.zone
    t = after.astimezone(UTC).replace(second=0, microsecond=0) + timedelta(minutes=1)
    end = after + horizon
    while t <= end:
        local = t.astimezone(zone)
        previous_wall = (t - timedelta(minutes=1)).astimezone(zone).replace(tzinfo=None)
        wall = local.replace(tzinfo=None)
        skipped = []
        probe = previous_wall + timedelta(minutes=1)
        while probe < wall:
            skipped.append(probe)
            probe += timedelta(minutes=1)
        if (local.fold == 0 and wall_matches(schedule, wall)) or any(
            wall_matches(schedule, s) for s in skipped
        ):
            return t
        t += timedelta(minutes=1)
    return None


def wall_matches(schedule: CronSchedule, wall: datetime) -> bool:
    return (
        wall.minute in schedule.minutes
        and wall.hour in schedule.hours
        and wall.month in schedule.months
        and schedule.day_matches(wall.year, wall.month, wall.day)
    )


def small_field(low: int, high: int) -> st.SearchStrategy[str]:
    value = st.integers(low, high)
    return st.one_of(
        st.just("*"),
        value.map(str),
        st.integers(2, 20).map(lambda step: f"*/{step}"),
        st.tuples(value, value).map(lambda ab: f"{min(ab)}-{max(ab)}"),
        st.lists(value, min_size=1, max_size=4).map(lambda vs: ",".join(map(str, vs))),
    )


expressions = st.tuples(
    small_field(0, 59),
    small_field(0, 23),
    st.sampled_from(["*", "*", "*/2", "1-15"]),
    st.just("*"),
    st.sampled_from(["*", "*", "1-5", "SAT,SUN", "*/3"]),
).map(" ".join)


@st.composite
def near_transitions(draw: st.DrawFn) -> tuple[str, datetime]:
    zone = draw(st.sampled_from(DST_ZONES))
    day = draw(st.sampled_from(TRANSITION_DAYS[zone]))
    offset_minutes = draw(st.integers(-36 * 60, 36 * 60))
    seconds = draw(st.sampled_from([0, 0, 30]))
    base = datetime.fromisoformat(day).replace(hour=1, tzinfo=UTC)
    return zone, base + timedelta(minutes=offset_minutes, seconds=seconds)


@settings(
    max_examples=150,
    deadline=None,
    derandomize=True,  # the same examples on every run, so CI cannot flake
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(expr=expressions, place=near_transitions())
def test_next_after_agrees_with_brute_force_near_dst_changes(
    expr: str, place: tuple[str, datetime]
) -> None:
    zone, after = place
    schedule = CronSchedule.parse(expr, zone)
    horizon = timedelta(days=3)

    expected = brute_force_next(schedule, after, horizon)

    got = schedule.next_after(after)
    if expected is None:
        assert got > after + horizon
    else:
        assert got == expected


@settings(
    max_examples=150,
    deadline=None,
    derandomize=True,  # the same examples on every run, so CI cannot flake
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(expr=expressions, place=near_transitions())
def test_previous_before_and_next_after_leave_no_fire_time_between_them(
    expr: str, place: tuple[str, datetime]
) -> None:
    zone, moment = place
    schedule = CronSchedule.parse(expr, zone)

    previous = schedule.previous_before(moment)
    following = schedule.next_after(previous)

    assert previous < moment <= following
    assert schedule.previous_before(following) == previous


@pytest.mark.parametrize("zone", ["UTC", "Asia/Tokyo", "America/New_York"])
def test_searching_past_the_ends_of_the_calendar_raises_schedule_error(zone: str) -> None:
    schedule = CronSchedule.parse("0 0 1 1 *", zone)

    with pytest.raises(ScheduleError, match="no fire time after"):
        schedule.next_after(datetime(9999, 12, 31, 23, 59, tzinfo=UTC))
    with pytest.raises(ScheduleError, match="no fire time before"):
        schedule.previous_before(datetime(1, 1, 1, 0, 0, tzinfo=UTC))
