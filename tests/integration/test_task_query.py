"""Task listing filters, multi-key sorting, snapshot cursors and full-text search.

Every test runs on SQLite and PostgreSQL.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from phantom_spire.errors import InvalidQuery
from phantom_spire.handlers.registry import default_registry
from phantom_spire.services.tasks import TaskService, TaskSpec, TaskUpdate
from phantom_spire.store import Store
from phantom_spire.store.task_query import TaskQuery, search_tokens
from phantom_spire.testing import FakeClock


@pytest.fixture
def env(store_url: str) -> Iterator[tuple[Store, TaskService, FakeClock]]:
    clock = FakeClock()
    store = Store(store_url, clock=clock)
    yield store, TaskService(store, default_registry(), default_timeout_ms=1000), clock
    store.dispose()


def make(service: TaskService, name: str, **fields: Any) -> str:
    spec = TaskSpec.model_validate({"name": name, "type": "noop", **fields})
    return service.create_task(spec)["id"]


def names(service: TaskService, query: TaskQuery, limit: int = 100) -> list[str]:
    return [r["name"] for r in service.page_tasks(query, limit=limit).rows]


def test_filters_combine_types_priorities_tags_and_times(env: Any) -> None:
    store, service, clock = env
    make(service, "a", priority="high", tags=["apt28", "phishing"])
    clock.advance(10)
    make(service, "b", priority="low", tags=["apt28"])
    clock.advance(10)
    make(service, "c", priority="high", tags=["ransomware"], metadata={"description": "x"})

    assert names(service, TaskQuery(priorities=[300])) == ["c", "a"]
    assert names(service, TaskQuery(tags=["apt28"])) == ["b", "a"]
    assert names(service, TaskQuery(tags=["apt28", "phishing"], tags_mode="all")) == ["a"]
    assert names(service, TaskQuery(tags=["apt28", "ransomware"], tags_mode="any")) == [
        "c",
        "b",
        "a",
    ]
    start = clock() - 20
    assert names(service, TaskQuery(created_after=start + 5, created_before=start + 15)) == ["b"]
    assert names(service, TaskQuery(types=["data_ingestion"])) == []
    assert names(service, TaskQuery(owner="system", department="system")) == ["c", "b", "a"]


def test_sorting_on_several_keys_each_with_its_direction(env: Any) -> None:
    _, service, clock = env
    for name, priority in [("b", "low"), ("a", "high"), ("c", "low"), ("d", "high")]:
        make(service, name, priority=priority)
        clock.advance(1)

    query = TaskQuery(sort=[("priority", "desc"), ("name", "asc")])
    assert names(service, query) == ["a", "d", "b", "c"]
    query = TaskQuery(sort=[("priority", "asc"), ("created", "desc")])
    assert names(service, query) == ["c", "b", "d", "a"]


def test_cursor_pages_cover_every_task_once(env: Any) -> None:
    _, service, _ = env
    ids = {make(service, f"t{i}") for i in range(23)}
    seen: list[str] = []
    page = service.page_tasks(TaskQuery(), limit=5)
    seen += [r["id"] for r in page.rows]
    while page.next_cursor:
        page = service.page_tasks(TaskQuery(), limit=5, cursor=page.next_cursor)
        seen += [r["id"] for r in page.rows]
    assert len(seen) == len(set(seen)) == 23 and set(seen) == ids


def test_unknown_cursor_is_refused_with_its_value(env: Any) -> None:
    _, service, _ = env
    with pytest.raises(InvalidQuery, match="'nope.5' is unknown or expired"):
        service.page_tasks(TaskQuery(), limit=5, cursor="nope.5")
    with pytest.raises(InvalidQuery, match="not one this server issued"):
        service.page_tasks(TaskQuery(), limit=5, cursor="garbage")


operations = st.lists(
    st.tuples(st.sampled_from(["insert", "rename", "reprioritise"]), st.integers(0, 10_000)),
    max_size=6,
)


@settings(
    max_examples=20,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    initial=st.integers(1, 30),
    page_size=st.integers(1, 7),
    sort=st.sampled_from(
        [[("created", "desc")], [("name", "asc")], [("priority", "desc"), ("updated", "asc")]]
    ),
    between_pages=st.lists(operations, max_size=8),
)
def test_pagination_neither_skips_nor_repeats_under_concurrent_inserts_and_updates(
    env: Any,
    initial: int,
    page_size: int,
    sort: list[tuple[str, str]],
    between_pages: list[list[tuple[str, int]]],
) -> None:
    store, service, clock = env
    existing = [make(service, f"n{i:03d}") for i in range(initial)]
    query = TaskQuery(sort=sort, owner="system")
    seen: list[str] = []

    page = service.page_tasks(query, limit=page_size)
    seen += [r["id"] for r in page.rows]
    step = 0
    while page.next_cursor:
        for op, n in between_pages[step] if step < len(between_pages) else []:
            clock.advance(1)
            target = existing[n % len(existing)]
            if op == "insert":
                make(service, f"new{n}")
            elif op == "rename":
                service.update_task(target, TaskUpdate(name=f"z{n}"))
            else:
                service.update_task(target, TaskUpdate(priority="critical"))
        step += 1
        page = service.page_tasks(query, limit=page_size, cursor=page.next_cursor)
        seen += [r["id"] for r in page.rows]

    assert len(seen) == len(set(seen))
    assert set(existing) <= set(seen)
    # Clean up for the next example: hypothesis reuses the fixture's store.
    for task_id in {r["id"] for r in store.list_tasks(limit=10_000)}:
        service.delete_task(task_id)


def test_search_ranks_better_matches_first_and_respects_fields(env: Any) -> None:
    _, service, _ = env
    make(service, "weekly phishing report", tags=["phishing"])
    make(service, "phishing kit", metadata={"description": "kit seen in phishing wave"})
    make(service, "ransomware triage", metadata={"description": "no phishing here"})

    hits = names(service, TaskQuery(text="phishing", sort=[]))
    assert set(hits) == {"weekly phishing report", "phishing kit", "ransomware triage"}
    only_names = TaskQuery(text="phishing", fields=("name",), sort=[])
    assert set(names(service, only_names)) == {"weekly phishing report", "phishing kit"}
    assert names(service, TaskQuery(text="ransomware triage", sort=[])) == ["ransomware triage"]


@pytest.mark.parametrize(
    "text",
    ['"', "phishing\"", "a AND (b", "NEAR(x y)", "col:val", "-x ^y", "\\/*", "' OR 1=1 --",
     "x" * 5000, "фишинг", "{name}: x", "NOT"],
)  # fmt: skip
def test_search_treats_special_characters_literally(env: Any, text: str) -> None:
    _, service, _ = env
    make(service, "phishing kit")
    query = TaskQuery(text=text, sort=[])
    if not search_tokens(text):
        with pytest.raises(InvalidQuery):  # a 422 naming the text, never a server error
            service.page_tasks(query, limit=10)
        return
    hits = names(service, query)
    assert hits in ([], ["phishing kit"])


def test_search_without_words_is_refused(env: Any) -> None:
    _, service, _ = env
    with pytest.raises(InvalidQuery, match="contains no words"):
        service.page_tasks(TaskQuery(text="!!! ---", sort=[]), limit=10)


def test_search_follows_updates_to_names(env: Any) -> None:
    _, service, _ = env
    task_id = make(service, "old name")
    service.update_task(task_id, TaskUpdate(name="beacon hunt"))
    assert names(service, TaskQuery(text="beacon", sort=[])) == ["beacon hunt"]
    assert names(service, TaskQuery(text="old", sort=[])) == []
