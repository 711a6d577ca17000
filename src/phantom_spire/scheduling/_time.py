"""Small time helpers shared by the scheduling modules."""

from __future__ import annotations

from datetime import UTC, datetime

from phantom_spire.scheduling.errors import ScheduleError


def as_utc(moment: datetime, name: str) -> datetime:
    """Return ``moment`` in UTC, refusing naive datetimes (their instant is unknown)."""
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ScheduleError(f"{name} must be a timezone-aware datetime, got naive {moment!r}")
    return moment.astimezone(UTC)
