"""``spire``: run the engine, and submit and inspect tasks through its REST API."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import sys
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from phantom_spire.cli.admin import admin_app, audit_app
from phantom_spire.cli.client import DEFAULT_API_URL, ApiClient, ApiError
from phantom_spire.cli.ioc import ioc_app
from phantom_spire.cli.workflows import schedule_app, workflow_app

__all__ = ["app"]

app = typer.Typer(
    name="spire",
    help="Phantom Spire: task orchestration for cyber-threat-intelligence teams.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
task_app = typer.Typer(help="Create, queue and inspect tasks.", no_args_is_help=True)
app.add_typer(task_app, name="task")
app.add_typer(admin_app, name="admin")
app.add_typer(audit_app, name="audit")
app.add_typer(ioc_app, name="ioc")
app.add_typer(workflow_app, name="workflow")
app.add_typer(schedule_app, name="schedule")

console = Console()
err_console = Console(stderr=True)

FINAL_STATES = {"completed", "failed", "cancelled", "timed_out", "skipped", "dead_lettered"}

ApiUrl = Annotated[
    str,
    typer.Option("--api-url", envvar="SPIRE_API_URL", help="Address of a running engine."),
]
JsonFlag = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]


def _configure_logging(level: str) -> None:
    logging.basicConfig(
        level=level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )


def _print_json(data: Any) -> None:
    # Plain json, not rich: output meant for pipes must not be wrapped or coloured.
    sys.stdout.write(json.dumps(data, indent=2) + "\n")


def _load_settings() -> Any:
    """Settings from SPIRE_* variables; a bad one ends the command with a one-line error."""
    from pydantic import ValidationError

    from phantom_spire.errors import ConfigError
    from phantom_spire.settings import Settings

    try:
        return Settings()
    except ConfigError as exc:
        raise _fail(str(exc)) from None
    except ValidationError as exc:
        problems = "; ".join(
            f"SPIRE_{'_'.join(str(p) for p in e['loc']).upper()}={e.get('input')!r}: {e['msg']}"
            for e in exc.errors()
        )
        raise _fail(f"invalid setting: {problems}") from None


def _start_runtime(settings: Any) -> Any:
    from phantom_spire.errors import SpireError
    from phantom_spire.runtime import Runtime

    try:
        return Runtime(settings)
    except SpireError as exc:
        raise _fail(str(exc)) from None
    except Exception as exc:  # the store cannot be reached or migrated
        raise _fail(
            f"cannot open the store at {settings.database_url or settings.data_dir}: "
            f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
        ) from None


def _client(api_url: str) -> ApiClient:
    # The key comes from the environment only: a command-line flag would land in shell
    # history and in the process list.
    return ApiClient(api_url, api_key=os.environ.get("SPIRE_API_KEY"))


def _fail(message: str) -> typer.Exit:
    err_console.print(f"[red]error:[/red] {message}", highlight=False)
    return typer.Exit(code=1)


def _call(fn: Any, *args: Any, **kwargs: Any) -> Any:
    try:
        return fn(*args, **kwargs)
    except ApiError as exc:
        raise _fail(str(exc)) from None


# -- running the engine --------------------------------------------------------------------


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Bind address (SPIRE_HOST).")] = None,
    port: Annotated[int | None, typer.Option(help="Port (SPIRE_PORT).")] = None,
    workers: Annotated[
        bool | None,
        typer.Option(
            "--workers/--no-workers", help="Also run a worker pool (SPIRE_RUN_WORKERS, default on)."
        ),
    ] = None,
    log_level: Annotated[str, typer.Option(help="debug, info, warning or error.")] = "info",
) -> None:
    """Run the REST API (and, by default, a worker pool) in this process."""
    import uvicorn

    from phantom_spire.api import create_app

    _configure_logging(log_level)
    settings = _load_settings()
    runtime = _start_runtime(settings)
    first_key = runtime.identity.bootstrap_admin()
    if first_key is not None:
        _key_id, key = first_key
        err_console.print(
            "First start: created user 'admin' and its API key (shown once, stored only as a "
            f"hash):\n\n    export SPIRE_API_KEY={key}\n",
            highlight=False,
            markup=False,
        )
    app_ = create_app(runtime, run_worker=workers)
    store_name = (settings.database_url and "PostgreSQL") or f"SQLite in {settings.data_dir}"
    err_console.print(
        f"Phantom Spire on http://{host or settings.host}:{port or settings.port} "
        f"(store: {store_name}; API docs at /api-docs)",
        highlight=False,
    )
    uvicorn.run(
        app_,
        host=host or settings.host,
        port=port or settings.port,
        log_level=log_level.lower(),
        timeout_graceful_shutdown=int(settings.heartbeat_seconds),
    )


@app.command()
def worker(
    log_level: Annotated[str, typer.Option(help="debug, info, warning or error.")] = "info",
) -> None:
    """Run a worker pool only (distributed mode: many of these share one PostgreSQL)."""

    _configure_logging(log_level)
    runtime = _start_runtime(_load_settings())

    async def main() -> None:
        loop = asyncio.get_running_loop()
        worker_ = runtime.new_worker()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, worker_.stop)
        await runtime.run_worker()

    asyncio.run(main())
    runtime.close()


@app.command()
def migrate() -> None:
    """Create or upgrade the store's schema (also done by `serve` and `worker`)."""
    from phantom_spire.store import current_revision
    from phantom_spire.store import migrate as run_migrate

    url = _load_settings().resolved_database_url
    try:
        run_migrate(url)
    except Exception as exc:
        first_line = str(exc).splitlines()[0] if str(exc) else ""
        raise _fail(f"cannot migrate the store: {type(exc).__name__}: {first_line}") from None
    console.print(f"store at revision {current_revision(url)}")


# -- tasks ---------------------------------------------------------------------------------


def _parse_params(pairs: list[str], params_json: str | None) -> dict[str, Any]:
    params: dict[str, Any] = {}
    if params_json:
        try:
            loaded = json.loads(params_json)
        except json.JSONDecodeError as exc:
            raise _fail(f"--params is not valid JSON: {exc}") from None
        if not isinstance(loaded, dict):
            raise _fail(f"--params must be a JSON object, got {type(loaded).__name__}")
        params.update(loaded)
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise _fail(f"--param expects KEY=VALUE, got {pair!r}")
        try:
            params[key] = json.loads(value)
        except json.JSONDecodeError:
            params[key] = value
    return params


@task_app.command("create")
def task_create(
    type: Annotated[str, typer.Option("--type", help="Task type, e.g. data_ingestion.")],
    name: Annotated[str | None, typer.Option(help="Task name (defaults to the type).")] = None,
    param: Annotated[
        list[str] | None, typer.Option("--param", "-p", help="Handler parameter KEY=VALUE.")
    ] = None,
    params: Annotated[str | None, typer.Option("--params", help="Parameters as JSON.")] = None,
    priority: Annotated[str, typer.Option(help="critical, high, normal, low, background.")] = (
        "normal"
    ),
    timeout: Annotated[int | None, typer.Option(help="Timeout in ms.")] = None,
    max_attempts: Annotated[int | None, typer.Option(help="Attempts before giving up.")] = None,
    execute: Annotated[bool, typer.Option("--execute", help="Queue it right away.")] = False,
    api_url: ApiUrl = DEFAULT_API_URL,
    as_json: JsonFlag = False,
) -> None:
    """Create a task (pending until executed, unless --execute)."""
    definition: dict[str, Any] = {"parameters": _parse_params(param or [], params)}
    if timeout is not None:
        definition["timeout"] = timeout
    if max_attempts is not None:
        definition["retryPolicy"] = {"maxAttempts": max_attempts}
    body = {"name": name or type, "type": type, "priority": priority, "definition": definition}
    task = _call(_client(api_url).post, "/tasks", body, execute=str(execute).lower())
    _print_task(task, as_json)


@task_app.command("list")
def task_list(
    type: Annotated[list[str] | None, typer.Option("--type", help="Filter by type.")] = None,
    status: Annotated[list[str] | None, typer.Option("--status", help="Filter by status.")] = None,
    priority: Annotated[list[str] | None, typer.Option(help="Filter by priority.")] = None,
    tag: Annotated[list[str] | None, typer.Option("--tag", help="Filter by tag.")] = None,
    all_tags: Annotated[bool, typer.Option("--all-tags", help="Need every --tag.")] = False,
    owner: Annotated[str | None, typer.Option(help="Only this owner's tasks.")] = None,
    department: Annotated[str | None, typer.Option(help="Only this department.")] = None,
    sort: Annotated[
        list[str] | None, typer.Option(help="Sort key, e.g. priority:desc (repeatable).")
    ] = None,
    limit: Annotated[int, typer.Option(help="Tasks per page.")] = 50,
    all_pages: Annotated[bool, typer.Option("--all", help="Follow every page.")] = False,
    api_url: ApiUrl = DEFAULT_API_URL,
    as_json: JsonFlag = False,
) -> None:
    """List tasks (newest first unless --sort), filtered."""
    params = {
        "type": type, "status": status, "priority": priority, "tag": tag,
        "tagMode": "all" if all_tags else None, "owner": owner, "department": department,
        "sort": sort, "limit": limit,
    }  # fmt: skip
    _print_tasks(_fetch_pages(api_url, "/tasks", params, all_pages), as_json)


@task_app.command("search")
def task_search(
    query: Annotated[str, typer.Argument(help="Words to find (taken literally).")],
    field: Annotated[
        list[str] | None,
        typer.Option("--field", help="name, tags or metadata.description (repeatable)."),
    ] = None,
    limit: Annotated[int, typer.Option(help="At most this many.")] = 50,
    api_url: ApiUrl = DEFAULT_API_URL,
    as_json: JsonFlag = False,
) -> None:
    """Full-text search over task names, tags and descriptions, best match first."""
    params = {"q": query, "fields": field, "limit": limit}
    _print_tasks(_fetch_pages(api_url, "/tasks/search", params, False), as_json)


def _fetch_pages(
    api_url: str, path: str, params: dict[str, Any], all_pages: bool
) -> list[dict[str, Any]]:
    client = _client(api_url)
    clean = {k: v for k, v in params.items() if v is not None}
    rows: list[dict[str, Any]] = []
    while True:
        try:
            response = client.raw("GET", path, params=clean)
        except ApiError as exc:
            raise _fail(str(exc)) from None
        rows.extend(response.json())
        cursor = response.headers.get("X-Next-Cursor")
        if not all_pages or not cursor:
            return rows
        clean["cursor"] = cursor


def _print_tasks(rows: list[dict[str, Any]], as_json: bool) -> None:
    if as_json:
        _print_json(rows)
        return
    table = Table("id", "name", "type", "priority", "status", "attempts", "created")
    for t in rows:
        table.add_row(
            t["id"],
            t["name"],
            t["type"],
            t["priority"],
            t["status"],
            f"{t['attempts']}/{t['maxAttempts']}",
            t["createdAt"],
        )
    console.print(table)


@task_app.command("show")
def task_show(task_id: str, api_url: ApiUrl = DEFAULT_API_URL, as_json: JsonFlag = False) -> None:
    """Show one task with its attempts."""
    client = _client(api_url)
    task = _call(client.get, f"/tasks/{task_id}")
    if as_json:
        task["history"] = _call(client.get, f"/tasks/{task_id}/history")
        _print_json(task)
        return
    _print_task(task, False)
    table = Table("attempt", "status", "worker", "started", "ms", "error")
    for e in _call(client.get, f"/tasks/{task_id}/history"):
        table.add_row(
            str(e["attempt"]),
            e["status"],
            e["workerId"],
            e["startedAt"],
            str(e["durationMs"] or ""),
            e["error"] or "",
        )
    console.print(table)


@task_app.command("execute")
def task_execute(
    task_id: str, api_url: ApiUrl = DEFAULT_API_URL, as_json: JsonFlag = False
) -> None:
    """Queue a task for a worker."""
    _print_task(_call(_client(api_url).post, f"/tasks/{task_id}/execute"), as_json)


def _control_command(action: str, help_text: str) -> None:
    def command(task_id: str, api_url: ApiUrl = DEFAULT_API_URL, as_json: JsonFlag = False) -> None:
        _print_task(_call(_client(api_url).post, f"/tasks/{task_id}/{action}"), as_json)

    command.__doc__ = help_text
    task_app.command(action)(command)


_control_command("cancel", "Cancel a task (a running one stops at its next checkpoint).")
_control_command("pause", "Pause a task; a running one stops at its next checkpoint.")
_control_command("resume", "Resume a paused task from its last checkpoint.")
_control_command("retry", "Requeue a failed, timed-out, cancelled or dead-lettered task.")


@task_app.command("update")
def task_update(
    task_id: str,
    name: Annotated[str | None, typer.Option(help="New name.")] = None,
    priority: Annotated[str | None, typer.Option(help="New priority.")] = None,
    tag: Annotated[list[str] | None, typer.Option("--tag", help="Replace tags.")] = None,
    params: Annotated[str | None, typer.Option("--params", help="New parameters (JSON).")] = None,
    timeout: Annotated[int | None, typer.Option(help="New timeout in ms.")] = None,
    max_attempts: Annotated[int | None, typer.Option(help="New attempt limit.")] = None,
    api_url: ApiUrl = DEFAULT_API_URL,
    as_json: JsonFlag = False,
) -> None:
    """Change a task that no worker holds."""
    body: dict[str, Any] = {"name": name, "priority": priority, "tags": tag, "timeout": timeout}
    if params is not None:
        body["parameters"] = _parse_params([], params)
    if max_attempts is not None:
        body["retryPolicy"] = {"maxAttempts": max_attempts}
    body = {k: v for k, v in body.items() if v is not None}
    _print_task(_call(_client(api_url).request, "PUT", f"/tasks/{task_id}", json=body), as_json)


@task_app.command("delete")
def task_delete(task_id: str, api_url: ApiUrl = DEFAULT_API_URL) -> None:
    """Soft-delete a task (its history and audit trail are kept)."""
    _call(_client(api_url).request, "DELETE", f"/tasks/{task_id}")
    console.print(f"deleted {task_id}", highlight=False)


@task_app.command("dead-letters")
def task_dead_letters(
    limit: Annotated[int, typer.Option(help="At most this many.")] = 50,
    api_url: ApiUrl = DEFAULT_API_URL,
    as_json: JsonFlag = False,
) -> None:
    """List dead-lettered tasks with their last error."""
    rows = _call(_client(api_url).get, "/tasks/dead-letters", limit=limit)
    if as_json:
        _print_json(rows)
        return
    table = Table("id", "name", "type", "attempts", "error")
    for t in rows:
        table.add_row(t["id"], t["name"], t["type"], str(t["attempts"]), t["error"] or "")
    console.print(table)


@task_app.command("logs")
def task_logs(
    task_id: str,
    follow: Annotated[bool, typer.Option("--follow", "-f", help="Wait for new lines.")] = False,
    api_url: ApiUrl = DEFAULT_API_URL,
    as_json: JsonFlag = False,
) -> None:
    """Print a task's log lines (all attempts)."""
    client = _client(api_url)
    after = 0
    while True:
        for line in _call(client.get, f"/tasks/{task_id}/logs", after=after):
            after = line["id"]
            if as_json:
                print(json.dumps(line))
            else:
                console.print(
                    f"{line['at']} [{line['level']}] #{line['attempt']} {line['message']}",
                    highlight=False,
                    markup=False,
                )
        if not follow:
            return
        if _call(client.get, f"/tasks/{task_id}/status")["status"] in FINAL_STATES:
            follow = False
            continue
        time.sleep(1)


def _print_task(task: dict[str, Any], as_json: bool) -> None:
    if as_json:
        _print_json(task)
        return
    console.print(
        f"[bold]{task['id']}[/bold]  {task['name']}  type={task['type']}  "
        f"priority={task['priority']}  status=[bold]{task['status']}[/bold]  "
        f"attempts={task['attempts']}/{task['maxAttempts']}",
        highlight=False,
    )
    if task.get("error"):
        console.print(f"error: {task['error']}", style="red", highlight=False, markup=False)


# -- ingestion -----------------------------------------------------------------------------


@app.command()
def ingest(
    source: Annotated[str, typer.Argument(help="Path or http(s) URL of a STIX, MISP or CSV feed.")],
    format: Annotated[
        str | None, typer.Option("--format", help="stix, misp or csv (detected if absent).")
    ] = None,
    priority: Annotated[str, typer.Option(help="Task priority.")] = "normal",
    follow: Annotated[bool, typer.Option("--follow/--no-follow", help="Wait for the end.")] = True,
    api_url: ApiUrl = DEFAULT_API_URL,
    as_json: JsonFlag = False,
) -> None:
    """Ingest a threat feed: create the task, follow it, print what it stored."""
    if "://" not in source:
        path = Path(source).expanduser()
        if path.is_dir():
            raise _fail(f"{source!r} is a directory; give one feed file")
        if not path.is_file():
            raise _fail(f"no such file: {source!r}")
        source = str(path.resolve())
    params: dict[str, Any] = {"source": source}
    if format:
        params["format"] = format
    body = {
        "name": f"ingest {Path(source).name}",
        "type": "data_ingestion",
        "priority": priority,
        "definition": {"parameters": params},
    }
    client = _client(api_url)
    task = _call(client.post, "/tasks", body, execute="true")
    if not follow:
        _print_task(task, as_json)
        return

    task = _follow(client, task, quiet=as_json)
    if as_json:
        _print_json(task)
    else:
        _print_ingest_summary(task)
    if task["status"] != "completed":
        raise typer.Exit(code=1)


def _follow(client: ApiClient, task: dict[str, Any], *, quiet: bool) -> dict[str, Any]:
    task_id = task["id"]
    with Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        TimeElapsedColumn(),
        console=err_console,
        disable=quiet,
    ) as progress:
        bar = progress.add_task(f"{task_id} queued", total=None)
        while True:
            status = _call(client.get, f"/tasks/{task_id}/status")
            done = status["progress"]["done"]
            records = f", {done} records" if done is not None else ""
            progress.update(
                bar,
                description=f"{task_id} {status['status']} (attempt {status['attempts']}{records})",
            )
            if status["status"] in FINAL_STATES:
                break
            time.sleep(0.25)
    return _call(client.get, f"/tasks/{task_id}")


def _print_ingest_summary(task: dict[str, Any]) -> None:
    _print_task(task, False)
    result = task.get("result") or {}
    if not result:
        return
    records, items = result.get("records", {}), result.get("items", {})
    console.print(
        f"format={result.get('format')}  records read={records.get('read', 0)}  "
        f"indicators={items.get('indicator', 0)}  rejected={items.get('rejected', 0)}  "
        f"skipped={items.get('skipped', 0)}",
        highlight=False,
    )
    table = Table("type", "read", "new in store", title="Indicators by type")
    for type_, counts in result.get("byType", {}).items():
        table.add_row(type_, str(counts.get("read", 0)), str(counts.get("new", 0)))
    console.print(table)
    if result.get("rejectReasons"):
        rejects = Table("reason", "count", title="Rejected")
        for reason, n in result["rejectReasons"].items():
            rejects.add_row(reason, str(n))
        console.print(rejects)
        for example in result.get("rejectExamples", [])[:3]:
            console.print(f"  e.g. {example['reason']}", highlight=False, markup=False)
    quality = result.get("quality")
    if not quality:
        return
    dup = quality["duplicates"]
    exact = "" if dup.get("exact", True) else " (split approximate, see result)"
    console.print(
        f"duplicates: {dup['withinFeed']} repeated within the feed, {dup['againstStore']} "
        f"already in the store{exact}; {dup['new']} new of {dup['distinct']} distinct",
        highlight=False,
    )
    hits = quality["warningLists"]["hits"]
    if quality["warningLists"]["loaded"]:
        listed = ", ".join(f"{name}: {n}" for name, n in hits.items()) or "none"
        console.print(f"warning-list hits (tagged, kept): {listed}", highlight=False, markup=False)
    from rich.markup import escape

    for flag in quality["anomalies"]:
        console.print(
            f"[yellow]anomaly[/yellow] {flag['flag']}: {escape(flag['message'])}",
            highlight=False,
        )
    if not quality["anomalies"]:
        console.print("anomalies: none", highlight=False)


@app.command()
def indicators(
    type: Annotated[str | None, typer.Option("--type", help="Only this indicator type.")] = None,
    value: Annotated[str | None, typer.Option(help="Exact (normalised) value.")] = None,
    source: Annotated[str | None, typer.Option(help="Only from this source.")] = None,
    tag: Annotated[str | None, typer.Option(help="Only with this tag, e.g. private.")] = None,
    seen_after: Annotated[
        str | None, typer.Option(help="Last seen at or after, ISO 8601 with zone.")
    ] = None,
    limit: Annotated[int, typer.Option(help="At most this many.")] = 50,
    api_url: ApiUrl = DEFAULT_API_URL,
    as_json: JsonFlag = False,
) -> None:
    """List stored indicators, most recently seen first."""
    rows = _call(
        _client(api_url).get,
        "/indicators",
        type=type,
        value=value,
        source=source,
        tag=tag,
        seenAfter=seen_after,
        limit=limit,
    )
    if as_json:
        _print_json(rows)
        return
    table = Table("type", "value", "count", "sources", "tags", "last seen")
    for r in rows:
        table.add_row(
            r["type"],
            r["value"],
            str(r["count"]),
            ", ".join(r["sources"]),
            ", ".join(r["tags"]),
            r["lastSeen"],
        )
    console.print(table)


if __name__ == "__main__":
    app()
