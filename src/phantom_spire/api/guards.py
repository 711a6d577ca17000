"""Request guards that run before routing: NUL characters and oversized bodies.

PostgreSQL text cannot hold a NUL character; rather than let one reach the store (a server
error), any request carrying one is refused with a 422 problem document.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

__all__ = ["MAX_BODY_BYTES", "RequestGuard"]

MAX_BODY_BYTES = 16 * 1024 * 1024

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


class RequestGuard:
    """ASGI middleware refusing NUL characters in the query or body, and huge bodies."""

    def __init__(self, app: Callable[[Scope, Receive, Send], Awaitable[None]]) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        query = scope.get("query_string", b"")
        if b"%00" in query.lower() or b"\x00" in query:
            await _problem(send, 422, "the query string contains a NUL character (%00)", "query")
            return

        messages: list[Message] = []
        size, more = 0, True
        while more:
            message = await receive()
            messages.append(message)
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > MAX_BODY_BYTES:
                await _problem(send, 413, f"the body exceeds {MAX_BODY_BYTES} bytes", "body")
                return
            if b"\x00" in chunk or b"\\u0000" in chunk:
                await _problem(send, 422, "the body contains a NUL character (\\u0000)", "body")
                return
            more = message.get("more_body", False) and message["type"] == "http.request"

        async def replay() -> Message:
            # The buffered body first, then the real channel (for disconnect notices).
            return messages.pop(0) if messages else await receive()

        await self.app(scope, replay, send)


async def _problem(send: Send, status: int, detail: str, field: str) -> None:
    body = json.dumps(
        {
            "type": "https://phantom-spire.dev/problems/invalid-request",
            "title": "Invalid request",
            "status": status,
            "detail": detail,
            "errors": [{"field": field, "value": None, "message": detail}],
        }
    ).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/problem+json"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
