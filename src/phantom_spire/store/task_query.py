"""Task listing and search: filters, multi-key sorting, snapshot cursors, full-text search.

Paging uses snapshot cursors: the first request of a listing stores the ordered ids of every
matching task (up to :data:`MAX_SNAPSHOT`); later pages read the next ids from that snapshot
and load the tasks as they are now. A task that existed throughout therefore appears exactly
once, however many tasks are inserted or updated between pages; tasks created after the first
page are not in it, and deleted ones (or ones that became invisible) are left out.

Full-text search turns the query into plain word tokens before it reaches the engine, so
quotes, operators and other special characters are matched literally and can never make the
FTS5 or tsquery parser fail.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB

from phantom_spire.ids import new_id
from phantom_spire.store.schema import task_cursors, tasks, workflow_tasks

__all__ = [
    "MAX_SNAPSHOT",
    "SEARCH_FIELDS",
    "SORT_FIELDS",
    "Page",
    "TaskQuery",
    "search_tokens",
]

MAX_SNAPSHOT = 100_000
CURSOR_TTL_SECONDS = 3600.0
MAX_TOKENS = 32

SORT_FIELDS = {
    "created": tasks.c.created_at,
    "updated": tasks.c.updated_at,
    "priority": tasks.c.priority,
    "name": tasks.c.name,
    "status": tasks.c.status,
}
SEARCH_FIELDS = ("name", "tags", "metadata.description")
_FTS_COLUMNS = {"name": "name", "tags": "tags", "metadata.description": "description"}


@dataclass(frozen=True)
class TaskQuery:
    """Filters and order of a task listing. Empty filters match everything."""

    types: Sequence[str] = ()
    statuses: Sequence[str] = ()
    priorities: Sequence[int] = ()
    tags: Sequence[str] = ()
    tags_mode: str = "any"
    owner: str | None = None
    department: str | None = None
    workflow: str | None = None
    classifications: Sequence[int] = ()
    created_after: float | None = None
    created_before: float | None = None
    updated_after: float | None = None
    updated_before: float | None = None
    sort: Sequence[tuple[str, str]] = (("created", "desc"),)
    text: str | None = None
    fields: Sequence[str] = field(default_factory=lambda: SEARCH_FIELDS)


@dataclass(frozen=True)
class Page:
    """One page of tasks and the cursor of the next one (None on the last page)."""

    rows: list[dict[str, Any]]
    next_cursor: str | None


def search_tokens(text: str) -> list[str]:
    """The words of a search: letters, digits and underscores; everything else separates."""
    return re.findall(r"\w+", text, flags=re.UNICODE)[:MAX_TOKENS]


def filter_clauses(query: TaskQuery, *, postgres: bool) -> list[Any]:
    """WHERE clauses for the query's filters (not its text)."""
    c = tasks.c
    clauses: list[Any] = [c.deleted_at.is_(None)]
    if query.types:
        clauses.append(c.type.in_(query.types))
    if query.statuses:
        clauses.append(c.status.in_(query.statuses))
    if query.priorities:
        clauses.append(c.priority.in_(query.priorities))
    if query.classifications:
        clauses.append(c.classification.in_(query.classifications))
    if query.owner:
        clauses.append(c.owner == query.owner)
    if query.department:
        clauses.append(c.department == query.department)
    if query.workflow:
        clauses.append(
            c.id.in_(
                sa.select(workflow_tasks.c.task_id).where(
                    workflow_tasks.c.workflow_id == query.workflow
                )
            )
        )
    for column, bound, after in (
        (c.created_at, query.created_after, True),
        (c.created_at, query.created_before, False),
        (c.updated_at, query.updated_after, True),
        (c.updated_at, query.updated_before, False),
    ):
        if bound is not None:
            clauses.append(column >= bound if after else column < bound)
    if query.tags:
        clauses.append(_tag_clause(query.tags, query.tags_mode, postgres=postgres))
    return clauses


def _tag_clause(tags: Sequence[str], mode: str, *, postgres: bool) -> Any:
    wanted = sorted(set(tags))
    if postgres:
        as_jsonb = sa.type_coerce(tasks.c.tags, JSONB)
        array = sa.cast(sa.literal(wanted, sa.ARRAY(sa.Text)), sa.ARRAY(sa.Text))
        return as_jsonb.has_all(array) if mode == "all" else as_jsonb.has_any(array)
    each = sa.func.json_each(tasks.c.tags).table_valued("value")
    matching = sa.select(sa.func.count(sa.distinct(each.c.value))).where(each.c.value.in_(wanted))
    needed = len(wanted) if mode == "all" else 1
    return matching.scalar_subquery() >= needed


def order_by(query: TaskQuery) -> list[Any]:
    keys = [
        SORT_FIELDS[name].desc() if direction == "desc" else SORT_FIELDS[name].asc()
        for name, direction in query.sort
    ]
    return [*keys, tasks.c.id.asc()]


def text_clause(query: TaskQuery, *, postgres: bool) -> tuple[Any, Any] | None:
    """(WHERE clause, rank expression) for the query's text, or None without text.

    Raises ValueError when the text holds no word at all: there is nothing to search for.
    """
    if query.text is None:
        return None
    tokens = search_tokens(query.text)
    if not tokens:
        raise ValueError(f"search text {query.text[:100]!r} contains no words")
    if postgres:
        document = _pg_document(query.fields)
        ts_query = sa.func.to_tsquery("simple", " & ".join(tokens))
        return document.op("@@")(ts_query), sa.func.ts_rank(document, ts_query).desc()

    columns = " ".join(_FTS_COLUMNS[f] for f in query.fields)
    # Quoted tokens are FTS5 strings: nothing inside them is an operator.
    match = "{" + columns + "}: (" + " AND ".join(f'"{t}"' for t in tokens) + ")"
    ranked = (
        sa.select(sa.column("task_id"), sa.literal_column("bm25(tasks_fts)").label("rank"))
        .select_from(sa.table("tasks_fts"))
        .where(sa.literal_column("tasks_fts").op("MATCH")(match))
        .subquery("fts")
    )
    return tasks.c.id.in_(sa.select(ranked.c.task_id)), ranked


def _pg_document(fields: Sequence[str]) -> Any:
    parts = []
    for name in fields:
        if name == "name":
            parts.append(sa.func.coalesce(tasks.c.name, ""))
        elif name == "tags":
            parts.append(sa.func.coalesce(sa.cast(tasks.c.tags, sa.Text), ""))
        else:
            parts.append(sa.func.coalesce(tasks.c.metadata.op("->>")("description"), ""))
    text = parts[0]
    for part in parts[1:]:
        text = text + " " + part
    return sa.func.to_tsvector("simple", text)


def store_snapshot(conn: sa.Connection, owner: str, ids: list[str], now: float) -> str:
    """Remember the ordered ids of a listing; returns its cursor id."""
    conn.execute(
        sa.delete(task_cursors).where(task_cursors.c.created_at < now - CURSOR_TTL_SECONDS)
    )
    cursor_id = new_id()
    conn.execute(
        sa.insert(task_cursors).values(id=cursor_id, owner=owner, task_ids=ids, created_at=now)
    )
    return cursor_id


def load_snapshot(conn: sa.Connection, cursor_id: str, owner: str) -> list[str] | None:
    row = conn.execute(
        sa.select(task_cursors.c.task_ids).where(
            task_cursors.c.id == cursor_id, task_cursors.c.owner == owner
        )
    ).first()
    return None if row is None else list(row.task_ids)
