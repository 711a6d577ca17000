"""Query parameters of task listings and search, turned into a store TaskQuery."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import Query

from phantom_spire.engine.lifecycle import Priority, TaskStatus
from phantom_spire.errors import InvalidQuery
from phantom_spire.security import ClassificationError, ClassificationScheme
from phantom_spire.store.task_query import SEARCH_FIELDS, SORT_FIELDS, TaskQuery

__all__ = ["TaskFilters", "epoch_of", "split_values"]


def split_values(values: list[str] | None) -> list[str]:
    """Accept both ``?status=a&status=b`` and ``?status=a,b``."""
    return [v.strip() for item in values or [] for v in item.split(",") if v.strip()]


def epoch_of(value: datetime | None, field: str) -> float | None:
    """Epoch seconds of a query-string time, which must carry its zone."""
    if value is None:
        return None
    if value.tzinfo is None:
        raise InvalidQuery(
            f"time {value.isoformat()!r} has no time zone; add Z or an offset",
            field=field,
            value=value.isoformat(),
        )
    return value.timestamp()


class TaskFilters:
    """Filters shared by ``GET /tasks`` and ``GET /tasks/search`` (a FastAPI dependency)."""

    def __init__(
        self,
        type: Annotated[list[str] | None, Query(description="Task types (any of).")] = None,
        status: Annotated[list[str] | None, Query(description="Statuses (any of).")] = None,
        priority: Annotated[list[str] | None, Query(description="Priorities (any of).")] = None,
        tag: Annotated[list[str] | None, Query(description="Tags.")] = None,
        tag_mode: Annotated[
            str, Query(alias="tagMode", pattern="^(any|all)$", description="any or all tags")
        ] = "any",
        owner: Annotated[str | None, Query(max_length=120)] = None,
        department: Annotated[str | None, Query(max_length=120)] = None,
        workflow: Annotated[str | None, Query(max_length=36)] = None,
        classification: Annotated[list[str] | None, Query(description="Levels (any of).")] = None,
        created_after: Annotated[datetime | None, Query(alias="createdAfter")] = None,
        created_before: Annotated[datetime | None, Query(alias="createdBefore")] = None,
        updated_after: Annotated[datetime | None, Query(alias="updatedAfter")] = None,
        updated_before: Annotated[datetime | None, Query(alias="updatedBefore")] = None,
        sort: Annotated[
            list[str] | None,
            Query(description="Keys like created:desc,priority:desc,name (asc by default)."),
        ] = None,
    ) -> None:
        self.types = split_values(type)
        self.statuses = split_values(status)
        self.priorities = split_values(priority)
        self.tags = split_values(tag)
        self.tag_mode = tag_mode
        self.owner = owner
        self.department = department
        self.workflow = workflow
        self.classifications = split_values(classification)
        self.times = {
            "createdAfter": created_after,
            "createdBefore": created_before,
            "updatedAfter": updated_after,
            "updatedBefore": updated_before,
        }
        self.sort = split_values(sort)

    def to_query(
        self,
        scheme: ClassificationScheme,
        *,
        text: str | None = None,
        fields: list[str] | None = None,
    ) -> TaskQuery:
        """Validate every value; a bad one is an InvalidQuery naming the parameter and value."""
        _check_known("status", self.statuses, [s.value for s in TaskStatus])
        _check_known("priority", self.priorities, [p.value for p in Priority])
        _check_known("fields", fields or [], list(SEARCH_FIELDS))
        times = {name: epoch_of(value, name) for name, value in self.times.items()}
        return TaskQuery(
            types=self.types,
            statuses=self.statuses,
            priorities=[Priority(p).rank for p in self.priorities],
            tags=self.tags,
            tags_mode=self.tag_mode,
            owner=self.owner,
            department=self.department,
            workflow=self.workflow,
            classifications=[_level(scheme, c) for c in self.classifications],
            created_after=times["createdAfter"],
            created_before=times["createdBefore"],
            updated_after=times["updatedAfter"],
            updated_before=times["updatedBefore"],
            sort=_sort_keys(self.sort, ranked=text is not None),
            text=text,
            fields=tuple(fields) if fields else SEARCH_FIELDS,
        )


def _check_known(name: str, values: list[str], known: list[str]) -> None:
    for value in values:
        if value not in known:
            raise InvalidQuery(
                f"unknown {name} {value!r}; known: {', '.join(known)}", field=name, value=value
            )


def _level(scheme: ClassificationScheme, name: str) -> int:
    try:
        return scheme.parse(name).rank
    except ClassificationError as exc:
        raise InvalidQuery(str(exc), field="classification", value=name) from None


def _sort_keys(values: list[str], *, ranked: bool) -> list[tuple[str, str]]:
    if not values:
        return [] if ranked else [("created", "desc")]
    keys = []
    for value in values:
        name, _, direction = value.partition(":")
        direction = direction or "asc"
        if name not in SORT_FIELDS or direction not in ("asc", "desc"):
            raise InvalidQuery(
                f"bad sort key {value!r}; use FIELD or FIELD:asc|desc with FIELD one of "
                f"{', '.join(SORT_FIELDS)}",
                field="sort",
                value=value,
            )
        keys.append((name, direction))
    return keys
