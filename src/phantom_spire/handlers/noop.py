"""A handler that does nothing: for benchmarks and engine tests."""

from __future__ import annotations

import asyncio
from typing import Any, ClassVar

from pydantic import BaseModel, Field

from phantom_spire.errors import HandlerError
from phantom_spire.handlers.context import TaskContext

__all__ = ["NoopHandler"]


class NoopParameters(BaseModel):
    sleep_ms: int = Field(default=0, ge=0, le=86_400_000, alias="sleepMs")
    fail: bool = False
    retryable: bool = True

    model_config = {"populate_by_name": True, "extra": "forbid"}


class NoopHandler:
    """Sleeps ``sleepMs`` then succeeds, or fails on request (to exercise retries)."""

    name: ClassVar[str] = "noop"
    Parameters: ClassVar[type[BaseModel]] = NoopParameters

    async def run(self, ctx: TaskContext) -> dict[str, Any]:
        params = NoopParameters.model_validate(ctx.parameters)
        if params.sleep_ms:
            await asyncio.sleep(params.sleep_ms / 1000)
        if params.fail:
            raise HandlerError("failed on request (fail=true)", retryable=params.retryable)
        return {"attempt": ctx.attempt}
