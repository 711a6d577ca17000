"""The ingestion quality report through the engine: REST API (both stores) and `spire ingest`."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.conftest import SAMPLE_FEEDS, shared_path, wait_final
from tests.e2e.server import SpireServer

QUALITY_FEED = SAMPLE_FEEDS / "quality_mixed.csv"
LISTS = SAMPLE_FEEDS.parent / "warninglists"


def ingest(client: TestClient, **parameters: Any) -> dict[str, Any]:
    body = {"name": "quality", "type": "data_ingestion", "definition": {"parameters": parameters}}
    response = client.post("/api/v1/tasks?execute=true", json=body)
    assert response.status_code == 201, response.text
    return wait_final(client, response.json()["id"], timeout=60)


def test_quality_report_is_the_task_result(client: TestClient) -> None:
    task = ingest(client, source=str(QUALITY_FEED), warningLists=[str(LISTS)])

    assert task["status"] == "completed", task["error"]
    quality = task["result"]["quality"]
    assert quality["duplicates"]["withinFeed"] == 2
    assert quality["duplicates"]["new"] == 6
    assert quality["warningLists"]["hits"] == {
        "Test hashes": 1,
        "Test documentation networks": 1,
    }
    assert [f["flag"] for f in quality["anomalies"]] == ["futureTimestamps"]


def test_second_run_counts_duplicates_against_the_store_and_flags_volume(
    client: TestClient,
) -> None:
    first = ingest(client, source=str(QUALITY_FEED))
    volume = first["result"]["quality"]["volume"]["indicators"]

    second = ingest(client, source=str(QUALITY_FEED), volumeHistory=[volume * 10] * 3)

    duplicates = second["result"]["quality"]["duplicates"]
    assert (duplicates["new"], duplicates["againstStore"]) == (0, 6)
    assert "volume" in {f["flag"] for f in second["result"]["quality"]["anomalies"]}


def test_warning_list_tags_reach_the_stored_indicator(client: TestClient) -> None:
    ingest(client, source=str(QUALITY_FEED), warningLists=[str(LISTS / "test_hashes.json")])

    rows = client.get(
        "/api/v1/indicators", params={"type": "md5", "value": "44d88612fea8a8f36de82e1278abb02f"}
    ).json()
    assert len(rows) == 1
    assert "warninglist:Test hashes" in rows[0]["tags"]


def test_bad_quality_parameter_is_a_422_naming_it(client: TestClient) -> None:
    body = {
        "name": "bad",
        "type": "data_ingestion",
        "definition": {"parameters": {"source": str(QUALITY_FEED), "maxRejectShare": 2}},
    }
    response = client.post("/api/v1/tasks", json=body)
    assert response.status_code == 422
    assert "maxRejectShare" in response.text or "max_reject_share" in response.text


def test_missing_warning_list_fails_the_task_without_retrying(client: TestClient) -> None:
    task = ingest(client, source=str(QUALITY_FEED), warningLists=["/no/such/list.json"])
    assert task["status"] == "failed"
    assert "/no/such/list.json" in task["error"]


def test_corpus_warning_lists_flag_eicar_hashes_in_a_feed(
    client: TestClient, tmp_path: Path
) -> None:
    lists = shared_path("corpus", "lists")
    feed = tmp_path / "eicar.csv"
    feed.write_text(
        "md5,comment\n44d88612fea8a8f36de82e1278abb02f,eicar\n"
        "d41d8cd98f00b204e9800998ecf8427e,empty file\n",
        encoding="utf-8",
    )
    task = ingest(
        client,
        source=str(feed),
        warningLists=[
            str(lists / "misp_warninglist_eicar_hashes.json"),
            str(lists / "misp_warninglist_empty_hashes.json"),
        ],
    )

    hits = task["result"]["quality"]["warningLists"]["hits"]
    assert task["result"]["stored"]["new"] == 2
    assert hits == {
        "List of hashes for EICAR test virus": 1,
        "List of known hashes for empty files": 1,
    }


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SpireServer]:
    folder = tmp_path_factory.mktemp("quality")
    srv = SpireServer(
        f"sqlite:///{folder / 'spire.db'}", folder / "serve.log", poll_seconds="0.05"
    ).start()
    yield srv
    srv.stop()


def test_spire_ingest_prints_the_quality_report(server: SpireServer) -> None:
    result = server.cli("ingest", str(QUALITY_FEED))

    assert result.returncode == 0, result.stderr
    assert "duplicates: 2 repeated within the feed, 0 already in the store" in result.stdout
    assert "anomaly futureTimestamps: 1 record has a first or last seen time" in result.stdout


def test_spire_ingest_json_carries_the_quality_report(server: SpireServer) -> None:
    result = server.cli("ingest", str(SAMPLE_FEEDS / "sample_misp_event.json"), "--json")

    quality = json.loads(result.stdout)["result"]["quality"]
    assert quality["anomalies"] == []
    assert quality["volume"]["indicators"] == 9


def test_volume_flag_compares_with_the_same_sources_earlier_runs(
    client: TestClient, tmp_path: Path
) -> None:
    small = tmp_path / "feed.csv"
    small.write_text("indicator\n1.1.1.1\n2.2.2.2\n")
    big = tmp_path / "big" / "feed.csv"
    big.parent.mkdir()
    big.write_text("indicator\n" + "".join(f"10.0.{i // 256}.{i % 256}\n" for i in range(60)))

    def ingest(path: Path) -> dict[str, Any]:
        body = {
            "name": "volume",
            "type": "data_ingestion",
            "definition": {"parameters": {"source": str(path), "sourceName": "daily-feed"}},
        }
        task_id = client.post("/api/v1/tasks?execute=true", json=body).json()["id"]
        task = wait_final(client, task_id)
        assert task["status"] == "completed", task["error"]
        return task["result"]["quality"]

    first, second = ingest(small), ingest(small)
    jump = ingest(big)

    assert [f["flag"] for f in first["anomalies"]] == []  # nothing to compare with yet
    assert [f["flag"] for f in second["anomalies"]] == []
    assert "volume" in [f["flag"] for f in jump["anomalies"]]
