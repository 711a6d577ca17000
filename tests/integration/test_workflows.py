"""Workflows on both stores: readiness, trigger rules, branches, fan-out limits, policies."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.conftest import shared_path

from phantom_spire.engine.lifecycle import ExecutionStatus, TaskStatus
from phantom_spire.runtime import Runtime
from phantom_spire.services.workflows import WorkflowRequest
from phantom_spire.settings import Settings

HELD = {"queued", "running"}


@pytest.fixture
def runtime(store_url: str) -> Iterator[Runtime]:
    rt = Runtime(Settings(database_url=store_url), run_migrations=False)
    yield rt
    rt.close()


def drain(
    rt: Runtime, *, batch: int = 100, outcome: Any = None, watch: str | None = None
) -> list[int]:
    """Play a worker with instant handlers: claim, then finish, until nothing is queued.

    ``outcome(task) -> (status, result)`` decides each task (default: complete with {}).
    Returns, per round, how many tasks of workflow ``watch`` were queued or running.
    """
    held_counts: list[int] = []
    while True:
        claims = rt.store.claim_tasks("w1", batch, 30)
        if not claims:
            return held_counts
        if watch:
            held_counts.append(sum(1 for t in rt.workflows.store.list_workflow_tasks(watch)
                                   if t["status"] in HELD))  # fmt: skip
        for claim in claims:
            status, result = outcome(claim.task) if outcome else ("completed", {})
            rt.store.finish_execution(
                claim,
                "w1",
                execution_status=ExecutionStatus(status),
                task_status=TaskStatus(status),
                result=result,
                error=None if status == "completed" else "failed on purpose",
            )


def statuses(rt: Runtime, workflow_id: str) -> dict[str, str]:
    return {
        s["step"] + (":compensate" if s["kind"] == "compensation" else ""): s["status"]
        for s in rt.workflows.get_workflow(workflow_id)["steps"]
    }


def create(rt: Runtime, definition: dict[str, Any], **params: Any) -> str:
    request = WorkflowRequest(definition=definition, parameters=params)
    return str(rt.workflows.create_workflow(request)["id"])


def _bug_wfl_01_definition(rule: str) -> dict[str, Any]:
    case = next(
        c
        for c in json.loads(shared_path("cases", "bugs", "cases.json").read_text("utf-8"))
        if c["id"] == "BUG-WFL-01"
    )
    steps = []
    for name, spec in case["input"]["dag"].items():
        step: dict[str, Any] = {"id": name, "dependsOn": spec.get("upstream", [])}
        if spec.get("type") == "branch":
            step.update(kind="branch", handler="branch", parameters={"choose": spec["returns"]})
        else:
            step["handler"] = "noop"
        if "trigger_rule" in spec:
            step["triggerRule"] = rule
        steps.append(step)
    return {"name": "bug_wfl_01", "steps": steps}


def test_join_after_branch_runs_once_when_chosen_path_succeeds(runtime: Runtime) -> None:
    workflow_id = create(runtime, _bug_wfl_01_definition("none_failed_min_one_success"))
    runs: list[str] = []

    def record(task: dict[str, Any]) -> tuple[str, Any]:
        runs.append(task["metadata"]["step"])
        if task["metadata"]["step"] == "enrich_b":
            # score must not have been decided while enrich_b was still running
            assert statuses(runtime, workflow_id)["score"] == "blocked"
        if task["handler"] == "branch":
            return "completed", {"branch": [task["parameters"]["choose"]]}
        return "completed", {}

    drain(runtime, outcome=record)

    assert statuses(runtime, workflow_id) == {
        "choose": "completed",
        "enrich_a": "skipped",
        "enrich_a2": "skipped",
        "enrich_b": "completed",
        "score": "completed",
    }
    assert runs.count("score") == 1
    assert runtime.workflows.get_workflow(workflow_id)["status"] == "completed"


def test_join_with_all_success_rule_is_skipped_after_a_branch(runtime: Runtime) -> None:
    workflow_id = create(runtime, _bug_wfl_01_definition("all_success"))
    drain(
        runtime,
        outcome=lambda t: (
            "completed",
            {"branch": [t["parameters"]["choose"]]} if t["handler"] == "branch" else {},
        ),
    )
    assert statuses(runtime, workflow_id)["score"] == "skipped"


def test_fan_out_over_500_hosts_never_has_more_than_20_running(runtime: Runtime) -> None:
    definition = {
        "name": "collect",
        "maxParallel": 20,
        "parameters": {"hosts": {"type": "list", "items": "string", "required": True}},
        "steps": [
            {"id": "collect", "handler": "noop", "forEach": "${{ params.hosts }}"},
            {"id": "gather", "handler": "workflow_summary", "dependsOn": ["collect"],
             "gather": True},
        ],
    }  # fmt: skip
    hosts = [f"host-{i:03d}" for i in range(500)]
    workflow_id = create(runtime, definition, hosts=hosts)

    held = drain(runtime, batch=100, watch=workflow_id)

    assert max(held) == 20
    body = runtime.workflows.get_workflow(workflow_id)
    assert body["status"] == "completed"
    assert body["progress"] == {"done": 501, "total": 501, "failed": 0, "active": 0,
                                "percent": 100.0}  # fmt: skip
    gather_id = next(s for s in body["steps"] if s["step"] == "gather")["ids"][0]
    gathered = runtime.store.get_task(gather_id)["parameters"]["upstream"]["collect"]
    assert len(gathered) == 500


def _three_branches(policy: str) -> dict[str, Any]:
    return {
        "name": "policy",
        "failurePolicy": policy,
        "maxParallel": 1,
        "steps": [
            {"id": "bad", "handler": "noop",
             "compensate": {"handler": "noop"}},
            {"id": "after_bad", "handler": "noop", "dependsOn": ["bad"]},
            {"id": "good", "handler": "noop", "compensate": {"handler": "noop"}},
            {"id": "after_good", "handler": "noop", "dependsOn": ["good"]},
        ],
    }  # fmt: skip


def _fail_bad(task: dict[str, Any]) -> tuple[str, Any]:
    return ("failed", None) if task["metadata"]["step"] == "bad" else ("completed", {})


def test_fail_fast_cancels_what_has_not_started(runtime: Runtime) -> None:
    definition = _three_branches("fail_fast")
    definition["steps"][2]["dependsOn"] = []
    workflow_id = create(runtime, definition)
    drain(runtime, batch=1, outcome=_fail_bad)
    result = statuses(runtime, workflow_id)
    assert result["bad"] == "failed"
    assert result["after_bad"] == "cancelled"
    assert result["good"] == "cancelled"  # held back by maxParallel 1, never started
    assert runtime.workflows.get_workflow(workflow_id)["status"] == "failed"


def test_continue_policy_finishes_independent_branches(runtime: Runtime) -> None:
    workflow_id = create(runtime, _three_branches("continue"))
    drain(runtime, batch=1, outcome=_fail_bad)
    result = statuses(runtime, workflow_id)
    assert (result["bad"], result["after_bad"]) == ("failed", "cancelled")
    assert (result["good"], result["after_good"]) == ("completed", "completed")
    assert runtime.workflows.get_workflow(workflow_id)["status"] == "failed"


def test_compensate_policy_runs_rollback_of_completed_steps_only(runtime: Runtime) -> None:
    definition = _three_branches("compensate")
    # good runs first (seq order is creation order): make it the first step
    definition["steps"] = [definition["steps"][2], definition["steps"][0],
                           definition["steps"][1], definition["steps"][3]]  # fmt: skip
    workflow_id = create(runtime, definition)
    drain(runtime, batch=1, outcome=_fail_bad)
    result = statuses(runtime, workflow_id)
    assert result["good"] == "completed"
    assert result["good:compensate"] == "completed"
    assert result["bad:compensate"] == "skipped"


def test_condition_false_skips_step_and_true_runs_it(runtime: Runtime) -> None:
    definition = {
        "name": "alerting",
        "steps": [
            {"id": "score", "handler": "noop"},
            {"id": "alert", "handler": "noop", "dependsOn": ["score"],
             "when": "steps.score.result.maxRisk >= 70"},
            {"id": "archive", "handler": "noop", "dependsOn": ["score"],
             "when": "steps.score.result.maxRisk < 70"},
        ],
    }  # fmt: skip
    workflow_id = create(runtime, definition)
    drain(runtime, outcome=lambda t: ("completed", {"maxRisk": 85}))
    result = statuses(runtime, workflow_id)
    assert (result["alert"], result["archive"]) == ("completed", "skipped")


def test_condition_that_cannot_be_evaluated_cancels_the_step_with_the_reason(
    runtime: Runtime,
) -> None:
    definition = {
        "name": "broken_condition",
        "steps": [
            {"id": "score", "handler": "noop"},
            {"id": "alert", "handler": "noop", "dependsOn": ["score"],
             "when": "steps.score.result.nothing_here >= 70"},
        ],
    }  # fmt: skip
    workflow_id = create(runtime, definition)
    drain(runtime)
    alert = next(
        t for t in runtime.workflows.store.list_workflow_tasks(workflow_id) if t["step"] == "alert"
    )
    assert alert["status"] == "cancelled"
    assert "nothing_here" in alert["error"]


def test_long_skip_chain_resolves_without_recursion(runtime: Runtime) -> None:
    steps = [{"id": "root", "kind": "branch", "handler": "branch",
              "parameters": {"choose": "none"}}]  # fmt: skip
    steps += [
        {"id": f"s{i}", "handler": "noop", "dependsOn": ["root" if i == 0 else f"s{i - 1}"]}
        for i in range(1500)
    ]
    workflow_id = create(runtime, {"name": "chain", "steps": steps})
    drain(runtime, outcome=lambda t: ("completed", {"branch": []}))
    body = runtime.workflows.get_workflow(workflow_id)
    assert body["status"] == "completed"
    assert {s["status"] for s in body["steps"][1:]} == {"skipped"}


@pytest.mark.corpus
def test_daily_ioc_analysis_summary_matches_individual_ingestions(
    store_url: str, tmp_path: Path
) -> None:
    if "postgresql" in store_url:
        pytest.skip("the ingestion path is store-agnostic; one backend keeps the suite fast")
    corpus = shared_path("corpus")
    sources = [
        str(corpus / "csv" / "unit42_oilrig_defanged.csv"),
        str(corpus / "text" / "unit42_conti_iocs_defanged.txt"),
        str(corpus / "stix" / "oasis_stix21_apt1_report.json"),
    ]
    import asyncio

    settings = Settings(database_url=store_url, poll_seconds=0.02, workers=4)
    rt = Runtime(settings, run_migrations=False)
    request = WorkflowRequest(template="DAILY_IOC_ANALYSIS", parameters={"sources": sources})
    workflow_id = rt.workflows.create_workflow(request)["id"]

    async def run_until_done() -> None:
        job = asyncio.create_task(rt.run_worker())
        for _ in range(600):
            if rt.workflows.get_workflow(workflow_id)["status"] != "running":
                break
            await asyncio.sleep(0.05)
        rt.stop_worker()
        await job

    asyncio.run(run_until_done())
    body = rt.workflows.get_workflow(workflow_id)
    assert body["status"] == "completed", body
    tasks = rt.workflows.store.list_workflow_tasks(workflow_id)
    ingestions = [t["result"] for t in tasks if t["step"] == "ingest"]
    summary = next(t["result"] for t in tasks if t["step"] == "summarize")
    rt.close()

    assert summary["sources"] == 3
    assert summary["indicators"] == sum(r["stored"]["indicators"] for r in ingestions)
    assert summary["new"] == sum(r["stored"]["new"] for r in ingestions)
    assert sorted(s["source"] for s in summary["perSource"]) == sorted(sources)
    assert summary["indicators"] > 100
