"""Persistence: the Store interface, its schema and its Alembic migrations."""

from __future__ import annotations

from phantom_spire.store.migrate import current_revision, migrate
from phantom_spire.store.store import (
    Claim,
    IndicatorRecord,
    ProgressUpdate,
    Reaped,
    Store,
    TaskScope,
    UpsertStats,
)

__all__ = [
    "Claim",
    "IndicatorRecord",
    "ProgressUpdate",
    "Reaped",
    "Store",
    "TaskScope",
    "UpsertStats",
    "current_revision",
    "migrate",
]
