"""Workflows and schedules over HTTP: templates, creation, progress, approvals, schedules."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Any

from fastapi.testclient import TestClient

from tests.conftest import wait_final


def wait_workflow(client: TestClient, workflow_id: str, timeout: float = 20.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        body = client.get(f"/api/v1/workflows/{workflow_id}").json()
        if body["status"] != "running":
            return body
        time.sleep(0.05)
    raise AssertionError(f"workflow {workflow_id} still running: {body['progress']}")


def step(body: dict[str, Any], name: str) -> dict[str, Any]:
    return next(s for s in body["steps"] if s["step"] == name)


def test_templates_list_the_two_builtins_with_versions(client: TestClient) -> None:
    templates = client.get("/api/v1/workflows/templates").json()
    names = {(t["name"], t["version"]) for t in templates}
    assert {("DAILY_IOC_ANALYSIS", 1), ("INCIDENT_RESPONSE", 1)} <= names


def test_bad_template_parameters_are_refused_before_anything_is_created(
    client: TestClient,
) -> None:
    before = len(client.get("/api/v1/tasks?limit=1000").json())
    response = client.post(
        "/api/v1/workflows",
        json={
            "template": "INCIDENT_RESPONSE",
            "parameters": {"incidentId": "IR-1", "severity": "apocalyptic", "affectedSystems": []},
        },
    )
    assert response.status_code == 422
    assert "'apocalyptic'" in response.json()["detail"]
    assert len(client.get("/api/v1/tasks?limit=1000").json()) == before


def test_cycle_in_an_inline_definition_is_refused_naming_the_cycle(client: TestClient) -> None:
    definition = {
        "name": "loop",
        "steps": [
            {"id": "a", "handler": "noop", "dependsOn": ["c"]},
            {"id": "b", "handler": "noop", "dependsOn": ["a"]},
            {"id": "c", "handler": "noop", "dependsOn": ["b"]},
        ],
    }
    response = client.post("/api/v1/workflows", json={"definition": definition})
    assert response.status_code == 422
    assert "a -> c -> b -> a" in response.json()["detail"]


def test_incident_response_waits_for_approval_then_runs_containment(client: TestClient) -> None:
    created = client.post(
        "/api/v1/workflows",
        json={
            "template": "INCIDENT_RESPONSE",
            "parameters": {
                "incidentId": "IR-7",
                "severity": "critical",
                "affectedSystems": ["web-1", "db-1"],
            },
        },
    )
    assert created.status_code == 201, created.text
    workflow_id = created.json()["id"]
    assert step(created.json(), "collect_evidence")["tasks"] == 2

    deadline = time.monotonic() + 20
    while not step(client.get(f"/api/v1/workflows/{workflow_id}").json(), "approve_containment")[
        "approval"
    ]["waiting"]:
        assert time.monotonic() < deadline, "approval never became due"
        time.sleep(0.05)
    approved = client.post(
        f"/api/v1/workflows/{workflow_id}/steps/approve_containment/approve",
        json={"note": "go"},
    )
    assert approved.status_code == 200, approved.text

    done = wait_workflow(client, workflow_id)
    assert done["status"] == "completed"
    assert step(done, "contain")["status"] == "completed"
    assert done["progress"]["percent"] == 100.0


def test_rejected_approval_skips_the_step_and_its_dependants_follow_their_rule(
    client: TestClient,
) -> None:
    definition = {
        "name": "gate",
        "steps": [
            {"id": "ask", "kind": "approval"},
            {"id": "act", "handler": "noop", "dependsOn": ["ask"]},
            {"id": "report", "handler": "noop", "dependsOn": ["act"], "triggerRule": "all_done"},
        ],
    }
    workflow_id = client.post("/api/v1/workflows", json={"definition": definition}).json()["id"]
    rejected = client.post(f"/api/v1/workflows/{workflow_id}/steps/ask/reject")
    assert rejected.status_code == 200, rejected.text
    done = wait_workflow(client, workflow_id)
    assert [step(done, s)["status"] for s in ("ask", "act", "report")] == [
        "skipped",
        "skipped",
        "completed",
    ]


def test_schedule_shows_ten_next_fire_times_and_lists_under_scheduled(client: TestClient) -> None:
    task = client.post("/api/v1/tasks", json={"name": "n", "type": "noop"}).json()
    spec = {"type": "recurring", "cron": "0 8 * * 1", "timezone": "Europe/Amsterdam"}
    created = client.post(f"/api/v1/tasks/{task['id']}/schedule", json=spec)
    assert created.status_code == 201, created.text
    assert client.get(f"/api/v1/tasks/{task['id']}").json()["status"] == "scheduled"

    shown = client.get(f"/api/v1/tasks/{task['id']}/schedule").json()
    assert len(shown["nextFireTimes"]) == 10
    listed = client.get("/api/v1/tasks/scheduled").json()
    assert task["id"] in [s["taskId"] for s in listed]

    deleted = client.delete(f"/api/v1/tasks/{task['id']}/schedule")
    assert deleted.status_code == 200
    assert client.get(f"/api/v1/tasks/{task['id']}").json()["status"] == "pending"


def test_invalid_cron_is_refused_with_the_expression_named(client: TestClient) -> None:
    task = client.post("/api/v1/tasks", json={"name": "n", "type": "noop"}).json()
    spec = {"type": "recurring", "cron": "61 * * * *", "timezone": "UTC"}
    response = client.post(f"/api/v1/tasks/{task['id']}/schedule", json=spec)
    assert response.status_code == 422
    assert "61" in response.json()["detail"]


def test_once_schedule_fires_its_own_task_at_its_time(client: TestClient) -> None:
    task = client.post("/api/v1/tasks", json={"name": "n", "type": "noop"}).json()
    run_at = datetime.now(UTC) + timedelta(seconds=0.5)
    spec = {"type": "once", "runAt": run_at.isoformat()}
    assert client.post(f"/api/v1/tasks/{task['id']}/schedule", json=spec).status_code == 201
    assert wait_final(client, task["id"])["status"] == "completed"


def test_once_schedule_in_the_past_is_refused(client: TestClient) -> None:
    task = client.post("/api/v1/tasks", json={"name": "n", "type": "noop"}).json()
    spec = {"type": "once", "runAt": "2020-01-01T00:00:00Z"}
    response = client.post(f"/api/v1/tasks/{task['id']}/schedule", json=spec)
    assert response.status_code == 422
    assert "no fire time after now" in response.json()["detail"]
