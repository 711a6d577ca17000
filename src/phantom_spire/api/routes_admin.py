"""Audit trail and key administration routes."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from phantom_spire.api.auth import CurrentActor
from phantom_spire.api.schemas import iso
from phantom_spire.runtime import Runtime
from phantom_spire.security import Permission, authorize

__all__ = ["admin_routes", "audit_routes"]


def _runtime(request: Request) -> Runtime:
    runtime: Runtime = request.app.state.runtime
    return runtime


def audit_routes() -> APIRouter:
    router = APIRouter(prefix="/audit", tags=["audit"])

    @router.get("")
    def list_audit(
        request: Request,
        actor: CurrentActor,
        target: str | None = None,
        actor_id: Annotated[str | None, Query(alias="actor")] = None,
        action: str | None = None,
        outcome: str | None = None,
        after: Annotated[int, Query(ge=0, le=2**62)] = 0,
        limit: Annotated[int, Query(ge=1, le=10_000)] = 100,
    ) -> list[dict[str, Any]]:
        """Audit events in chain order, for auditors; filter by target, actor, action, outcome."""
        authorize(actor.principal, Permission.AUDIT_READ)
        rows = _runtime(request).store.list_audit(
            target_id=target,
            actor=actor_id,
            action=action,
            outcome=outcome,
            after_id=after,
            limit=limit,
        )
        return [
            {
                "id": r["id"],
                "at": iso(r["at"]),
                "actor": r["actor"],
                "keyId": r["key_id"],
                "action": r["action"],
                "targetType": r["target_type"],
                "target": r["target_id"],
                "outcome": r["outcome"],
                "requestId": r["request_id"],
                "sourceAddress": r["source_address"],
                "details": r["details"],
                "hash": r["hash"],
            }
            for r in rows
        ]

    @router.get("/verify")
    def verify_audit(request: Request, actor: CurrentActor) -> dict[str, Any]:
        """Check the hash chain; names the first edited, deleted, inserted or moved event."""
        authorize(actor.principal, Permission.AUDIT_VERIFY)
        result = _runtime(request).store.verify_audit()
        return {
            "ok": result.ok,
            "checked": result.checked,
            "firstBadId": result.first_bad_id,
            "reason": result.reason or None,
        }

    return router


class _Camel(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")


class UserIn(_Camel):
    id: str = Field(min_length=1, max_length=120, pattern=r"^[A-Za-z0-9_.@-]+$")
    role: str
    department: str = Field(min_length=1, max_length=120)
    clearance: str
    grants: list[str] = Field(default_factory=list)


class KeyIn(_Camel):
    user_id: str
    label: str = Field(default="", max_length=200)
    ttl_days: int | None = Field(default=90, ge=1, le=3650)


def admin_routes() -> APIRouter:
    router = APIRouter(prefix="/admin", tags=["admin"])

    @router.post("/users", status_code=201)
    def create_user(body: UserIn, request: Request, actor: CurrentActor) -> dict[str, Any]:
        authorize(actor.principal, Permission.ADMIN_USERS)
        runtime = _runtime(request)
        try:
            row = runtime.identity.create_user(
                body.id, body.role, body.department, body.clearance, body.grants
            )
        except ValueError as exc:
            from phantom_spire.errors import InvalidTaskDefinition

            raise InvalidTaskDefinition(str(exc), field="body", value=body.id) from None
        runtime.store.record_audit(actor.audit("user.create", body.id, target_type="user"))
        return {"id": row["id"], "role": row["role"], "department": row["department"]}

    @router.post("/keys", status_code=201)
    def create_key(body: KeyIn, request: Request, actor: CurrentActor) -> dict[str, Any]:
        """A new API key. The key is in this answer only: it is stored as a hash."""
        key_id, key = _runtime(request).identity.issue_key(
            actor, body.user_id, label=body.label, ttl_days=body.ttl_days
        )
        return {"keyId": key_id, "key": key}

    @router.post("/keys/{key_id}/revoke", status_code=204)
    def revoke_key(key_id: str, request: Request, actor: CurrentActor) -> None:
        _runtime(request).identity.revoke_key(actor, key_id)

    @router.post("/keys/{key_id}/rotate", status_code=201)
    def rotate_key(
        key_id: str,
        request: Request,
        actor: CurrentActor,
        overlap_hours: Annotated[float, Query(alias="overlapHours", ge=0, le=720)] = 24,
    ) -> dict[str, Any]:
        """A successor key; the old one keeps working for the overlap window."""
        new_id, key = _runtime(request).identity.rotate_key(
            actor, key_id, overlap_hours=overlap_hours
        )
        return {"keyId": new_id, "key": key, "previousKeyId": key_id}

    return router
