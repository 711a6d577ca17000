"""Parse the timestamps feeds write (RFC 3339 / ISO 8601, RFC 822/2822) into UTC.

Written by hand because ``datetime.fromisoformat`` refuses more than six fractional digits,
which STIX 2.1 allows (BUG-STX-01): extra digits are truncated, never rounded, so
``.123456789`` and ``.1234567891`` both become ``.123456``.
"""

from __future__ import annotations

import email.utils
import re
from datetime import UTC, datetime, timedelta, timezone

from phantom_spire.cti.errors import CTIError

__all__ = ["InvalidTimestamp", "format_utc", "normalize_timestamp", "parse_timestamp"]

_ISO = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})(?:[Tt ](\d{2}):(\d{2})(?::(\d{2}))?(?:[.,](\d+))?"
    r"\s*(Z|z|UTC|[+-]\d{2}(?::?\d{2})?)?)?$"
)


class InvalidTimestamp(CTIError, ValueError):
    """A timestamp is in none of the supported forms."""

    def __init__(self, value: object) -> None:
        self.value = value
        super().__init__(
            f"invalid timestamp {value!r}: expected RFC 3339 / ISO 8601 "
            "(2024-05-06T07:08:09.123Z) or RFC 2822 (Tue, 05 Mar 24 10:15:00 +0200)"
        )


def _offset(zone: str | None) -> timezone:
    if zone is None or zone in ("Z", "z", "UTC"):
        return UTC
    sign = -1 if zone[0] == "-" else 1
    digits = zone[1:].replace(":", "")
    hours, minutes = int(digits[:2]), int(digits[2:4] or 0)
    return timezone(sign * timedelta(hours=hours, minutes=minutes))


def _parse_iso(match: re.Match[str]) -> datetime:
    year, month, day, hour, minute, second, fraction, zone = match.groups()
    micro = int((fraction or "")[:6].ljust(6, "0"))
    parsed = datetime(
        int(year), int(month), int(day), int(hour or 0), int(minute or 0), int(second or 0), micro,
        tzinfo=_offset(zone),
    )  # fmt: skip
    return parsed.astimezone(UTC)


def parse_timestamp(value: str) -> datetime:
    """Return an aware UTC datetime for a timestamp string.

    Times without a zone are taken as UTC (as are RFC 2822 ``-0000`` times). Two-digit RFC 2822
    years follow the RFC: 00-49 are 20xx, 50-99 are 19xx.

    Raises:
        InvalidTimestamp: the value is not a timestamp in a supported form.
    """
    if not isinstance(value, str):
        raise InvalidTimestamp(value)
    text = value.strip()
    match = _ISO.match(text)
    try:
        if match:
            return _parse_iso(match)
        parsed = email.utils.parsedate_to_datetime(text)
    except (ValueError, TypeError, IndexError, OverflowError) as exc:
        raise InvalidTimestamp(value) from exc
    parsed = _fix_two_digit_year(text, parsed)
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


def _fix_two_digit_year(text: str, parsed: datetime) -> datetime:
    # email.utils maps 00-68 to 20xx; RFC 2822 section 4.3 says 00-49 -> 20xx, 50-99 -> 19xx.
    match = re.search(r"\b\d{1,2}\s+[A-Za-z]{3}\s+(\d{2})\s", text)
    if match:
        two_digits = int(match.group(1))
        return parsed.replace(year=(2000 if two_digits < 50 else 1900) + two_digits)
    return parsed


def format_utc(moment: datetime, *, fraction: bool = True) -> str:
    """Format an aware datetime as ``YYYY-MM-DDTHH:MM:SS[.ffffff]Z`` in UTC."""
    text = moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S")
    return f"{text}.{moment.microsecond:06d}Z" if fraction else f"{text}Z"


def normalize_timestamp(value: object) -> str | None:
    """Return a timestamp as UTC text, or None when it cannot be read.

    Microseconds are written when the source had fractional seconds.
    """
    if not isinstance(value, str) or not value.strip():
        return None
    try:
        moment = parse_timestamp(value)
    except InvalidTimestamp:
        return None
    has_fraction = bool(re.search(r"\d[.,]\d", value.split("T")[-1])) and "T" in value.upper()
    return format_utc(moment, fraction=has_fraction)
