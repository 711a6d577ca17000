"""Authentication for the API: every route takes the caller as an :class:`Actor`.

A key is sent as ``X-API-Key: <key>`` or ``Authorization: Bearer <key>``. Missing or bad keys
are 401 (and an audit event); each key has its own rate limit (429 with ``Retry-After``).
Authorisation itself happens in the services, never here.
"""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from phantom_spire.errors import SpireError
from phantom_spire.runtime import Runtime
from phantom_spire.security import ApiKeyRejected, retry_after_header
from phantom_spire.services.identity import Actor

__all__ = ["CurrentActor", "RateLimited", "Unauthenticated", "current_actor"]

_api_key_header = APIKeyHeader(name="X-API-Key", auto_error=False, scheme_name="ApiKey")
_bearer = HTTPBearer(auto_error=False, scheme_name="Bearer")


class Unauthenticated(SpireError):
    """No key, or a key that does not authenticate (answered 401)."""


class RateLimited(SpireError):
    """The key used up its request budget (answered 429)."""

    def __init__(self, retry_after: str) -> None:
        super().__init__(f"rate limit exceeded; retry after {retry_after} s")
        self.retry_after = retry_after


def current_actor(
    request: Request,
    api_key: Annotated[str | None, Depends(_api_key_header)],
    bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Actor:
    runtime: Runtime = request.app.state.runtime
    request_id = request.headers.get("X-Request-ID") or uuid.uuid4().hex
    source = request.client.host if request.client else None
    presented = api_key or (bearer.credentials if bearer else None)

    if not presented:
        _audit_failure(runtime, None, request_id, source, "missing")
        raise Unauthenticated("an API key is required (X-API-Key or Authorization: Bearer)")
    try:
        actor = runtime.identity.authenticate(
            presented, request_id=request_id, source_address=source
        )
    except ApiKeyRejected as exc:
        _audit_failure(runtime, exc.key_id, request_id, source, exc.reason)
        raise Unauthenticated(f"the API key was not accepted ({exc.reason})") from None

    decision = runtime.limiter.acquire(actor.key_id or actor.user_id)
    if not decision.allowed:
        raise RateLimited(retry_after_header(decision))
    return actor


def _audit_failure(
    runtime: Runtime, key_id: str | None, request_id: str, source: str | None, reason: str
) -> None:
    runtime.store.record_audit(
        {
            "actor": "anonymous",
            "key_id": key_id,
            "request_id": request_id,
            "source_address": source,
            "action": "auth.authenticate",
            "target_type": "api",
            "target_id": None,
            "outcome": "denied",
            "details": {"reason": reason},
        }
    )


CurrentActor = Annotated[Actor, Depends(current_actor)]
