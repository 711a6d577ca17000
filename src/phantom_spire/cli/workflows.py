"""``spire workflow`` and ``spire schedule``: workflows and schedules through the REST API.

Like the task commands, these talk to a running engine (``SPIRE_API_URL``) with the key in
``SPIRE_API_KEY``; they never open the store themselves.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from phantom_spire.cli.client import DEFAULT_API_URL, ApiClient, ApiError

__all__ = ["schedule_app", "workflow_app"]

workflow_app = typer.Typer(
    help="Start workflows from templates, follow them, decide approval steps.",
    no_args_is_help=True,
)
schedule_app = typer.Typer(
    help="Put tasks on a schedule (cron with a time zone, once, interval) and inspect it.",
    no_args_is_help=True,
)
console = Console()
err_console = Console(stderr=True)

ApiUrl = Annotated[
    str,
    typer.Option("--api-url", envvar="SPIRE_API_URL", help="Address of a running engine."),
]
JsonFlag = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]


@contextmanager
def _client(api_url: str) -> Iterator[ApiClient]:
    """A client for one command, closed after it (the commands also run in-process in tests)."""
    # The key comes from the environment only: a flag would land in shell history.
    client = ApiClient(api_url, api_key=os.environ.get("SPIRE_API_KEY"))
    try:
        yield client
    finally:
        client._http.close()  # ApiClient has no close() of its own


def _fail(message: str) -> typer.Exit:
    err_console.print(f"[red]error:[/red] {message}", highlight=False, markup=False)
    return typer.Exit(code=1)


def _call(fn: Any, *args: Any, **kwargs: Any) -> Any:
    try:
        return fn(*args, **kwargs)
    except ApiError as exc:
        raise _fail(str(exc)) from None


def _print_json(data: Any) -> None:
    # Plain json, not rich: output meant for pipes must not be wrapped or coloured.
    sys.stdout.write(json.dumps(data, indent=2) + "\n")


def parse_params(pairs: list[str]) -> dict[str, Any]:
    """``KEY=VALUE`` pairs to a parameter mapping.

    A value that parses as JSON is taken as JSON (``n=3``, ``hosts=["a","b"]``), otherwise as
    a string. A key given more than once collects its values into a list, so
    ``--param sources=a.csv --param sources=b.json`` gives two sources.

    Raises:
        typer.Exit: A pair has no ``=`` or an empty key.
    """
    params: dict[str, Any] = {}
    repeated: set[str] = set()
    for pair in pairs:
        key, sep, text = pair.partition("=")
        if not sep or not key:
            raise _fail(f"--param expects KEY=VALUE, got {pair!r}")
        try:
            value: Any = json.loads(text)
        except json.JSONDecodeError:
            value = text
        if key in params:
            if key not in repeated:
                params[key] = [params[key]]
                repeated.add(key)
            params[key].append(value)
        else:
            params[key] = value
    return params


# -- workflows -----------------------------------------------------------------------------


@workflow_app.command("start")
def workflow_start(
    template: Annotated[str, typer.Argument(help="Template name, e.g. DAILY_IOC_ANALYSIS.")],
    param: Annotated[
        list[str] | None,
        typer.Option(
            "--param",
            "-p",
            help="Template parameter KEY=VALUE (JSON values allowed; repeat a key for a list).",
        ),
    ] = None,
    version: Annotated[int | None, typer.Option(help="Template version (default newest).")] = None,
    name: Annotated[str | None, typer.Option(help="Name of this run.")] = None,
    wait: Annotated[bool, typer.Option("--wait", help="Follow it until it finishes.")] = False,
    timeout: Annotated[float, typer.Option(help="With --wait: give up after seconds.")] = 600.0,
    api_url: ApiUrl = DEFAULT_API_URL,
    as_json: JsonFlag = False,
) -> None:
    """Start a workflow from a template; parameters are checked before anything is created.

    Paths are read by the engine, so give absolute ones (e.g. "$PWD/feed.csv").
    """
    body: dict[str, Any] = {"template": template, "parameters": parse_params(param or [])}
    if version is not None:
        body["version"] = version
    if name is not None:
        body["name"] = name
    with _client(api_url) as client:
        workflow = _call(client.post, "/workflows", body)
        if wait:
            workflow = _wait_workflow(client, workflow["id"], timeout)
    _print_workflow(workflow, as_json)
    if wait and workflow["status"] != "completed":
        raise typer.Exit(code=1)


def _wait_workflow(client: ApiClient, workflow_id: str, timeout: float) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        workflow: dict[str, Any] = _call(client.get, f"/workflows/{workflow_id}")
        if workflow["status"] != "running":
            return workflow
        if time.monotonic() >= deadline:
            raise _fail(
                f"workflow {workflow_id!r} still running after {timeout:g}s "
                f"({workflow['progress']['done']}/{workflow['progress']['total']} tasks done)"
            )
        time.sleep(0.25)


@workflow_app.command("show")
def workflow_show(
    workflow_id: Annotated[str, typer.Argument(help="Workflow id.")],
    api_url: ApiUrl = DEFAULT_API_URL,
    as_json: JsonFlag = False,
) -> None:
    """A workflow's status, progress and each step's tasks by status."""
    with _client(api_url) as client:
        workflow = _call(client.get, f"/workflows/{workflow_id}")
    _print_workflow(workflow, as_json)


def _print_workflow(workflow: dict[str, Any], as_json: bool) -> None:
    if as_json:
        _print_json(workflow)
        return
    progress = workflow["progress"]
    template = workflow.get("template")
    version = workflow.get("templateVersion")
    console.print(
        f"workflow {workflow['id']}  {workflow['name']}"
        + (f"  template={template} v{version}" if template else "")
        + f"  status={workflow['status']}  {progress['done']}/{progress['total']} done"
        f" ({progress['percent']}%), {progress['failed']} failed, {progress['active']} active",
        highlight=False,
    )
    table = Table("step", "kind", "tasks", "status", "by status", "approval")
    for step in workflow["steps"]:
        approval = step.get("approval")
        waiting = ""
        if approval is not None:
            decision = approval.get("decision")
            if approval["waiting"]:
                waiting = "waiting"
            elif decision:
                waiting = ("approved" if decision["approved"] else "rejected") + (
                    f" by {decision['by']}"
                )
        by_status = ", ".join(f"{k}={v}" for k, v in sorted(step["statuses"].items()))
        table.add_row(
            step["step"], step["kind"], str(step["tasks"]), step["status"], by_status, waiting
        )
    console.print(table)


@workflow_app.command("templates")
def workflow_templates(api_url: ApiUrl = DEFAULT_API_URL, as_json: JsonFlag = False) -> None:
    """Built-in and user templates with their versions, parameters and steps."""
    with _client(api_url) as client:
        templates = _call(client.get, "/workflows/templates")
    if as_json:
        _print_json(templates)
        return
    table = Table("name", "version", "builtin", "parameters", "steps")
    for t in templates:
        params = ", ".join(
            f"{k}{'' if p.get('required') else '?'}:{p.get('type', 'any')}"
            for k, p in t["parameters"].items()
        )
        table.add_row(
            t["name"],
            str(t["version"]),
            "yes" if t["builtin"] else "",
            params,
            " -> ".join(t["steps"]),
        )
    console.print(table)


def _decide(workflow_id: str, step: str, verb: str, note: str, api_url: str, as_json: bool) -> None:
    body = {"note": note} if note else None
    path = f"/workflows/{workflow_id}/steps/{step}/{verb}"
    with _client(api_url) as client:
        workflow = _call(client.post, path, body)
    _print_workflow(workflow, as_json)


@workflow_app.command("approve")
def workflow_approve(
    workflow_id: Annotated[str, typer.Argument(help="Workflow id.")],
    step: Annotated[str, typer.Argument(help="The approval step, e.g. approve_containment.")],
    note: Annotated[str, typer.Option(help="Why (kept in the audit trail).")] = "",
    api_url: ApiUrl = DEFAULT_API_URL,
    as_json: JsonFlag = False,
) -> None:
    """Approve a waiting approval step: it completes and its dependants may run."""
    _decide(workflow_id, step, "approve", note, api_url, as_json)


@workflow_app.command("reject")
def workflow_reject(
    workflow_id: Annotated[str, typer.Argument(help="Workflow id.")],
    step: Annotated[str, typer.Argument(help="The approval step.")],
    note: Annotated[str, typer.Option(help="Why (kept in the audit trail).")] = "",
    api_url: ApiUrl = DEFAULT_API_URL,
    as_json: JsonFlag = False,
) -> None:
    """Reject a waiting approval step: it is skipped; dependants follow their trigger rule."""
    _decide(workflow_id, step, "reject", note, api_url, as_json)


# -- schedules -----------------------------------------------------------------------------


@schedule_app.command("set")
def schedule_set(
    task_id: Annotated[str, typer.Argument(help="A pending task (it becomes the template).")],
    cron: Annotated[
        str | None, typer.Option(help="Cron expression, e.g. '0 6 * * 1-5' (needs --tz).")
    ] = None,
    tz: Annotated[
        str | None, typer.Option("--tz", help="IANA time zone of --cron, e.g. Europe/Amsterdam.")
    ] = None,
    at: Annotated[
        str | None, typer.Option(help="Run once at this ISO 8601 time with offset.")
    ] = None,
    every: Annotated[int | None, typer.Option(help="Run every this many seconds.", min=1)] = None,
    max_executions: Annotated[
        int | None, typer.Option(help="Stop after this many fires.", min=1)
    ] = None,
    start: Annotated[str | None, typer.Option(help="Not before (ISO 8601).")] = None,
    end: Annotated[str | None, typer.Option(help="Not after (ISO 8601).")] = None,
    misfire: Annotated[
        str | None,
        typer.Option(help="After downtime: skip, or catch_up (default, newest --catch-up slots)."),
    ] = None,
    catch_up: Annotated[
        int | None, typer.Option(help="Most missed slots catch_up fires.", min=1)
    ] = None,
    api_url: ApiUrl = DEFAULT_API_URL,
    as_json: JsonFlag = False,
) -> None:
    """Put a task on a schedule: --cron with --tz, --at, or --every."""
    spec = build_spec(
        cron=cron, tz=tz, at=at, every=every, max_executions=max_executions, start=start,
        end=end, misfire=misfire, catch_up=catch_up,
    )  # fmt: skip
    with _client(api_url) as client:
        _call(client.post, f"/tasks/{task_id}/schedule", spec)
        schedule = _call(client.get, f"/tasks/{task_id}/schedule")
    _print_schedule(schedule, as_json)


def build_spec(
    *,
    cron: str | None,
    tz: str | None,
    at: str | None,
    every: int | None,
    max_executions: int | None = None,
    start: str | None = None,
    end: str | None = None,
    misfire: str | None = None,
    catch_up: int | None = None,
) -> dict[str, Any]:
    """The API's schedule spec from the ``schedule set`` options.

    Raises:
        typer.Exit: Not exactly one of --cron, --at, --every; --cron without --tz; options
            that do not apply to the chosen kind.
    """
    chosen = [name for name, v in (("--cron", cron), ("--at", at), ("--every", every)) if v]
    if len(chosen) != 1:
        raise _fail(f"give exactly one of --cron, --at and --every, got {chosen or 'none'}")
    spec: dict[str, Any]
    if cron is not None:
        if not tz:
            # A silent UTC default would move every fire by the team's offset.
            raise _fail(f"--cron {cron!r} needs --tz ZONE (an IANA name such as Europe/Amsterdam)")
        spec = {"type": "recurring", "cron": cron, "timezone": tz}
    elif at is not None:
        if any(v is not None for v in (max_executions, start, end)):
            raise _fail("--max-executions, --start and --end do not apply to --at")
        spec = {"type": "once", "runAt": _iso(at, "--at")}
    else:
        spec = {"type": "interval", "every": every}
    if tz and cron is None:
        raise _fail(f"--tz {tz!r} applies only to --cron")
    if max_executions is not None:
        spec["maxExecutions"] = max_executions
    if start is not None:
        spec["startAt"] = _iso(start, "--start")
    if end is not None:
        spec["endAt"] = _iso(end, "--end")
    if misfire is not None or catch_up is not None:
        kind = misfire or "catch_up"
        if kind not in ("skip", "catch_up"):
            raise _fail(f"--misfire must be skip or catch_up, got {misfire!r}")
        policy: dict[str, Any] = {"kind": kind}
        if catch_up is not None:
            policy["limit"] = catch_up
        spec["misfirePolicy"] = policy
    return spec


def _iso(text: str, option: str) -> str:
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise _fail(f"{option} {text!r} is not an ISO 8601 time") from None
    if moment.tzinfo is None:
        raise _fail(f"{option} {text!r} has no UTC offset; add one, e.g. {text}+00:00")
    return moment.isoformat()


@schedule_app.command("show")
def schedule_show(
    task_id: Annotated[str, typer.Argument(help="The scheduled task.")],
    count: Annotated[int, typer.Option(help="How many next fire times.", min=1, max=100)] = 10,
    api_url: ApiUrl = DEFAULT_API_URL,
    as_json: JsonFlag = False,
) -> None:
    """A task's schedule and its next fire times (ten by default), to check before trusting it."""
    with _client(api_url) as client:
        schedule = _call(client.get, f"/tasks/{task_id}/schedule", count=count)
    _print_schedule(schedule, as_json)


def _print_schedule(schedule: dict[str, Any], as_json: bool) -> None:
    if as_json:
        _print_json(schedule)
        return
    console.print(
        f"schedule {schedule['id']} of task {schedule['taskId']}  type={schedule['type']}"
        f"  status={schedule['status']}  executions={schedule['executions']}",
        highlight=False,
    )
    console.print(f"spec: {json.dumps(schedule['spec'])}", highlight=False, markup=False)
    if schedule.get("lastError"):
        console.print(f"error: {schedule['lastError']}", highlight=False, markup=False)
    times = schedule.get("nextFireTimes", [])
    console.print(f"next {len(times)} fire time(s), UTC:", highlight=False)
    for moment in times:
        console.print(f"  {moment}", highlight=False)


@schedule_app.command("list")
def schedule_list(
    include_finished: Annotated[
        bool, typer.Option("--all", help="Also schedules that ended.")
    ] = False,
    api_url: ApiUrl = DEFAULT_API_URL,
    as_json: JsonFlag = False,
) -> None:
    """Active and broken schedules with their next fire time."""
    with _client(api_url) as client:
        rows = _call(client.get, "/tasks/scheduled", includeFinished=str(include_finished).lower())
    if as_json:
        _print_json(rows)
        return
    table = Table("task", "type", "status", "executions", "next fire (UTC)", "error")
    for s in rows:
        table.add_row(
            s["taskId"], s["type"], s["status"], str(s["executions"]), s["nextFireAt"] or "",
            s["lastError"] or "",
        )  # fmt: skip
    console.print(table)


@schedule_app.command("delete")
def schedule_delete(
    task_id: Annotated[str, typer.Argument(help="The scheduled task.")],
    api_url: ApiUrl = DEFAULT_API_URL,
    as_json: JsonFlag = False,
) -> None:
    """Take a task off its schedule; a task still waiting goes back to pending."""
    with _client(api_url) as client:
        removed = _call(client.request, "DELETE", f"/tasks/{task_id}/schedule")
    if as_json:
        _print_json(removed)
        return
    console.print(f"schedule {removed['id']} of task {task_id} deleted", highlight=False)
