"""The `spire` command line against a running engine."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import SAMPLE_FEEDS
from tests.e2e.server import SpireServer, free_port


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SpireServer]:
    folder = tmp_path_factory.mktemp("cli")
    srv = SpireServer(
        f"sqlite:///{folder / 'spire.db'}", folder / "serve.log", poll_seconds="0.05"
    ).start()
    yield srv
    srv.stop()


@pytest.mark.parametrize(
    "command",
    [[], ["serve"], ["worker"], ["migrate"], ["ingest"], ["indicators"], ["task"],
     ["task", "cancel"], ["task", "pause"], ["task", "resume"], ["task", "retry"],
     ["task", "update"], ["task", "delete"], ["task", "dead-letters"], ["task", "search"],
     ["admin"], ["admin", "bootstrap"], ["admin", "create-user"], ["admin", "create-key"],
     ["admin", "revoke-key"], ["admin", "rotate-key"], ["audit"], ["audit", "verify"],
     ["audit", "list"],
     ["task", "create"], ["task", "list"], ["task", "show"], ["task", "execute"],
     ["task", "logs"]],
)  # fmt: skip
def test_every_command_has_help(server: SpireServer, command: list[str]) -> None:
    result = server.cli(*command, "--help")
    assert result.returncode == 0, result.stderr
    assert "Usage:" in result.stdout


def test_ingest_follows_the_task_and_prints_a_summary(server: SpireServer) -> None:
    result = server.cli("ingest", str(SAMPLE_FEEDS / "sample_misp_event.json"))

    assert result.returncode == 0, result.stderr
    assert "status=completed" in result.stdout
    assert "format=misp" in result.stdout
    assert "Indicators by type" in result.stdout


def test_ingest_json_output_carries_the_result(server: SpireServer) -> None:
    result = server.cli("ingest", str(SAMPLE_FEEDS / "sample_stix21.json"), "--json")

    task = json.loads(result.stdout)
    assert task["status"] == "completed"
    assert task["result"]["format"] == "stix"
    assert task["result"]["records"]["read"] > 0


def test_ingest_of_a_bad_feed_exits_non_zero_with_the_error(server: SpireServer) -> None:
    result = server.cli("ingest", str(SAMPLE_FEEDS / "bad_truncated.json"))

    assert result.returncode == 1
    assert "status=failed" in result.stdout
    assert "bad_truncated.json" in result.stdout


def test_ingest_of_a_missing_file_is_refused_before_any_task(server: SpireServer) -> None:
    result = server.cli("ingest", "/no/such/feed.csv")
    assert result.returncode == 1
    assert "no such file: '/no/such/feed.csv'" in result.stderr


def test_task_create_show_list_and_logs(server: SpireServer) -> None:
    created = server.cli(
        "task", "create", "--type", "noop", "--param", "sleepMs=10", "--execute", "--json"
    )
    task_id = json.loads(created.stdout)["id"]

    shown = json.loads(server.cli("task", "show", task_id, "--json").stdout)
    listed = json.loads(server.cli("task", "list", "--type", "noop", "--json").stdout)
    logs = server.cli("task", "logs", task_id, "--follow")

    assert shown["id"] == task_id and shown["definition"]["parameters"]["sleepMs"] == 10
    assert task_id in {t["id"] for t in listed}
    assert "attempt 1 completed" in logs.stdout


def test_task_execute_queues_a_pending_task_and_twice_is_an_error(server: SpireServer) -> None:
    task_id = json.loads(server.cli("task", "create", "--type", "noop", "--json").stdout)["id"]

    first = server.cli("task", "execute", task_id)
    server.cli("task", "logs", task_id, "--follow")
    second = server.cli("task", "execute", task_id)

    assert first.returncode == 0 and "status=queued" in first.stdout
    assert second.returncode == 1
    assert "HTTP 409" in second.stderr and "execute is allowed from 'pending'" in second.stderr


def test_bad_parameter_is_reported_with_field_and_value(server: SpireServer) -> None:
    result = server.cli("task", "create", "--type", "noop", "--param", "sleepMs=soon")
    assert result.returncode == 1
    assert "HTTP 422" in result.stderr and "'soon'" in result.stderr


def test_indicators_lists_what_was_ingested(server: SpireServer) -> None:
    server.cli("ingest", str(SAMPLE_FEEDS / "sample_iocs.csv"))
    result = server.cli("indicators", "--source", "sample_iocs.csv", "--json")
    rows = json.loads(result.stdout)
    assert rows and all(r["sources"] == ["sample_iocs.csv"] for r in rows)


def test_cli_without_a_server_says_how_to_start_one(tmp_path: Path) -> None:
    srv = SpireServer(f"sqlite:///{tmp_path / 'x.db'}", tmp_path / "log")
    srv.url = f"http://127.0.0.1:{free_port()}"
    result = srv.cli("task", "list")
    assert result.returncode == 1
    assert "cannot reach the engine" in result.stderr and "spire serve" in result.stderr


def test_control_verbs_pause_resume_cancel_update_and_delete(server: SpireServer) -> None:
    task_id = json.loads(server.cli("task", "create", "--type", "noop", "--json").stdout)["id"]

    updated = server.cli("task", "update", task_id, "--name", "renamed", "--json")
    cancelled = server.cli("task", "cancel", task_id)
    retried = server.cli("task", "retry", task_id, "--json")
    server.cli("task", "logs", task_id, "--follow")
    deleted = server.cli("task", "delete", task_id)
    shown = server.cli("task", "show", task_id)

    assert json.loads(updated.stdout)["name"] == "renamed"
    assert "status=cancelled" in cancelled.stdout
    assert json.loads(retried.stdout)["status"] == "queued"
    assert deleted.returncode == 0
    assert shown.returncode == 1 and "HTTP 404" in shown.stderr


def test_dead_letters_lists_a_failed_task(server: SpireServer) -> None:
    created = server.cli(
        "task",
        "create",
        "--type",
        "noop",
        "--params",
        '{"fail": true, "retryable": false}',
        "--execute",
        "--json",
    )
    task_id = json.loads(created.stdout)["id"]
    server.cli("task", "logs", task_id, "--follow")
    letters = json.loads(server.cli("task", "dead-letters", "--json").stdout)
    assert task_id in {t["id"] for t in letters}


def test_ingest_of_a_directory_says_so(server: SpireServer, tmp_path: Path) -> None:
    result = server.cli("ingest", str(tmp_path))
    assert result.returncode == 1 and "is a directory" in result.stderr


def test_task_list_filters_sorts_and_follows_pages(server: SpireServer) -> None:
    for name in ("alpha", "bravo", "charlie"):
        server.cli("task", "create", "--type", "noop", "--name", name, "--priority", "low")
    result = server.cli(
        "task",
        "list",
        "--priority",
        "low",
        "--sort",
        "name:asc",
        "--limit",
        "1",
        "--all",
        "--json",
    )
    listed = [t["name"] for t in json.loads(result.stdout)]
    assert listed[:3] == ["alpha", "bravo", "charlie"]


def test_task_search_finds_by_name(server: SpireServer) -> None:
    server.cli("task", "create", "--type", "noop", "--name", "beacon hunt quarterly")
    found = json.loads(server.cli("task", "search", "beacon hunt", "--json").stdout)
    assert [t["name"] for t in found] == ["beacon hunt quarterly"]


def test_audit_verify_reports_an_intact_trail(server: SpireServer) -> None:
    result = server.cli("audit", "verify")
    assert result.returncode == 0 and "audit trail intact" in result.stdout


def test_cli_without_a_key_explains_how_to_get_one(server: SpireServer) -> None:
    env_key = server.env.pop("SPIRE_API_KEY")
    try:
        result = server.cli("task", "list")
    finally:
        server.env["SPIRE_API_KEY"] = env_key
    assert result.returncode == 1
    assert "HTTP 401" in result.stderr and "SPIRE_API_KEY" in result.stderr


def test_admin_creates_users_and_keys_on_the_engine_host(server: SpireServer) -> None:
    made = server.cli(
        "admin",
        "create-user",
        "casey",
        "--role",
        "viewer",
        "--department",
        "soc",
        "--clearance",
        "CONFIDENTIAL",
    )
    key = server.cli("admin", "create-key", "casey")
    assert made.returncode == 0 and key.returncode == 0
    viewer_env = {**server.env, "SPIRE_API_KEY": key.stdout.strip()}
    server.env, saved = viewer_env, server.env
    try:
        denied = server.cli("task", "create", "--type", "noop")
        allowed = server.cli("task", "list")
    finally:
        server.env = saved
    assert denied.returncode == 1 and "HTTP 403" in denied.stderr and "task:create" in denied.stderr
    assert allowed.returncode == 0
