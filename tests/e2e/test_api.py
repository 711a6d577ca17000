"""The REST API end to end, with the worker running, on SQLite and PostgreSQL."""

from __future__ import annotations

from pathlib import Path

from fastapi.testclient import TestClient

from tests.conftest import SAMPLE_FEEDS, wait_final


def noop_body(**parameters: object) -> dict[str, object]:
    return {
        "name": "probe",
        "type": "noop",
        "priority": "high",
        "definition": {"parameters": parameters, "timeout": 5000},
    }


def test_created_task_waits_until_executed_then_runs(client: TestClient) -> None:
    created = client.post("/api/v1/tasks", json=noop_body())
    assert created.status_code == 201
    task = created.json()
    assert task["status"] == "pending" and task["priority"] == "high"
    assert task["definition"]["timeout"] == 5000
    assert task["definition"]["retryPolicy"]["maxAttempts"] == 3

    executed = client.post(f"/api/v1/tasks/{task['id']}/execute")
    assert executed.status_code == 202 and executed.json()["status"] == "queued"
    assert wait_final(client, task["id"])["status"] == "completed"


def test_execute_query_flag_creates_and_queues_in_one_call(client: TestClient) -> None:
    task = client.post("/api/v1/tasks?execute=true", json=noop_body()).json()
    assert task["status"] == "queued"
    done = wait_final(client, task["id"])
    assert done["result"] == {"attempt": 1}
    assert done["finishedAt"].endswith("Z")


def test_history_and_logs_show_each_attempt(client: TestClient) -> None:
    body = noop_body(fail=True)
    body["definition"]["retryPolicy"] = {"maxAttempts": 2, "initialDelay": 10}
    task = client.post("/api/v1/tasks?execute=true", json=body).json()
    wait_final(client, task["id"])

    history = client.get(f"/api/v1/tasks/{task['id']}/history").json()
    assert [(h["attempt"], h["status"]) for h in history] == [(1, "failed"), (2, "failed")]
    assert history[0]["error"] == "failed on request (fail=true)"
    logs = client.get(f"/api/v1/tasks/{task['id']}/logs").json()
    assert {line["attempt"] for line in logs} == {1, 2}
    later = client.get(f"/api/v1/tasks/{task['id']}/logs", params={"after": logs[0]["id"]})
    assert len(later.json()) == len(logs) - 1


def test_status_explains_state_attempts_and_error(client: TestClient) -> None:
    body = noop_body(fail=True, retryable=False)
    task = client.post("/api/v1/tasks?execute=true", json=body).json()
    wait_final(client, task["id"])
    status = client.get(f"/api/v1/tasks/{task['id']}/status").json()
    assert status["status"] == "failed"
    assert status["attempts"] == 1 and status["maxAttempts"] == 3
    assert status["error"] == "failed on request (fail=true)"


def test_list_filters_by_type_and_status_with_limit(client: TestClient) -> None:
    for _ in range(3):
        client.post("/api/v1/tasks", json=noop_body())
    ingest = {"name": "i", "type": "data_ingestion", "definition": {"parameters": {"source": "x"}}}
    client.post("/api/v1/tasks", json=ingest)

    assert len(client.get("/api/v1/tasks", params={"type": "noop"}).json()) == 3
    assert len(client.get("/api/v1/tasks", params={"type": "noop", "limit": 2}).json()) == 2
    pending = client.get("/api/v1/tasks", params={"status": "pending,queued"}).json()
    assert len(pending) == 4
    assert client.get("/api/v1/tasks", params={"status": "completed"}).json() == []


def test_wrong_parameter_type_is_422_naming_field_and_value(client: TestClient) -> None:
    body = noop_body(sleepMs="soon")
    response = client.post("/api/v1/tasks", json=body)

    assert response.status_code == 422
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.json()
    assert problem["errors"][0]["field"] == "definition.parameters.sleepMs"
    assert problem["errors"][0]["value"] == "soon"
    assert "'soon'" in problem["detail"]


def test_unknown_handler_is_422_listing_known_handlers(client: TestClient) -> None:
    response = client.post("/api/v1/tasks", json={"name": "x", "type": "no_such_handler"})
    assert response.status_code == 422
    assert "unknown handler 'no_such_handler'" in response.json()["detail"]
    assert "data_ingestion" in response.json()["detail"]


def test_malformed_body_fields_are_422_with_their_location(client: TestClient) -> None:
    body = {"name": "", "type": "noop", "priority": "urgent", "definition": {"timeout": -1}}
    response = client.post("/api/v1/tasks", json=body)
    assert response.status_code == 422
    fields = {e["field"] for e in response.json()["errors"]}
    assert fields == {"name", "priority", "definition.timeout"}


def test_retry_policy_is_camel_case_and_validated(client: TestClient) -> None:
    body = noop_body()
    body["definition"]["retryPolicy"] = {"maxAttempts": 0, "backoffStrategy": "random"}
    response = client.post("/api/v1/tasks", json=body)
    fields = {e["field"] for e in response.json()["errors"]}
    assert fields == {
        "definition.retryPolicy.maxAttempts",
        "definition.retryPolicy.backoffStrategy",
    }


def test_missing_task_is_404_problem(client: TestClient) -> None:
    for path in ("", "/status", "/history", "/logs"):
        response = client.get(f"/api/v1/tasks/does-not-exist{path}")
        assert response.status_code == 404, path
        assert response.json()["detail"] == "no task with id 'does-not-exist'"


def test_executing_a_queued_task_again_is_409_with_current_state(client: TestClient) -> None:
    body = noop_body(sleepMs=2000)
    task = client.post("/api/v1/tasks?execute=true", json=body).json()
    response = client.post(f"/api/v1/tasks/{task['id']}/execute")
    assert response.status_code == 409
    assert response.json()["currentStatus"] in {"queued", "running"}


def test_health_reports_store_and_task_counts(client: TestClient) -> None:
    client.post("/api/v1/tasks", json=noop_body())
    health = client.get("/api/v1/tasks/system/health").json()
    assert health["status"] == "healthy"
    assert health["tasks"] == {"pending": 1}
    assert "data_ingestion" in health["handlers"]


def test_openapi_document_is_served_at_api_docs(client: TestClient) -> None:
    assert client.get("/api-docs").status_code == 200
    paths = client.get("/api-docs/openapi.json").json()["paths"]
    for path in (
        "/api/v1/tasks",
        "/api/v1/tasks/{task_id}",
        "/api/v1/tasks/{task_id}/execute",
        "/api/v1/tasks/{task_id}/status",
        "/api/v1/tasks/{task_id}/history",
        "/api/v1/tasks/{task_id}/logs",
        "/api/v1/tasks/system/health",
        "/api/v1/indicators",
    ):
        assert path in paths


def test_sample_feed_ingests_and_its_indicators_are_readable(client: TestClient) -> None:
    body = {
        "name": "sample csv",
        "type": "data_ingestion",
        "definition": {"parameters": {"source": str(SAMPLE_FEEDS / "sample_iocs.csv")}},
    }
    task = wait_final(client, client.post("/api/v1/tasks?execute=true", json=body).json()["id"])

    assert task["status"] == "completed", task["error"]
    assert task["result"]["format"] == "csv"
    stored = client.get("/api/v1/indicators", params={"source": "sample_iocs.csv"}).json()
    assert len(stored) == task["result"]["stored"]["new"] > 0
    assert {i["sources"][0] for i in stored} == {"sample_iocs.csv"}


def bad_feed(client: TestClient, source: str, **extra: object) -> dict[str, object]:
    params = {"source": source, **extra}
    body = {
        "name": "bad",
        "type": "data_ingestion",
        "definition": {"parameters": params, "retryPolicy": {"maxAttempts": 1}},
    }
    return wait_final(client, client.post("/api/v1/tasks?execute=true", json=body).json()["id"])


def test_bad_feeds_fail_with_a_clear_error_and_the_engine_keeps_serving(
    client: TestClient,
) -> None:
    cases = {
        "bad_truncated.json": "truncated",
        "bad_empty.json": "empty",
        "bad_binary.bin": "binary",
        "bad_no_indicator_column.csv": "indicator column",
    }
    for name, expected in cases.items():
        task = bad_feed(client, str(SAMPLE_FEEDS / name))
        assert task["status"] == "failed", name
        assert name in task["error"] and expected in task["error"].lower(), task["error"]
        history = client.get(f"/api/v1/tasks/{task['id']}/history").json()
        assert history[0]["error"] == task["error"]
        logs = client.get(f"/api/v1/tasks/{task['id']}/logs").json()
        assert any(line["level"] == "error" and name in line["message"] for line in logs)

    assert client.get("/api/v1/tasks/system/health").json()["status"] == "healthy"


def test_missing_file_fails_without_retry(client: TestClient, tmp_path: Path) -> None:
    task = bad_feed(client, str(tmp_path / "nope.csv"))
    assert task["status"] == "failed"
    assert "does not exist" in task["error"]


def test_url_that_refuses_connection_ends_with_the_connection_error(client: TestClient) -> None:
    # Port 9 on loopback: nothing listens there, so the connection is refused at once.
    task = bad_feed(client, "http://127.0.0.1:9/feed.json")
    assert task["status"] == "dead_lettered"
    assert "ConnectError" in task["error"] and "127.0.0.1:9" in task["error"]


def test_ingestion_format_must_be_a_known_one(client: TestClient) -> None:
    body = {
        "name": "x",
        "type": "data_ingestion",
        "definition": {"parameters": {"source": "a.csv", "format": "yaml"}},
    }
    response = client.post("/api/v1/tasks", json=body)
    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == "definition.parameters.format"


def test_unknown_status_filter_is_422_naming_the_value(client: TestClient) -> None:
    response = client.get("/api/v1/tasks", params={"status": "completed,complete"})
    assert response.status_code == 422
    (error,) = response.json()["errors"]
    assert (error["field"], error["value"]) == ("status", "complete")
    assert "known: pending" in error["message"]


def test_indicator_lookup_accepts_defanged_and_upper_case_values(client: TestClient) -> None:
    body = {
        "name": "sample csv",
        "type": "data_ingestion",
        "definition": {"parameters": {"source": str(SAMPLE_FEEDS / "sample_iocs.csv")}},
    }
    wait_final(client, client.post("/api/v1/tasks?execute=true", json=body).json()["id"])
    stored = client.get("/api/v1/indicators", params={"type": "ipv4"}).json()
    value = stored[0]["value"]
    defanged = value.replace(".", "[.]", 1)

    found = client.get("/api/v1/indicators", params={"value": defanged}).json()
    assert [i["value"] for i in found] == [value]
    assert client.get("/api/v1/indicators", params={"type": "ipv5"}).status_code == 422


def test_control_endpoints_follow_the_transition_table(client: TestClient) -> None:
    task = client.post("/api/v1/tasks", json=noop_body()).json()
    paused = client.post(f"/api/v1/tasks/{task['id']}/resume")
    assert paused.status_code == 409 and paused.json()["currentStatus"] == "pending"

    assert client.post(f"/api/v1/tasks/{task['id']}/cancel").json()["status"] == "cancelled"
    assert client.post(f"/api/v1/tasks/{task['id']}/retry").json()["status"] == "queued"
    done = wait_final(client, task["id"])
    assert done["status"] == "completed"
    refused = client.post(f"/api/v1/tasks/{task['id']}/cancel")
    assert refused.status_code == 409
    assert "cannot cancel task" in refused.json()["detail"]


def test_update_then_delete_through_the_api(client: TestClient) -> None:
    task = client.post("/api/v1/tasks", json=noop_body()).json()
    updated = client.put(
        f"/api/v1/tasks/{task['id']}", json={"name": "renamed", "priority": "low", "timeout": 10}
    ).json()
    assert (updated["name"], updated["priority"], updated["definition"]["timeout"]) == (
        "renamed",
        "low",
        10,
    )
    bad = client.put(f"/api/v1/tasks/{task['id']}", json={"parameters": {"sleepMs": "x"}})
    assert bad.status_code == 422

    assert client.delete(f"/api/v1/tasks/{task['id']}").status_code == 204
    assert client.get(f"/api/v1/tasks/{task['id']}").status_code == 404


def test_idempotency_key_header_returns_200_for_a_repeat_and_409_for_another_body(
    client: TestClient,
) -> None:
    headers = {"Idempotency-Key": "abc-123"}
    first = client.post("/api/v1/tasks", json=noop_body(), headers=headers)
    again = client.post("/api/v1/tasks", json=noop_body(), headers=headers)
    other = client.post("/api/v1/tasks", json=noop_body(sleepMs=5), headers=headers)

    assert (first.status_code, again.status_code, other.status_code) == (201, 200, 409)
    assert again.json()["id"] == first.json()["id"]


def test_status_says_why_a_task_waits_and_metrics_are_served(client: TestClient) -> None:
    task = client.post("/api/v1/tasks", json=noop_body()).json()
    status = client.get(f"/api/v1/tasks/{task['id']}/status").json()
    assert status["waiting"]["reason"] == "not_executed"

    client.post(f"/api/v1/tasks/{task['id']}/execute")
    wait_final(client, task["id"])
    metrics = client.get(f"/api/v1/tasks/{task['id']}/metrics").json()
    assert metrics["attempts"] == 1 and metrics["queueWaitSeconds"] >= 0
    assert client.get(f"/api/v1/tasks/{task['id']}/status").json()["waiting"] is None


def test_dead_letter_list_shows_failed_tasks_with_their_error(client: TestClient) -> None:
    body = noop_body(fail=True, retryable=False)
    task = wait_final(client, client.post("/api/v1/tasks?execute=true", json=body).json()["id"])
    letters = client.get("/api/v1/tasks/dead-letters").json()
    assert [(t["id"], t["error"]) for t in letters] == [
        (task["id"], "failed on request (fail=true)")
    ]


def test_indicators_filter_by_tag_and_seen_after(client: TestClient) -> None:
    body = {
        "name": "sample csv",
        "type": "data_ingestion",
        "definition": {"parameters": {"source": str(SAMPLE_FEEDS / "sample_iocs.csv")}},
    }
    wait_final(client, client.post("/api/v1/tasks?execute=true", json=body).json()["id"])
    everything = client.get("/api/v1/indicators").json()
    tagged = {i["value"] for i in everything if "private" in i["tags"]}

    by_tag = client.get("/api/v1/indicators", params={"tag": "private"}).json()
    future = client.get("/api/v1/indicators", params={"seenAfter": "2999-01-01T00:00:00Z"})
    past = client.get("/api/v1/indicators", params={"seenAfter": "2000-01-01T00:00:00Z"})
    naive = client.get("/api/v1/indicators", params={"seenAfter": "2000-01-01T00:00:00"})

    assert tagged and {i["value"] for i in by_tag} == tagged
    assert future.json() == [] and len(past.json()) == len(everything)
    assert naive.status_code == 422 and naive.json()["errors"][0]["field"] == "seenAfter"
