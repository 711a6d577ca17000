"""Errors as RFC 9457 problem details; the one place exception types become HTTP statuses."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException

from phantom_spire.api.auth import RateLimited, Unauthenticated
from phantom_spire.errors import (
    IdempotencyConflict,
    IllegalTransition,
    InvalidQuery,
    InvalidTaskDefinition,
    NotFound,
    TaskNotFound,
)
from phantom_spire.security import ApiKeyError, ApiKeyRejected, PermissionDenied, ResourceHidden

__all__ = [
    "COMMON_RESPONSES",
    "CONFLICT",
    "NOT_FOUND",
    "install_problem_handlers",
    "problem",
    "problem_response",
]

logger = logging.getLogger(__name__)

PROBLEM_TYPE = "https://phantom-spire.dev/problems/"


def problem(status: int, title: str, detail: str, slug: str, **extra: Any) -> JSONResponse:
    body = {"type": PROBLEM_TYPE + slug, "title": title, "status": status, "detail": detail}
    body.update(extra)
    return JSONResponse(body, status_code=status, media_type="application/problem+json")


def install_problem_handlers(app: FastAPI) -> None:
    @app.exception_handler(TaskNotFound)
    async def _not_found(_: Request, exc: TaskNotFound) -> JSONResponse:
        return problem(404, "Task not found", str(exc), "task-not-found", taskId=exc.task_id)

    @app.exception_handler(IllegalTransition)
    async def _conflict(_: Request, exc: IllegalTransition) -> JSONResponse:
        return problem(
            409,
            "Illegal state transition",
            str(exc),
            "illegal-transition",
            taskId=exc.task_id,
            currentStatus=exc.current,
            action=exc.action,
            allowedFrom=sorted(exc.allowed),
        )

    @app.exception_handler(Unauthenticated)
    async def _unauthenticated(_: Request, exc: Unauthenticated) -> JSONResponse:
        response = problem(401, "Unauthenticated", str(exc), "unauthenticated")
        response.headers["WWW-Authenticate"] = 'Bearer realm="phantom-spire"'
        return response

    @app.exception_handler(RateLimited)
    async def _rate_limited(_: Request, exc: RateLimited) -> JSONResponse:
        response = problem(429, "Too many requests", str(exc), "rate-limited")
        response.headers["Retry-After"] = exc.retry_after
        return response

    @app.exception_handler(NotFound)
    async def _missing(_: Request, exc: NotFound) -> JSONResponse:
        return problem(404, "Not found", str(exc), "not-found")

    @app.exception_handler(ApiKeyRejected)
    async def _key_rejected(_: Request, exc: ApiKeyRejected) -> JSONResponse:
        return problem(401, "Unauthenticated", "the API key was not accepted", "unauthenticated")

    @app.exception_handler(ApiKeyError)
    async def _key_conflict(_: Request, exc: ApiKeyError) -> JSONResponse:
        # Rotating a key that was rotated or revoked already: the key's state forbids it.
        return problem(409, "API key state conflict", str(exc), "api-key-conflict")

    @app.exception_handler(PermissionDenied)
    async def _forbidden(_: Request, exc: PermissionDenied) -> JSONResponse:
        return problem(403, "Forbidden", str(exc), "forbidden", permission=exc.permission)

    @app.exception_handler(ResourceHidden)
    async def _hidden(_: Request, exc: ResourceHidden) -> JSONResponse:
        return problem(404, "Not found", "not found", "not-found")

    @app.exception_handler(IdempotencyConflict)
    async def _idempotency(_: Request, exc: IdempotencyConflict) -> JSONResponse:
        return problem(
            409, "Idempotency key reused", str(exc), "idempotency-conflict", taskId=exc.task_id
        )

    @app.exception_handler(InvalidQuery)
    async def _invalid_query(_: Request, exc: InvalidQuery) -> JSONResponse:
        errors = [{"field": exc.field, "value": _jsonable(exc.value), "message": str(exc)}]
        return problem(422, "Invalid query", str(exc), "invalid-query", errors=errors)

    @app.exception_handler(InvalidTaskDefinition)
    async def _invalid_definition(_: Request, exc: InvalidTaskDefinition) -> JSONResponse:
        errors = [{"field": exc.field, "value": _jsonable(exc.value), "message": str(exc)}]
        return problem(422, "Invalid task definition", str(exc), "invalid-task", errors=errors)

    @app.exception_handler(RequestValidationError)
    async def _invalid_request(_: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [
            {
                "field": ".".join(str(p) for p in err["loc"] if p != "body"),
                "value": _jsonable(err.get("input")),
                "message": err["msg"],
            }
            for err in exc.errors()
        ]
        detail = "; ".join(
            f"{e['field'] or 'body'}: {e['message']} (got {e['value']!r})" for e in errors[:5]
        )
        return problem(422, "Invalid request", detail, "invalid-request", errors=errors)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        return problem(exc.status_code, str(exc.detail), str(exc.detail), "http-error")

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        logger.exception(
            "unhandled error on %s %s",
            request.method,
            request.url.path,
            extra={"event": "api_error"},
        )
        return problem(
            500, "Internal error", "the server could not complete the request", "internal"
        )


def _jsonable(value: Any) -> Any:
    if value is None or isinstance(value, str | int | float | bool):
        return value if not isinstance(value, str) or len(value) <= 200 else value[:200] + "…"
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value[:20]]
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in list(value.items())[:20]}
    return repr(value)[:200]


class Problem(BaseModel):
    """An RFC 9457 problem document, as every error of this API is sent."""

    type: str
    title: str
    status: int
    detail: str
    errors: list[dict[str, Any]] | None = None


def problem_response(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/problem+json": {"schema": Problem.model_json_schema()}},
    }


# Answers any route may give; routers declare them so the OpenAPI document tells the truth.
COMMON_RESPONSES: dict[int | str, dict[str, Any]] = {
    401: problem_response("No valid API key."),
    403: problem_response("The key's user lacks the permission."),
    413: problem_response("The request body is too large."),
    422: problem_response("A parameter or the body is invalid; `errors` names each field."),
    429: problem_response("The key's rate limit is used up; see Retry-After."),
}
NOT_FOUND = {404: problem_response("No such resource (or not visible to this user).")}
CONFLICT = {409: problem_response("Not allowed in the resource's current state.")}
