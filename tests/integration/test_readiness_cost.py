"""Finishing one workflow task costs the same, whatever the size of its graph.

A behaviour test, not a timing test: it counts the SQL statements run while one task
finishes (the finish itself plus the readiness listener) and checks they do not depend on
how many tasks the workflow has. On SQLite it also checks the query plan of each of those
statements: a full scan of a table would cost the graph's size with the same statement count.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
import sqlalchemy as sa

from phantom_spire.engine.lifecycle import ExecutionStatus, TaskStatus
from phantom_spire.runtime import Runtime
from phantom_spire.services.workflows import WorkflowRequest
from phantom_spire.settings import Settings

MEASURED = 15  # tasks finished under observation per graph


@pytest.fixture
def runtime(store_url: str) -> Iterator[Runtime]:
    rt = Runtime(Settings(database_url=store_url), run_migrations=False)
    yield rt
    rt.close()


@contextmanager
def recording(rt: Runtime) -> Iterator[list[tuple[str, Any]]]:
    """Every statement sent on the store's write engine while the block runs."""
    seen: list[tuple[str, Any]] = []
    engine = rt.store._write_engine

    def record(conn: Any, cursor: Any, statement: str, params: Any, ctx: Any, many: bool) -> None:
        seen.append((statement, params))

    sa.event.listen(engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        sa.event.remove(engine, "before_cursor_execute", record)


def finish_next(rt: Runtime, seen: list[tuple[str, Any]] | None = None) -> None:
    """Claim the next task, then complete it, recording the completion's statements only.

    The claim stays outside the recording: it runs the store's periodic priority aging,
    which depends on the wall clock, not on the graph.
    """
    (claim,) = rt.store.claim_tasks("w1", 1, 30)
    with recording(rt) as recorded:
        rt.store.finish_execution(
            claim,
            "w1",
            execution_status=ExecutionStatus.COMPLETED,
            task_status=TaskStatus.COMPLETED,
            result={},
        )
    if seen is not None:
        seen.extend(recorded)


def statements_per_finish(rt: Runtime, steps: list[dict[str, Any]], skip: int) -> list[int]:
    """Start a workflow, finish ``skip`` tasks unobserved, then count for ``MEASURED`` more."""
    # Finish what an earlier graph left queued, so every measured task is of this one.
    while _pending(rt):
        finish_next(rt)
    definition = {"name": "cost", "maxParallel": 10_000, "steps": steps}
    rt.workflows.create_workflow(WorkflowRequest(definition=definition))
    for _ in range(skip):
        finish_next(rt)
    counts = []
    for _ in range(MEASURED):
        seen: list[tuple[str, Any]] = []
        finish_next(rt, seen)
        counts.append(len(seen))
    return counts


def _pending(rt: Runtime) -> bool:
    return bool(rt.store.count_tasks_by_status().get("queued"))


def fan_out(leaves: int) -> list[dict[str, Any]]:
    return [
        {"id": "root", "handler": "noop"},
        {"id": "leaf", "handler": "noop", "dependsOn": ["root"], "forEach": list(range(leaves))},
        {"id": "join", "handler": "noop", "dependsOn": ["leaf"]},
    ]


def chain(length: int) -> list[dict[str, Any]]:
    return [
        {"id": f"s{i}", "handler": "noop", "dependsOn": [f"s{i - 1}"] if i else []}
        for i in range(length)
    ]


def test_a_fan_out_leaf_costs_the_same_in_a_50_and_a_500_task_graph(runtime: Runtime) -> None:
    # Skip the root: releasing its leaves costs its direct dependants, as it may.
    small = statements_per_finish(runtime, fan_out(50), skip=1)
    large = statements_per_finish(runtime, fan_out(500), skip=1)
    assert len(set(small)) == 1, small
    assert small == large


def test_a_chain_link_costs_the_same_in_a_50_and_a_500_task_chain(runtime: Runtime) -> None:
    small = statements_per_finish(runtime, chain(50), skip=1)
    large = statements_per_finish(runtime, chain(500), skip=1)
    assert len(set(small)) == 1, small
    assert small == large
    # A link also queues its successor, so it costs more than a leaf with nothing to queue.
    assert small[0] > 0


def test_no_statement_run_per_finished_task_scans_a_table(runtime: Runtime) -> None:
    if not runtime.store.url.startswith("sqlite"):
        pytest.skip("PostgreSQL plans depend on table statistics; checked by hand (README)")
    runtime.workflows.create_workflow(
        WorkflowRequest(definition={"name": "plan", "maxParallel": 10_000, "steps": chain(200)})
    )
    finish_next(runtime)
    seen: list[tuple[str, Any]] = []
    for _ in range(3):
        finish_next(runtime, seen)
    scans = []
    with runtime.store._write_engine.connect() as conn:
        for statement, params in seen:
            if not re.match(r"\s*(SELECT|UPDATE|DELETE|INSERT)", statement, re.IGNORECASE):
                continue  # BEGIN, SAVEPOINT, RELEASE
            plan = conn.exec_driver_sql("EXPLAIN QUERY PLAN " + statement, params).all()
            for row in plan:
                detail = str(row[-1])
                # "SCAN t" reads every row; "SEARCH t USING INDEX" reads the matching ones.
                if re.match(r"SCAN (tasks|workflow_tasks|task_dependencies|workflows)\b", detail):
                    scans.append((detail, " ".join(statement.split())[:120]))
        conn.rollback()
    assert len(seen) > 10
    assert scans == []
