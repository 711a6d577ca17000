"""The error every scheduling module raises."""

from __future__ import annotations

__all__ = ["ScheduleError"]


class ScheduleError(ValueError):
    """A schedule (cron expression, time zone or spec) is invalid or cannot be evaluated.

    A ``ValueError``, so that pydantic reports it as a validation error of the field or spec.
    """
