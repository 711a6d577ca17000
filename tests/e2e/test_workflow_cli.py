"""`spire workflow` and `spire schedule` against a running engine.

The commands run in this process (Typer's runner) but talk HTTP to a real `spire serve`: a
fresh `spire` process costs a second or more of imports per call, which would make this file
take minutes. One test runs the installed `spire` binary end to end.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from typer.testing import CliRunner

from phantom_spire.cli.main import app
from tests.conftest import SAMPLE_FEEDS
from tests.e2e.server import SpireServer


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SpireServer]:
    folder = tmp_path_factory.mktemp("workflow-cli")
    srv = SpireServer(
        f"sqlite:///{folder / 'spire.db'}", folder / "serve.log", poll_seconds="0.05"
    ).start()
    yield srv
    srv.stop()


@dataclass
class Result:
    returncode: int
    stdout: str
    stderr: str


def cli(server: SpireServer, *args: str) -> Result:
    """`spire ARGS` in-process, against ``server``, with its admin key in the environment."""
    env = {"SPIRE_API_URL": server.url, "SPIRE_API_KEY": server.api_key, "COLUMNS": "200"}
    outcome = CliRunner().invoke(app, list(args), env=env)
    if outcome.exception is not None and not isinstance(outcome.exception, SystemExit):
        raise outcome.exception
    return Result(outcome.exit_code, outcome.stdout, outcome.stderr)


def run_json(server: SpireServer, *args: str) -> Any:
    result = cli(server, *args, "--json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def new_task(server: SpireServer) -> str:
    with server.http() as http:
        return str(http.post("/api/v1/tasks", json={"name": "n", "type": "noop"}).json()["id"])


def task_status(server: SpireServer, task_id: str) -> str:
    with server.http() as http:
        return str(http.get(f"/api/v1/tasks/{task_id}").json()["status"])


def step(workflow: dict[str, Any], name: str) -> dict[str, Any]:
    return next(s for s in workflow["steps"] if s["step"] == name)


@pytest.mark.parametrize(
    "command",
    [["workflow"], ["workflow", "start"], ["workflow", "show"], ["workflow", "templates"],
     ["workflow", "approve"], ["workflow", "reject"], ["schedule"], ["schedule", "set"],
     ["schedule", "show"], ["schedule", "list"], ["schedule", "delete"]],
)  # fmt: skip
def test_every_command_has_help(server: SpireServer, command: list[str]) -> None:
    result = cli(server, *command, "--help")
    assert result.returncode == 0, result.stderr
    assert "Usage:" in result.stdout


def test_templates_lists_the_builtins(server: SpireServer) -> None:
    names = {t["name"] for t in run_json(server, "workflow", "templates")}
    assert {"DAILY_IOC_ANALYSIS", "INCIDENT_RESPONSE"} <= names
    table = cli(server, "workflow", "templates")
    assert "DAILY_IOC_ANALYSIS" in table.stdout and "ingest -> process" in table.stdout


def test_daily_ioc_analysis_runs_on_two_sample_feeds(server: SpireServer) -> None:
    sources = [SAMPLE_FEEDS / "sample_iocs.csv", SAMPLE_FEEDS / "sample_stix21.json"]
    # The installed binary, end to end (the other tests run the same app in-process).
    started = server.cli(
        "workflow", "start", "DAILY_IOC_ANALYSIS",
        *[arg for s in sources for arg in ("--param", f"sources={s}")],
        "--wait", "--timeout", "60", "--json",
    )  # fmt: skip
    assert started.returncode == 0, started.stderr
    workflow = json.loads(started.stdout)
    assert workflow["status"] == "completed", workflow
    assert workflow["parameters"]["sources"] == [str(s) for s in sources]
    assert step(workflow, "ingest")["statuses"] == {"completed": 2}
    assert step(workflow, "summarize")["status"] == "completed"

    shown = cli(server, "workflow", "show", workflow["id"])
    assert shown.returncode == 0, shown.stderr
    assert "status=completed" in shown.stdout and "summarize" in shown.stdout


def test_bad_template_parameter_is_refused_naming_the_value(server: SpireServer) -> None:
    result = cli(
        server, "workflow", "start", "INCIDENT_RESPONSE", "-p", "incidentId=IR-1",
        "-p", "severity=apocalyptic", "-p", 'affectedSystems=["web-1"]',
    )  # fmt: skip
    assert result.returncode == 1
    assert "'apocalyptic'" in result.stderr


def _start_incident(server: SpireServer) -> str:
    workflow = run_json(
        server, "workflow", "start", "INCIDENT_RESPONSE", "-p", "incidentId=IR-9",
        "-p", "severity=critical", "-p", 'affectedSystems=["web-1", "db-1"]',
    )  # fmt: skip
    deadline = time.monotonic() + 30
    while True:
        shown = run_json(server, "workflow", "show", workflow["id"])
        if step(shown, "approve_containment")["approval"]["waiting"]:
            return str(workflow["id"])
        assert time.monotonic() < deadline, f"approval never became due: {shown}"
        time.sleep(0.1)


def _wait_done(server: SpireServer, workflow_id: str) -> dict[str, Any]:
    deadline = time.monotonic() + 30
    while True:
        shown: dict[str, Any] = run_json(server, "workflow", "show", workflow_id)
        if shown["status"] != "running":
            return shown
        assert time.monotonic() < deadline, f"workflow still running: {shown['progress']}"
        time.sleep(0.1)


def test_approve_runs_containment(server: SpireServer) -> None:
    workflow_id = _start_incident(server)
    approved = cli(
        server, "workflow", "approve", workflow_id, "approve_containment", "--note", "go"
    )
    assert approved.returncode == 0, approved.stderr
    done = _wait_done(server, workflow_id)
    assert step(done, "approve_containment")["approval"]["decision"]["note"] == "go"
    assert (done["status"], step(done, "contain")["status"]) == ("completed", "completed")


def test_reject_skips_containment_and_the_report_still_runs(server: SpireServer) -> None:
    workflow_id = _start_incident(server)
    assert cli(server, "workflow", "reject", workflow_id, "approve_containment").returncode == 0
    done = _wait_done(server, workflow_id)
    assert [step(done, s)["status"] for s in ("approve_containment", "contain", "report")] == [
        "skipped",
        "skipped",
        "completed",
    ]


def test_approving_a_step_that_is_not_an_approval_fails(server: SpireServer) -> None:
    workflow_id = _start_incident(server)
    result = cli(server, "workflow", "approve", workflow_id, "triage")
    assert result.returncode == 1
    assert "'triage'" in result.stderr


def _weekday_six_am_amsterdam(after: datetime, n: int) -> list[str]:
    """An oracle independent of the engine's cron code: walk the days in zoneinfo."""
    zone = ZoneInfo("Europe/Amsterdam")
    day = after.astimezone(zone).date()
    out: list[str] = []
    while len(out) < n:
        local = datetime(day.year, day.month, day.day, 6, tzinfo=zone)
        if local.weekday() < 5 and local > after:
            out.append(local.astimezone(UTC).isoformat())
        day += timedelta(days=1)
    return out


def test_cron_schedule_shows_ten_fire_times_lists_and_deletes(server: SpireServer) -> None:
    task_id = new_task(server)
    before = datetime.now(UTC)
    created = run_json(
        server, "schedule", "set", task_id, "--cron", "0 6 * * 1-5", "--tz", "Europe/Amsterdam"
    )
    assert created["spec"] == {
        "type": "recurring", "cron": "0 6 * * 1-5", "timezone": "Europe/Amsterdam",
        "misfirePolicy": {"kind": "catch_up", "limit": 1, "graceSeconds": 60.0},
    }  # fmt: skip
    shown = run_json(server, "schedule", "show", task_id)
    assert shown["nextFireTimes"] == _weekday_six_am_amsterdam(before, 10)
    text = cli(server, "schedule", "show", task_id).stdout
    assert "next 10 fire time(s)" in text and shown["nextFireTimes"][0] in text

    assert task_id in [s["taskId"] for s in run_json(server, "schedule", "list")]
    assert run_json(server, "schedule", "delete", task_id)["status"] == "deleted"
    assert task_status(server, task_id) == "pending"
    assert task_id not in [s["taskId"] for s in run_json(server, "schedule", "list")]


def test_interval_schedule_with_max_executions(server: SpireServer) -> None:
    task_id = new_task(server)
    shown = run_json(
        server, "schedule", "set", task_id, "--every", "3600", "--max-executions", "2",
        "--misfire", "skip",
    )  # fmt: skip
    assert shown["spec"]["maxExecutions"] == 2
    assert shown["spec"]["misfirePolicy"]["kind"] == "skip"
    first, second = (datetime.fromisoformat(t) for t in shown["nextFireTimes"])
    assert second - first == timedelta(hours=1)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--cron", "0 6 * * *"], "needs --tz"),
        (["--cron", "0 6 * * *", "--tz", "Mars/Olympus"], "Mars/Olympus"),
        (["--cron", "61 * * * *", "--tz", "UTC"], "61"),
        (["--every", "60", "--at", "2030-01-01T00:00:00+00:00"], "exactly one of"),
        (["--at", "2030-01-01T00:00:00"], "no UTC offset"),
        (["--every", "60", "--misfire", "sometimes"], "'sometimes'"),
    ],
)
def test_schedule_set_refuses_bad_options_naming_them(
    server: SpireServer, args: list[str], message: str
) -> None:
    task_id = new_task(server)
    result = cli(server, "schedule", "set", task_id, *args)
    assert result.returncode == 1
    assert message in result.stderr
    assert task_status(server, task_id) == "pending"
