"""Nothing accepted is lost when `spire serve` is killed with SIGKILL mid-run."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.e2e.server import SpireServer

FINAL = {"completed", "failed", "cancelled", "timed_out", "dead_lettered"}
FAST = {
    "workers": "1",
    "lease_seconds": "2",
    "heartbeat_seconds": "0.5",
    "reaper_seconds": "0.5",
    "poll_seconds": "0.05",
}


def wait_for(predicate, timeout: float = 30.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(0.1)


def test_killed_server_loses_no_task_and_reruns_the_interrupted_one(
    store_url: str, tmp_path: Path
) -> None:
    server = SpireServer(store_url, tmp_path / "serve.log", **FAST).start()
    api = "/api/v1"
    http = server.http()
    long_body = {
        "name": "long",
        "type": "noop",
        "priority": "critical",
        "definition": {"parameters": {"sleepMs": 4000}},
    }
    short_body = {"name": "short", "type": "noop", "definition": {"parameters": {"sleepMs": 50}}}
    try:
        long_id = http.post(f"{api}/tasks?execute=true", json=long_body).json()["id"]
        wait_for(lambda: http.get(f"{api}/tasks/{long_id}").json()["status"] == "running")
        short_ids = [
            http.post(f"{api}/tasks?execute=true", json=short_body).json()["id"] for _ in range(5)
        ]
        pending_id = http.post(f"{api}/tasks", json=short_body).json()["id"]

        server.kill()
        server.start()

        def all_final() -> bool:
            statuses = [
                http.get(f"{api}/tasks/{i}").json()["status"] for i in [long_id, *short_ids]
            ]
            return all(s in FINAL for s in statuses)

        wait_for(all_final, timeout=60)
        for task_id in [long_id, *short_ids]:
            assert http.get(f"{api}/tasks/{task_id}").json()["status"] == "completed"
        history = http.get(f"{api}/tasks/{long_id}/history").json()
        assert [(h["attempt"], h["status"]) for h in history] == [(1, "lost"), (2, "completed")]
        assert "stopped renewing its lease" in history[0]["error"]
        # A task that was only created, never executed, is still there and still pending.
        assert http.get(f"{api}/tasks/{pending_id}").json()["status"] == "pending"
    finally:
        http.close()
        server.stop()


@pytest.mark.timeout(300)
def test_ingestion_killed_mid_run_resumes_from_its_checkpoint_and_stores_each_row_once(
    store_url: str, tmp_path: Path
) -> None:
    rows = 100_000
    feed = tmp_path / "feed.csv"
    with feed.open("w") as f:
        f.write("indicator,type\n")
        for i in range(rows):
            f.write(f"10.{i // 65536}.{(i // 256) % 256}.{i % 256},ip\n")
    server = SpireServer(store_url, tmp_path / "serve.log", **FAST).start()
    api = "/api/v1"
    http = server.http()
    body = {
        "name": "big feed",
        "type": "data_ingestion",
        "definition": {"parameters": {"source": str(feed), "batchSize": 1000}},
    }
    try:
        task_id = http.post(f"{api}/tasks?execute=true", json=body).json()["id"]

        def progressed() -> bool:
            done = http.get(f"{api}/tasks/{task_id}").json()["progress"]["done"] or 0
            return done >= rows * 0.4

        wait_for(progressed, timeout=120)
        server.kill()
        server.start()
        wait_for(lambda: http.get(f"{api}/tasks/{task_id}").json()["status"] in FINAL, timeout=240)

        task = http.get(f"{api}/tasks/{task_id}").json()
        assert task["status"] == "completed", task["error"]
        assert task["result"]["records"]["read"] == rows
        history = http.get(f"{api}/tasks/{task_id}/history").json()
        assert [h["status"] for h in history] == ["lost", "completed"]
        logs = http.get(f"{api}/tasks/{task_id}/logs", params={"limit": 10_000}).json()
        resumed = [m["message"] for m in logs if m["message"].startswith("resuming")]
        assert len(resumed) == 1 and int(resumed[0].rsplit(" ", 1)[1]) >= rows * 0.4 - 1000
        stored = http.get(f"{api}/indicators", params={"limit": 10_000}).json()
        assert {i["count"] for i in stored} == {1}
        assert task["result"]["stored"]["new"] == rows
    finally:
        http.close()
        server.stop()
