"""Response bodies of the API (camelCase JSON), built from store rows."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from phantom_spire.engine.lifecycle import Priority
from phantom_spire.security import Tlp

__all__ = [
    "ExecutionOut",
    "IndicatorOut",
    "LogOut",
    "TaskOut",
    "TaskStatusOut",
    "iso",
]


def iso(epoch: float | None) -> str | None:
    if epoch is None:
        return None
    return datetime.fromtimestamp(epoch, UTC).isoformat().replace("+00:00", "Z")


class _Out(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True)


class Progress(_Out):
    done: int | None = None
    total: int | None = None


class TaskOut(_Out):
    id: str
    name: str
    type: str
    priority: Priority
    status: str
    definition: dict[str, Any]
    tags: list[str]
    metadata: dict[str, Any]
    attempts: int
    max_attempts: int
    progress: Progress
    result: Any = None
    error: str | None = None
    created_at: str | None
    updated_at: str | None
    started_at: str | None = None
    finished_at: str | None = None
    owner: str | None = None
    department: str | None = None
    classification: int = Field(default=0, description="Level rank; 0 is the lowest.")
    tlp: str = "CLEAR"

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> TaskOut:
        return cls(
            id=row["id"],
            name=row["name"],
            type=row["type"],
            priority=Priority.from_rank(row["priority"]),
            status=row["status"],
            definition={
                "handler": row["handler"],
                "parameters": row["parameters"],
                "timeout": row["timeout_ms"],
                "retryPolicy": row["retry_policy"],
            },
            tags=row["tags"] or [],
            metadata=row["metadata"] or {},
            attempts=row["attempts"],
            max_attempts=row["max_attempts"],
            progress=Progress(done=row.get("progress_done"), total=row.get("progress_total")),
            result=row.get("result"),
            error=row.get("error"),
            created_at=iso(row["created_at"]),
            updated_at=iso(row["updated_at"]),
            started_at=iso(row.get("started_at")),
            finished_at=iso(row.get("finished_at")),
            owner=row.get("owner"),
            department=row.get("department"),
            classification=row.get("classification") or 0,
            tlp=row.get("tlp") or "CLEAR",
        )


class TaskStatusOut(_Out):
    id: str
    status: str
    attempts: int
    max_attempts: int
    progress: Progress
    worker_id: str | None = None
    lease_expires_at: str | None = None
    next_attempt_at: str | None = Field(default=None, description="Set while in retry_wait.")
    error: str | None = None
    waiting: dict[str, Any] | None = Field(
        default=None, description="For a task that is not running: why, in words and data."
    )

    @classmethod
    def from_row(cls, row: dict[str, Any], waiting: dict[str, Any] | None = None) -> TaskStatusOut:
        if waiting and isinstance(waiting.get("until"), float):
            waiting = {**waiting, "until": iso(waiting["until"])}
        return cls(
            id=row["id"],
            status=row["status"],
            attempts=row["attempts"],
            max_attempts=row["max_attempts"],
            progress=Progress(done=row.get("progress_done"), total=row.get("progress_total")),
            worker_id=row.get("lease_owner"),
            lease_expires_at=iso(row.get("lease_expires_at")),
            next_attempt_at=iso(row["available_at"]) if row["status"] == "retry_wait" else None,
            error=row.get("error"),
            waiting=waiting,
        )


class ExecutionOut(_Out):
    id: str
    attempt: int
    status: str
    worker_id: str
    started_at: str | None
    finished_at: str | None = None
    duration_ms: float | None = None
    error: str | None = None
    error_type: str | None = None
    metrics: dict[str, Any] | None = None

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> ExecutionOut:
        duration = None
        if row["finished_at"] is not None:
            duration = round((row["finished_at"] - row["started_at"]) * 1000, 3)
        return cls(
            id=row["id"],
            attempt=row["attempt"],
            status=row["status"],
            worker_id=row["worker_id"],
            started_at=iso(row["started_at"]),
            finished_at=iso(row["finished_at"]),
            duration_ms=duration,
            error=row["error"],
            error_type=row["error_type"],
            metrics=row["metrics"],
        )


class LogOut(_Out):
    id: int
    at: str | None
    level: str
    attempt: int | None
    message: str
    fields: dict[str, Any] | None = None

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> LogOut:
        return cls(
            id=row["id"],
            at=iso(row["at"]),
            level=row["level"],
            attempt=row["attempt"],
            message=row["message"],
            fields=row["fields"],
        )


class IndicatorOut(_Out):
    id: int
    type: str
    value: str
    first_seen: str | None
    last_seen: str | None
    count: int
    confidence: int | None = None
    tags: list[str]
    sources: list[str]
    tlp: str = Field(default="CLEAR", description="Strictest TLP of every report.")
    classification: int = Field(default=0, description="Highest level rank of every report.")

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> IndicatorOut:
        return cls(
            id=row["id"],
            type=row["type"],
            value=row["value"],
            first_seen=iso(row["first_seen"]),
            last_seen=iso(row["last_seen"]),
            count=row["count"],
            confidence=row["confidence"],
            tags=row["tags"] or [],
            sources=row["sources"],
            tlp=list(Tlp)[row.get("tlp") or 0].value,
            classification=row.get("classification") or 0,
        )
