"""Every STIX, MISP and CSV file of ../shared/corpus through the engine: API and `spire ingest`.

The record totals come from ../shared/corpus/MANIFEST.md (as read in
``tests/unit/cti/test_feed_corpus.py``, which documents the reading). Through the engine, a
file must (1) report as many records read as the manifest counts, and (2) leave in the store
exactly one row per distinct (type, value) among the indicators the reader accepted: the
store's deduplication is what this adds on top of the reader's own tests.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from phantom_spire.cti.feeds import read_feed
from phantom_spire.runtime import Runtime
from tests.conftest import shared_path, wait_final
from tests.e2e.server import SpireServer
from tests.unit.cti.test_feed_corpus import CSV_FILES, MISP_FILES, STIX_FILES

pytestmark = pytest.mark.corpus

MANIFEST_RECORDS = {
    **{name: sum(types.values()) for name, types in STIX_FILES.items()},
    **{name: sum(types.values()) for name, types in MISP_FILES.items()},
    **CSV_FILES,
}


def distinct_indicators(path: Path) -> Counter[str]:
    """Distinct (type, value) pairs the reader accepts, counted by type."""
    keys = {
        (item.indicator.type, item.indicator.value)
        for item in read_feed(path)
        if item.kind == "indicator" and item.indicator is not None
    }
    return Counter(t for t, _ in keys)


def check_result(
    result: dict, name: str, path: Path, stored: dict[str, int], *, fresh_store: bool
) -> None:
    assert result["records"]["read"] == MANIFEST_RECORDS[name]
    expected = distinct_indicators(path)
    assert stored == dict(expected)
    if fresh_store:
        # Every distinct indicator is new to an empty store; in a shared one, other files
        # may have brought some of the same values first.
        assert result["stored"]["new"] == sum(expected.values())


@pytest.mark.parametrize("name", sorted(MANIFEST_RECORDS))
def test_corpus_file_ingests_through_the_api_with_manifest_counts(
    client: TestClient, name: str
) -> None:
    path = shared_path("corpus", name)
    body = {
        "name": f"corpus {name}",
        "type": "data_ingestion",
        "definition": {"parameters": {"source": str(path)}},
    }
    task_id = client.post("/api/v1/tasks?execute=true", json=body).json()["id"]
    task = wait_final(client, task_id, timeout=60)

    assert task["status"] == "completed", task["error"]
    runtime: Runtime = client.app.state.runtime
    stored = runtime.store.count_indicators_by_type(source=path.name)
    check_result(task["result"], name, path, stored, fresh_store=True)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SpireServer]:
    folder = tmp_path_factory.mktemp("corpus")
    srv = SpireServer(
        f"sqlite:///{folder / 'spire.db'}", folder / "serve.log", poll_seconds="0.05"
    ).start()
    yield srv
    srv.stop()


@pytest.mark.parametrize("name", sorted(MANIFEST_RECORDS))
def test_corpus_file_ingests_through_spire_ingest_with_manifest_counts(
    server: SpireServer, name: str
) -> None:
    path = shared_path("corpus", name)
    result = server.cli("ingest", str(path), "--json")
    assert result.returncode == 0, result.stderr + result.stdout
    task = json.loads(result.stdout)

    listed = json.loads(
        server.cli("indicators", "--source", path.name, "--limit", "10000", "--json").stdout
    )
    check_result(
        task["result"], name, path, dict(Counter(i["type"] for i in listed)), fresh_store=False
    )
