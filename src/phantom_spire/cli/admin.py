"""``spire admin`` (on the engine's host, straight to the store) and ``spire audit``."""

from __future__ import annotations

import json
import os
import sys
from typing import Annotated, Any

import typer
from rich.console import Console

from phantom_spire.cli.client import DEFAULT_API_URL, ApiClient, ApiError

__all__ = ["admin_app", "audit_app"]

admin_app = typer.Typer(
    help="Users and API keys, managed on the engine's host (needs access to its store).",
    no_args_is_help=True,
)
audit_app = typer.Typer(
    help="Read and verify the tamper-evident audit trail.", no_args_is_help=True
)
console = Console()
err_console = Console(stderr=True)


def _runtime() -> Any:
    from phantom_spire.runtime import Runtime
    from phantom_spire.settings import Settings

    try:
        return Runtime(Settings())
    except Exception as exc:
        err_console.print(f"[red]error:[/red] cannot open the store: {exc}", highlight=False)
        raise typer.Exit(1) from None


def _fail(message: str) -> typer.Exit:
    err_console.print(f"[red]error:[/red] {message}", highlight=False, markup=False)
    return typer.Exit(code=1)


@admin_app.command("bootstrap")
def bootstrap(
    user: Annotated[str, typer.Option(help="Id of the first admin.")] = "admin",
    department: Annotated[str, typer.Option(help="Its department.")] = "soc",
) -> None:
    """On a fresh install: create the first admin and print its API key once."""
    runtime = _runtime()
    created = runtime.identity.bootstrap_admin(user, department)
    if created is None:
        raise _fail("users exist already; use `spire admin create-key` with an admin's rights")
    key_id, key = created
    console.print(f"created admin {user!r}, key id {key_id}. Key (shown once):", highlight=False)
    print(key)


@admin_app.command("create-user")
def create_user(
    user: Annotated[str, typer.Argument(help="User id.")],
    role: Annotated[str, typer.Option(help="viewer, analyst, responder, admin or auditor.")],
    department: Annotated[str, typer.Option(help="Department.")],
    clearance: Annotated[str, typer.Option(help="Clearance level, e.g. CONFIDENTIAL.")],
    grant: Annotated[list[str] | None, typer.Option(help="Extra permission.")] = None,
) -> None:
    """Create a user."""
    from phantom_spire.errors import SpireError

    runtime = _runtime()
    try:
        runtime.identity.create_user(user, role, department, clearance, grant or [])
    except (SpireError, ValueError) as exc:
        raise _fail(str(exc)) from None
    console.print(f"created user {user!r} ({role}, {department}, {clearance})", highlight=False)


@admin_app.command("create-key")
def create_key(
    user: Annotated[str, typer.Argument(help="User the key acts as.")],
    label: Annotated[str, typer.Option(help="A note, e.g. 'CI pipeline'.")] = "",
    ttl_days: Annotated[int, typer.Option(help="Days until it expires (0: never).")] = 90,
) -> None:
    """Issue an API key for a user; the key is printed once."""
    from phantom_spire.services.identity import SYSTEM

    runtime = _runtime()
    try:
        key_id, key = runtime.identity.issue_key(
            SYSTEM, user, label=label, ttl_days=ttl_days or None
        )
    except ValueError as exc:
        raise _fail(str(exc)) from None
    err_console.print(f"key id {key_id} for {user!r} (shown once):", highlight=False)
    print(key)


@admin_app.command("revoke-key")
def revoke_key(key_id: str) -> None:
    """Revoke a key at once."""
    from phantom_spire.errors import SpireError
    from phantom_spire.security import ApiKeyError
    from phantom_spire.services.identity import SYSTEM

    try:
        _runtime().identity.revoke_key(SYSTEM, key_id)
    except (ApiKeyError, SpireError) as exc:
        raise _fail(str(exc)) from None
    console.print(f"revoked {key_id}", highlight=False)


@admin_app.command("rotate-key")
def rotate_key(
    key_id: str,
    overlap_hours: Annotated[float, typer.Option(help="Hours both keys keep working.")] = 24,
) -> None:
    """Issue a successor key; the old one keeps working for the overlap window."""
    from phantom_spire.errors import SpireError
    from phantom_spire.security import ApiKeyError
    from phantom_spire.services.identity import SYSTEM

    try:
        new_id, key = _runtime().identity.rotate_key(SYSTEM, key_id, overlap_hours=overlap_hours)
    except (ApiKeyError, SpireError) as exc:
        raise _fail(str(exc)) from None
    err_console.print(f"new key id {new_id} (shown once); {key_id} retires later", highlight=False)
    print(key)


def _api(api_url: str) -> ApiClient:
    return ApiClient(api_url, api_key=os.environ.get("SPIRE_API_KEY"))


ApiUrl = Annotated[
    str, typer.Option("--api-url", envvar="SPIRE_API_URL", help="Address of a running engine.")
]


@audit_app.command("verify")
def verify(api_url: ApiUrl = DEFAULT_API_URL) -> None:
    """Check the audit hash chain; exit 1 and name the first bad event if it was tampered with."""
    try:
        result = _api(api_url).get("/audit/verify")
    except ApiError as exc:
        raise _fail(str(exc)) from None
    if result["ok"]:
        console.print(f"audit trail intact: {result['checked']} events verified", highlight=False)
        return
    raise _fail(f"audit trail broken at event {result['firstBadId']}: {result['reason']}")


@audit_app.command("list")
def list_events(
    target: Annotated[str | None, typer.Option(help="Only events about this target id.")] = None,
    action: Annotated[str | None, typer.Option(help="Only this action, e.g. task.cancel.")] = None,
    limit: Annotated[int, typer.Option(help="At most this many.")] = 100,
    api_url: ApiUrl = DEFAULT_API_URL,
) -> None:
    """Print audit events as JSON lines."""
    try:
        rows = _api(api_url).get("/audit", target=target, action=action, limit=limit)
    except ApiError as exc:
        raise _fail(str(exc)) from None
    for row in rows:
        sys.stdout.write(json.dumps(row) + "\n")
