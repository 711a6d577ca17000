"""Cron expressions and their fire times in an IANA time zone.

A :class:`CronSchedule` is parsed once from a five-field expression (minute, hour, day-of-month,
month, day-of-week) or a macro (``@hourly``, ``@daily``/``@midnight``, ``@weekly``,
``@monthly``, ``@yearly``/``@annually``) and a time zone, and then answers "when is the next
fire after this instant?" and "when was the last one before it?".

Rules, in the order people ask about them:

* Names are accepted case-insensitively for months (``JAN``-``DEC``) and days (``SUN``-``SAT``);
  day-of-week takes 0-7 where both 0 and 7 are Sunday. ``a-b``, ``a-b/n``, ``*/n`` and ``a/n``
  (``a`` to the end of the field, every ``n``) are accepted; a step is a pattern within the
  field's range, so ``*/10`` in day-of-month is {1, 11, 21, 31}, not "every ten days".
  A day-of-week range ending in Sunday (``FRI-SUN``, ``5-0``) means up to day 7.
* Day-of-month and day-of-week follow Vixie cron: if either field starts with ``*`` the day must
  match both, otherwise (both restricted) a day matches when either field matches.
* Fire times are computed on the wall clock of the schedule's zone and then mapped to instants:
  a wall time that does not exist (spring forward) fires once at the first instant after the
  gap, and a wall time that occurs twice (fall back) fires once, at its first occurrence. This
  applies to every field, so ``*/15 * * * *`` also fires only once for each of the repeated
  quarter hours. Several wall times in one gap collapse onto the same instant, which fires once.
* ``0 0 29 2 *`` waits for the next leap year (2100 is not one); an expression that can never
  fire, such as ``0 0 30 2 *``, is refused when it is parsed.

Results are aware datetimes in UTC. UTC is returned rather than the schedule's zone because
Python compares two datetimes that share a ``tzinfo`` by wall clock and ignores ``fold``, which
gets the repeated hour of a fall-back night wrong; convert with ``.astimezone(schedule.zone)``
for display.

Written by hand rather than on croniter (checked at 7.0.0): croniter fires a repeated wall time
twice on a fall-back night (``30 2 * * *`` in Europe/Amsterdam on 2024-10-27 gives both 02:30+02
and 02:30+01), where this engine must fire each slot once.
"""

from __future__ import annotations

import calendar
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import MAXYEAR, MINYEAR, UTC, datetime, timedelta, tzinfo
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from phantom_spire.scheduling._time import as_utc
from phantom_spire.scheduling.errors import ScheduleError

__all__ = ["CronSchedule", "ScheduleError", "resolve_timezone"]

# The Gregorian calendar repeats every 400 years, so a wall-clock pattern that has no match in
# 401 consecutive years has none at all; searching further would only loop.
_HORIZON_YEARS = 401

_MACROS = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}

# Spelled out rather than taken from calendar.month_abbr, which follows the process locale.
_MONTH_ABBREVIATIONS = tuple("JAN FEB MAR APR MAY JUN JUL AUG SEP OCT NOV DEC".split())
_MONTH_NAMES = {name: i for i, name in enumerate(_MONTH_ABBREVIATIONS, start=1)}
_DAY_NAMES = {"SUN": 0, "MON": 1, "TUE": 2, "WED": 3, "THU": 4, "FRI": 5, "SAT": 6}

# Longest each month can be, February in a leap year included: used to refuse impossible dates.
_MAX_DAYS = {1: 31, 2: 29, 3: 31, 4: 30, 5: 31, 6: 30, 7: 31, 8: 31, 9: 30, 10: 31, 11: 30, 12: 31}


@dataclass(frozen=True)
class _Field:
    name: str
    low: int
    high: int
    names: dict[str, int] = field(default_factory=dict)

    def allowed(self) -> str:
        text = f"{self.low}-{self.high}"
        if self.names:
            ordered = sorted(self.names, key=self.names.__getitem__)
            text += f" or {ordered[0]}-{ordered[-1]}"
        return text


_FIELDS = (
    _Field("minute", 0, 59),
    _Field("hour", 0, 23),
    _Field("day-of-month", 1, 31),
    _Field("month", 1, 12, _MONTH_NAMES),
    _Field("day-of-week", 0, 7, _DAY_NAMES),
)


def resolve_timezone(tz: str | tzinfo) -> tzinfo:
    """Return the time zone for an IANA name, or ``tz`` itself if it already is one.

    Raises:
        ScheduleError: If the name is not a known IANA time zone.
    """
    if isinstance(tz, tzinfo):
        return tz

    try:
        return ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError, TypeError) as exc:
        raise ScheduleError(
            f"unknown time zone {tz!r}; expected an IANA name such as 'Europe/Amsterdam' or 'UTC'"
        ) from exc


@dataclass(frozen=True)
class CronSchedule:
    """A parsed cron expression bound to a time zone; build it with :meth:`parse`.

    Constructing it directly skips every check, so only :meth:`parse` should.

    Attributes:
        expression: The expression as given (macros are kept as written).
        zone: The time zone whose wall clock the expression is read in.
        minutes: Allowed minutes, ascending.
        hours: Allowed hours, ascending.
        days_of_month: Allowed days of the month.
        months: Allowed months (1-12), ascending.
        days_of_week: Allowed weekdays, Sunday as 0 (a 7 in the expression is stored as 0).
        day_match_both: True when a day must match both day fields (either starts with ``*``),
            False when matching either one is enough.
    """

    expression: str
    zone: tzinfo
    minutes: tuple[int, ...] = field(repr=False)
    hours: tuple[int, ...] = field(repr=False)
    days_of_month: frozenset[int] = field(repr=False)
    months: tuple[int, ...] = field(repr=False)
    days_of_week: frozenset[int] = field(repr=False)
    day_match_both: bool = field(repr=False)

    @classmethod
    def parse(cls, expression: str, tz: str | tzinfo = "UTC") -> CronSchedule:
        """Parse a cron expression read in the wall clock of ``tz``.

        Args:
            expression: Five fields or a macro such as ``@daily``.
            tz: An IANA zone name (``"Europe/Amsterdam"``) or a ``tzinfo``.

        Raises:
            ScheduleError: If the expression is malformed, a value is out of its field's range,
                the time zone is unknown, or the expression can never fire.
        """
        zone = resolve_timezone(tz)
        fields = _split_fields(expression)
        values = [
            _parse_field(text, spec, expression) for text, spec in zip(fields, _FIELDS, strict=True)
        ]
        minutes, hours, doms, months, dows = values
        dows = {0 if day == 7 else day for day in dows}
        # Vixie cron decides the day rule on the first character of the field, not on its
        # value set: "*/2" counts as a star even though it restricts the days.
        match_both = fields[2].startswith("*") or fields[4].startswith("*")

        schedule = cls(
            expression=expression,
            zone=zone,
            minutes=tuple(sorted(minutes)),
            hours=tuple(sorted(hours)),
            days_of_month=frozenset(doms),
            months=tuple(sorted(months)),
            days_of_week=frozenset(dows),
            day_match_both=match_both,
        )
        schedule._check_can_fire()
        return schedule

    def next_after(self, after: datetime) -> datetime:
        """Return the first fire time strictly after ``after``, in UTC.

        Raises:
            ScheduleError: If ``after`` is naive, or no fire time follows it within the years
                1-9999 that ``datetime`` can hold.
        """
        moment = as_utc(after, "after")
        try:
            local = moment.astimezone(self.zone)
            start = local.replace(tzinfo=None, second=0, microsecond=0, fold=0)
            for wall in self._walls(start + timedelta(minutes=1), backwards=False):
                instant = self._instant(wall)
                if instant > moment:
                    return instant
        except OverflowError as exc:  # the search ran off datetime's years 1-9999
            raise self._exhausted("after", after) from exc
        raise self._exhausted("after", after)

    def previous_before(self, before: datetime) -> datetime:
        """Return the last fire time strictly before ``before``, in UTC.

        Raises:
            ScheduleError: If ``before`` is naive or no earlier fire time exists.
        """
        moment = as_utc(before, "before")
        try:
            local = moment.astimezone(self.zone)
            start = local.replace(tzinfo=None, second=0, microsecond=0, fold=0)
            if local.fold:
                # In the second pass of a repeated hour, later wall times of the first pass are
                # still in the past, so the search must begin after the whole repeated stretch.
                start += _fold_width(local)
            for wall in self._walls(start, backwards=True):
                instant = self._instant(wall)
                if instant < moment:
                    return instant
        except OverflowError as exc:
            raise self._exhausted("before", before) from exc
        raise self._exhausted("before", before)

    def next_n(self, after: datetime, n: int) -> list[datetime]:
        """Return the next ``n`` fire times strictly after ``after``, ascending, in UTC.

        Raises:
            ScheduleError: If ``n`` is negative or ``after`` is naive.
        """
        if n < 0:
            raise ScheduleError(f"n must be zero or more, got {n!r}")

        times: list[datetime] = []
        current = after
        for _ in range(n):
            current = self.next_after(current)
            times.append(current)
        return times

    def day_matches(self, year: int, month: int, day: int) -> bool:
        """Tell whether the expression's day rule accepts a calendar date (any time of day)."""
        return self._day_matches(day, (calendar.weekday(year, month, day) + 1) % 7)

    def _day_matches(self, day: int, cron_weekday: int) -> bool:
        in_dom = day in self.days_of_month
        in_dow = cron_weekday in self.days_of_week
        return (in_dom and in_dow) if self.day_match_both else (in_dom or in_dow)

    def _exhausted(self, direction: str, moment: datetime) -> ScheduleError:
        return ScheduleError(
            f"cron expression {self.expression!r} has no fire time {direction} "
            f"{moment.isoformat()!r} within {_HORIZON_YEARS} years and the years 1-9999"
        )

    def _check_can_fire(self) -> None:
        # With the "or" rule any weekday set matches days in every month. With the "and" rule the
        # day-of-month must exist in an allowed month; whether it also falls on an allowed
        # weekday is left to the bounded search, which covers a whole Gregorian cycle.
        if not self.day_match_both:
            return
        if any(day <= _MAX_DAYS[month] for month in self.months for day in self.days_of_month):
            return

        days = ",".join(str(day) for day in sorted(self.days_of_month))
        months = ",".join(_MONTH_ABBREVIATIONS[month - 1] for month in self.months)
        raise ScheduleError(
            f"cron expression {self.expression!r} can never fire: day-of-month {days} "
            f"does not occur in {months}"
        )

    def _walls(self, start: datetime, *, backwards: bool) -> Iterator[datetime]:
        """Yield matching naive wall times from ``start`` (inclusive) in one direction."""
        step = -1 if backwards else 1
        last_year = start.year + step * _HORIZON_YEARS
        last_year = max(MINYEAR, last_year) if backwards else min(MAXYEAR, last_year)

        def ordered(values: tuple[int, ...], bound: int, bounded: bool) -> Iterator[int]:
            for value in reversed(values) if backwards else values:
                if not bounded or (value <= bound if backwards else value >= bound):
                    yield value

        for year in range(start.year, last_year + step, step):
            at_year = year == start.year
            for month in ordered(self.months, start.month, at_year):
                at_month = at_year and month == start.month
                days = tuple(self._days_in(year, month))
                for day in ordered(days, start.day, at_month):
                    at_day = at_month and day == start.day
                    for hour in ordered(self.hours, start.hour, at_day):
                        at_hour = at_day and hour == start.hour
                        for minute in ordered(self.minutes, start.minute, at_hour):
                            yield datetime(year, month, day, hour, minute)

    def _days_in(self, year: int, month: int) -> Iterator[int]:
        first_weekday, length = calendar.monthrange(year, month)
        for day in range(1, length + 1):
            # calendar counts Monday as 0, cron counts Sunday as 0
            if self._day_matches(day, (first_weekday + day) % 7):
                yield day

    def _instant(self, wall: datetime) -> datetime:
        """Map a wall time to the instant it fires at (first occurrence; gap -> end of gap)."""
        instant = wall.replace(tzinfo=self.zone).astimezone(UTC)
        if instant.astimezone(self.zone).replace(tzinfo=None) == wall:
            return instant
        return _gap_end(wall, self.zone)


def _split_fields(expression: str) -> list[str]:
    if not isinstance(expression, str):
        raise ScheduleError(f"cron expression must be a string, got {expression!r}")

    text = expression.strip()
    if text.startswith("@"):
        macro = _MACROS.get(text.lower())
        if macro is None:
            raise ScheduleError(
                f"unknown cron macro {text!r} in {expression!r}; allowed {', '.join(_MACROS)}"
            )
        text = macro

    fields = text.split()
    if len(fields) != len(_FIELDS):
        names = " ".join(spec.name for spec in _FIELDS)
        raise ScheduleError(
            f"cron expression {expression!r} has {len(fields)} fields; expected 5 ({names})"
        )
    return fields


def _parse_field(text: str, spec: _Field, expression: str) -> set[int]:
    values: set[int] = set()
    for item in text.split(","):
        values.update(_parse_item(item, spec, expression))
    return values


def _parse_item(item: str, spec: _Field, expression: str) -> range:
    def fail(problem: str) -> ScheduleError:
        return ScheduleError(
            f"{spec.name} field {item!r} in cron expression {expression!r} {problem}; "
            f"allowed {spec.allowed()}"
        )

    body, slash, step_text = item.partition("/")
    step = 1
    if slash:
        if not _is_number(step_text) or int(step_text) == 0:
            raise fail(f"has step {step_text!r}, which is not a whole number of at least 1")
        step = int(step_text)

    if body == "*":
        return range(spec.low, spec.high + 1, step)

    start_text, dash, end_text = body.partition("-")
    start = _parse_value(start_text, spec, item, expression)
    if dash:
        end = _parse_value(end_text, spec, item, expression)
    elif slash:
        end = spec.high  # "a/n" runs from a to the end of the field
    else:
        end = start

    if spec.name == "day-of-week" and dash and end == 0 and start > 0:
        end = 7  # "FRI-SUN": Sunday closes the week as day 7
    if start > end:
        raise fail(f"is a range from {start} down to {end}; a range must go upwards")
    return range(start, end + 1, step)


def _parse_value(text: str, spec: _Field, item: str, expression: str) -> int:
    upper = text.upper()
    if upper in spec.names:
        return spec.names[upper]
    if not _is_number(text):
        raise ScheduleError(
            f"{spec.name} value {text!r} (in {item!r}) of cron expression {expression!r} is not "
            f"a number or a name; allowed {spec.allowed()}"
        )

    value = int(text)
    if not spec.low <= value <= spec.high:
        raise ScheduleError(
            f"{spec.name} value {value!r} (in {item!r}) of cron expression {expression!r} is out "
            f"of range; allowed {spec.allowed()}"
        )
    return value


def _is_number(text: str) -> bool:
    # str.isdigit alone also accepts digits such as "²" that int() refuses
    return text.isascii() and text.isdigit()


def _fold_width(local: datetime) -> timedelta:
    """Length of the repeated stretch that the ambiguous wall time ``local`` belongs to."""
    first = local.replace(fold=0).utcoffset()
    second = local.replace(fold=1).utcoffset()
    assert first is not None and second is not None  # local is aware: the caller converted it
    return first - second


def _gap_end(wall: datetime, zone: tzinfo) -> datetime:
    """Return the first instant after the DST gap that swallowed the wall time ``wall``.

    Per PEP 495, ``fold=1`` reads a missing wall time with the offset after the transition and
    ``fold=0`` with the one before, so the transition lies between the two readings; a binary
    search over whole seconds finds it (zone transitions fall on whole seconds).
    """
    low = wall.replace(tzinfo=zone, fold=1).astimezone(UTC)
    high = wall.replace(tzinfo=zone, fold=0).astimezone(UTC)
    if low > high:
        low, high = high, low

    lo, hi = 0, int((high - low).total_seconds())
    while lo < hi:
        mid = (lo + hi) // 2
        probe = low + timedelta(seconds=mid)
        if probe.astimezone(zone).replace(tzinfo=None) > wall:
            hi = mid
        else:
            lo = mid + 1
    return low + timedelta(seconds=lo)
