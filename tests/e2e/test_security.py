"""Authentication, the role x route matrix, clearance, the audit chain and rate limits.

Runs on SQLite and PostgreSQL.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from phantom_spire.api import create_app
from phantom_spire.runtime import Runtime
from phantom_spire.security import ROLE_PERMISSIONS, Permission, Role
from phantom_spire.services.identity import SYSTEM
from phantom_spire.store.schema import audit_events
from tests.conftest import SAMPLE_FEEDS, make_test_settings, wait_final

P = Permission

# What each route needs. The test below fails if a route is added without a row here.
ROUTES: dict[tuple[str, str], Permission] = {
    ("GET", "/api/v1/tasks"): P.TASK_READ,
    ("POST", "/api/v1/tasks"): P.TASK_CREATE,
    ("GET", "/api/v1/tasks/system/health"): P.TASK_READ,
    ("GET", "/api/v1/tasks/search"): P.TASK_READ,
    ("GET", "/api/v1/tasks/dead-letters"): P.TASK_READ,
    ("GET", "/api/v1/tasks/{task_id}"): P.TASK_READ,
    ("PUT", "/api/v1/tasks/{task_id}"): P.TASK_CONTROL,
    ("DELETE", "/api/v1/tasks/{task_id}"): P.TASK_DELETE,
    ("POST", "/api/v1/tasks/{task_id}/execute"): P.TASK_EXECUTE,
    ("GET", "/api/v1/tasks/{task_id}/status"): P.TASK_READ,
    ("GET", "/api/v1/tasks/{task_id}/metrics"): P.TASK_READ,
    ("POST", "/api/v1/tasks/{task_id}/cancel"): P.TASK_CONTROL,
    ("POST", "/api/v1/tasks/{task_id}/pause"): P.TASK_CONTROL,
    ("POST", "/api/v1/tasks/{task_id}/resume"): P.TASK_CONTROL,
    ("POST", "/api/v1/tasks/{task_id}/retry"): P.TASK_CONTROL,
    ("GET", "/api/v1/tasks/{task_id}/history"): P.TASK_READ,
    ("GET", "/api/v1/tasks/{task_id}/logs"): P.TASK_READ,
    ("GET", "/api/v1/indicators"): P.INDICATOR_READ,
    ("GET", "/api/v1/audit"): P.AUDIT_READ,
    ("GET", "/api/v1/audit/verify"): P.AUDIT_VERIFY,
    ("POST", "/api/v1/admin/users"): P.ADMIN_USERS,
    ("POST", "/api/v1/admin/keys"): P.ADMIN_KEYS,
    ("POST", "/api/v1/admin/keys/{key_id}/revoke"): P.ADMIN_KEYS,
    ("POST", "/api/v1/admin/keys/{key_id}/rotate"): P.ADMIN_KEYS,
    ("GET", "/api/v1/workflows/templates"): P.WORKFLOW_READ,
    ("POST", "/api/v1/workflows"): P.WORKFLOW_RUN,
    ("GET", "/api/v1/workflows/{workflow_id}"): P.WORKFLOW_READ,
    ("POST", "/api/v1/workflows/{workflow_id}/steps/{step}/approve"): P.WORKFLOW_RUN,
    ("POST", "/api/v1/workflows/{workflow_id}/steps/{step}/reject"): P.WORKFLOW_RUN,
    ("GET", "/api/v1/tasks/scheduled"): P.SCHEDULE_READ,
    ("POST", "/api/v1/tasks/{task_id}/schedule"): P.SCHEDULE_MANAGE,
    ("GET", "/api/v1/tasks/{task_id}/schedule"): P.SCHEDULE_READ,
    ("DELETE", "/api/v1/tasks/{task_id}/schedule"): P.SCHEDULE_MANAGE,
    ("POST", "/api/v1/events"): P.SCHEDULE_MANAGE,
}
BODIES: dict[tuple[str, str], Any] = {
    ("POST", "/api/v1/tasks"): {"name": "m", "type": "noop"},
    ("PUT", "/api/v1/tasks/{task_id}"): {"name": "renamed"},
    ("POST", "/api/v1/admin/users"): {
        "id": "made-by-matrix", "role": "viewer", "department": "soc", "clearance": "UNCLASSIFIED"
    },
    ("POST", "/api/v1/admin/keys"): {"userId": "admin"},
    ("POST", "/api/v1/workflows"): {
        "template": "INCIDENT_RESPONSE",
        "parameters": {"incidentId": "IR-1", "severity": "low", "affectedSystems": ["h1"]},
    },
    ("POST", "/api/v1/workflows/{workflow_id}/steps/{step}/approve"): {"note": "ok"},
    ("POST", "/api/v1/workflows/{workflow_id}/steps/{step}/reject"): {"note": "no"},
    ("POST", "/api/v1/tasks/{task_id}/schedule"): {
        "type": "once", "runAt": "2030-01-01T00:00:00Z"
    },
    ("POST", "/api/v1/events"): {"type": "data_change", "source": "matrix"},
}  # fmt: skip


class World:
    """A runtime with one user (and key) per role and per clearance."""

    def __init__(self, store_url: str, **settings: Any) -> None:
        self.runtime = Runtime(make_test_settings(store_url, **settings), run_migrations=False)
        self.admin_key = self.runtime.identity.bootstrap_admin()[1]
        self.keys: dict[str, str] = {}
        for role in Role:
            self.add_user(f"{role.value}-user", role.value, "soc", "TOP SECRET")
        for level in self.runtime.scheme.levels:
            self.add_user(f"analyst-{level.rank}", "analyst", "soc", level.name)
        self.add_user("analyst-other-dept", "analyst", "legal", "TOP SECRET")
        self.app = create_app(self.runtime, run_worker=False)

    def add_user(self, user_id: str, role: str, department: str, clearance: str) -> None:
        self.runtime.identity.create_user(user_id, role, department, clearance)
        self.keys[user_id] = self.runtime.identity.issue_key(SYSTEM, user_id)[1]

    def client(self, user: str | None = None) -> TestClient:
        key = self.admin_key if user is None else self.keys[user]
        return TestClient(self.app, headers={"X-API-Key": key})

    def task(self, user: str = "admin", **extra: Any) -> dict[str, Any]:
        body = {"name": "t", "type": "noop", **extra}
        key = self.admin_key if user == "admin" else self.keys[user]
        response = TestClient(self.app, headers={"X-API-Key": key}).post("/api/v1/tasks", json=body)
        assert response.status_code == 201, response.text
        return response.json()


@pytest.fixture
def world(store_url: str) -> Iterator[World]:
    w = World(store_url)
    yield w
    w.runtime.close()


def test_requests_without_a_valid_key_are_401_and_audited(world: World) -> None:
    anonymous = TestClient(world.app)
    missing = anonymous.get("/api/v1/tasks")
    wrong = anonymous.get("/api/v1/tasks", headers={"X-API-Key": "spk_nope_nope"})
    bearer = anonymous.get("/api/v1/tasks", headers={"Authorization": f"Bearer {world.admin_key}"})

    assert (missing.status_code, wrong.status_code, bearer.status_code) == (401, 401, 200)
    assert missing.headers["WWW-Authenticate"].startswith("Bearer")
    denied = world.runtime.store.list_audit(action="auth.authenticate", outcome="denied")
    assert len(denied) == 2
    assert all(world.admin_key not in str(e) for e in world.runtime.store.list_audit(limit=1000))


def test_every_route_is_in_the_permission_matrix(world: World) -> None:
    spec = world.app.openapi()
    routes = {(m.upper(), p) for p, ops in spec["paths"].items() for m in ops}
    assert routes == set(ROUTES)


@pytest.mark.parametrize("role", list(Role))
def test_every_route_allows_exactly_the_roles_the_permission_table_grants(
    world: World, role: Role
) -> None:
    client = world.client(f"{role.value}-user")
    allowed_permissions = ROLE_PERMISSIONS[role]
    for (method, path), permission in ROUTES.items():
        task = world.task()
        key_id = world.runtime.identity.issue_key(SYSTEM, "viewer-user")[0]
        url = (
            path.replace("{task_id}", task["id"])
            .replace("{key_id}", key_id)
            .replace("{workflow_id}", "no-such-workflow")
            .replace("{step}", "approve")
        )
        params = {"q": "t"} if path.endswith("/search") else None
        response = client.request(method, url, json=BODIES.get((method, path)), params=params)
        if permission in allowed_permissions:
            assert response.status_code != 403, (role, method, path, response.text)
            assert response.status_code < 500, (role, method, path, response.text)
        else:
            assert response.status_code == 403, (role, method, path, response.status_code)
            assert permission.value in response.json()["detail"]


def test_no_listing_count_or_read_reveals_tasks_above_clearance(world: World) -> None:
    levels = world.runtime.scheme.levels
    ids = {
        level.rank: world.task(classification=level.name, name=f"beacon {level.name}")["id"]
        for level in levels
    }
    missing = world.client("analyst-0").get("/api/v1/tasks/no-such-task").json()

    for clearance in levels:
        client = world.client(f"analyst-{clearance.rank}")
        visible = {t["id"] for t in client.get("/api/v1/tasks").json()}
        expected = {ids[r] for r in range(clearance.rank + 1)}
        assert visible == expected
        health = client.get("/api/v1/tasks/system/health").json()
        assert sum(health["tasks"].values()) == len(expected)
        hits = client.get("/api/v1/tasks/search", params={"q": "beacon"}).json()
        assert {t["id"] for t in hits} == expected
        paged = client.get("/api/v1/tasks", params={"limit": 1})
        seen = [t["id"] for t in paged.json()]
        while "X-Next-Cursor" in paged.headers:
            paged = client.get(
                "/api/v1/tasks", params={"limit": 1, "cursor": paged.headers["X-Next-Cursor"]}
            )
            seen += [t["id"] for t in paged.json()]
        assert set(seen) == expected
        for rank, task_id in ids.items():
            response = client.get(f"/api/v1/tasks/{task_id}")
            if rank <= clearance.rank:
                assert response.status_code == 200
            else:
                assert response.status_code == 404
                body = response.json()
                assert body["detail"] == missing["detail"].replace("no-such-task", task_id)
                assert {k for k in body} == {k for k in missing}
                for sub in ("status", "history", "logs", "metrics"):
                    assert client.get(f"/api/v1/tasks/{task_id}/{sub}").status_code == 404


def test_a_user_cannot_create_a_task_above_their_clearance(world: World) -> None:
    response = world.client("analyst-1").post(
        "/api/v1/tasks", json={"name": "x", "type": "noop", "classification": "SECRET"}
    )
    assert response.status_code == 422
    assert "above your clearance" in response.json()["detail"]


def test_analysts_act_only_on_their_own_department_unless_granted(world: World) -> None:
    soc_task = world.task("analyst-3")
    other = world.client("analyst-other-dept")
    assert other.post(f"/api/v1/tasks/{soc_task['id']}/cancel").status_code == 403
    assert world.client("auditor-user").get(f"/api/v1/tasks/{soc_task['id']}").status_code == 200
    assert soc_task["id"] not in {t["id"] for t in other.get("/api/v1/tasks").json()}


def test_reads_of_classified_tasks_and_denials_are_audited(world: World) -> None:
    secret = world.task(classification="SECRET")
    world.client("analyst-3").get(f"/api/v1/tasks/{secret['id']}")
    world.client("viewer-user").post(f"/api/v1/tasks/{secret['id']}/cancel")

    events = world.runtime.store.list_audit(target_id=secret["id"])
    assert [(e["action"], e["outcome"], e["actor"]) for e in events[1:]] == [
        ("task.read", "success", "analyst-3"),
        ("authz.task:control", "denied", "viewer-user"),
    ]
    assert events[1]["request_id"] and events[1]["key_id"]


def test_rotated_key_and_its_successor_both_work_until_revoked(world: World) -> None:
    admin = world.client()
    created = admin.post("/api/v1/admin/keys", json={"userId": "viewer-user"}).json()
    rotated = admin.post(f"/api/v1/admin/keys/{created['keyId']}/rotate").json()

    for key in (created["key"], rotated["key"]):
        assert (
            TestClient(world.app, headers={"X-API-Key": key}).get("/api/v1/tasks").status_code
            == 200
        )
    admin.post(f"/api/v1/admin/keys/{created['keyId']}/revoke")
    old = TestClient(world.app, headers={"X-API-Key": created["key"]}).get("/api/v1/tasks")
    assert old.status_code == 401


def test_rate_limit_answers_429_with_retry_after(store_url: str) -> None:
    w = World(store_url, rate_limit="3/minute")
    client = w.client("viewer-user")
    statuses = [client.get("/api/v1/tasks").status_code for _ in range(5)]
    assert statuses[:3] == [200, 200, 200] and statuses[3:] == [429, 429]
    limited = client.get("/api/v1/tasks")
    assert int(limited.headers["Retry-After"]) >= 1
    assert w.client("auditor-user").get("/api/v1/tasks").status_code == 200  # per key
    w.runtime.close()


# -- audit chain tamper tests -------------------------------------------------------------


def make_trail(world: World) -> list[int]:
    admin = world.client()
    for _ in range(4):
        task = world.task()
        admin.post(f"/api/v1/tasks/{task['id']}/cancel")
    ids = [e["id"] for e in world.runtime.store.list_audit(limit=1000)]
    assert admin.get("/api/v1/audit/verify").json()["ok"] is True
    return ids


def tamper(world: World, statement: Any) -> dict[str, Any]:
    with world.runtime.store._write() as conn:
        conn.execute(statement)
    return world.client("auditor-user").get("/api/v1/audit/verify").json()


def test_untouched_audit_trail_verifies(world: World) -> None:
    ids = make_trail(world)
    result = world.client("auditor-user").get("/api/v1/audit/verify").json()
    assert result == {"ok": True, "checked": len(ids), "firstBadId": None, "reason": None}


def test_edited_audit_event_is_named(world: World) -> None:
    ids = make_trail(world)
    target = ids[5]
    result = tamper(
        world, sa.update(audit_events).where(audit_events.c.id == target).values(actor="mallory")
    )
    assert result["ok"] is False and result["firstBadId"] == target


def test_deleted_audit_event_is_named(world: World) -> None:
    ids = make_trail(world)
    result = tamper(world, sa.delete(audit_events).where(audit_events.c.id == ids[4]))
    # The verifier names the event whose predecessor vanished, and says which id is missing.
    assert result["ok"] is False and result["firstBadId"] == ids[5], result
    assert str(ids[4]) in result["reason"], result


def test_swapped_audit_events_are_named(world: World) -> None:
    ids = make_trail(world)
    a, b = ids[3], ids[6]
    with world.runtime.store._write() as conn:
        rows = {
            r["id"]: dict(r)
            for r in conn.execute(
                sa.select(audit_events).where(audit_events.c.id.in_([a, b]))
            ).mappings()
        }
        for src, dst in ((a, b), (b, a)):
            values = {k: v for k, v in rows[src].items() if k != "id"}
            conn.execute(sa.update(audit_events).where(audit_events.c.id == dst).values(**values))
    result = world.client("auditor-user").get("/api/v1/audit/verify").json()
    assert result["ok"] is False and result["firstBadId"] == a


def test_inserted_forged_audit_event_is_detected(world: World) -> None:
    ids = make_trail(world)
    last = world.runtime.store.list_audit(limit=1000)[2]
    forged = {**last, "id": ids[-1] + 1, "action": "task.delete", "actor": "mallory"}
    with world.runtime.store._write() as conn:
        conn.execute(
            sa.update(audit_events)
            .where(audit_events.c.id > ids[2])
            .values(id=audit_events.c.id + 1000)
        )
        conn.execute(sa.insert(audit_events).values(**{**forged, "id": ids[3]}))
    result = world.client("auditor-user").get("/api/v1/audit/verify").json()
    assert result["ok"] is False and result["firstBadId"] in (ids[3], ids[3] + 1000)


def test_openapi_document_declares_the_key_schemes_on_every_route(world: World) -> None:
    spec = world.app.openapi()
    assert set(spec["components"]["securitySchemes"]) == {"ApiKey", "Bearer"}
    for path, operations in spec["paths"].items():
        for method, operation in operations.items():
            assert operation.get("security"), (method, path)


def test_listing_classified_tasks_is_audited(world: World) -> None:
    world.task(classification="SECRET")
    world.client("analyst-3").get("/api/v1/tasks")
    (event,) = world.runtime.store.list_audit(action="task.list")
    assert event["actor"] == "analyst-3" and event["details"] == {"classified": 1}


def test_indicators_inherit_the_ingesting_tasks_markings_and_stay_within_clearance(
    world: World,
) -> None:
    source = str(SAMPLE_FEEDS / "sample_iocs.csv")
    # The shared world's app runs no worker; this one does, to carry out the ingestion.
    working_app = create_app(world.runtime, run_worker=True)
    with TestClient(working_app, headers={"X-API-Key": world.admin_key}) as admin:
        task = admin.post(
            "/api/v1/tasks?execute=true",
            json={
                "name": "secret feed",
                "type": "data_ingestion",
                "classification": "SECRET",
                "tlp": "AMBER",
                "definition": {"parameters": {"source": source}},
            },
        ).json()
        assert wait_final(admin, task["id"])["status"] == "completed"
        mine = admin.get("/api/v1/indicators").json()

    assert mine and {(i["tlp"], i["classification"]) for i in mine} >= {("AMBER", 2)}
    cleared = world.client("analyst-2").get("/api/v1/indicators").json()
    below = world.client("analyst-1").get("/api/v1/indicators").json()
    assert len(cleared) == len(mine) and below == []
