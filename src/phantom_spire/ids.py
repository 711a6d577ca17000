"""Time-sortable identifiers (UUIDv7), so ids order by creation in every index."""

from __future__ import annotations

import uuid_utils

__all__ = ["new_id"]


def new_id() -> str:
    """Return a new UUIDv7 as its canonical string."""
    return str(uuid_utils.uuid7())
