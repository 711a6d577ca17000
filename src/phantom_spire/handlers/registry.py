"""The registry of named handlers, and the interface every handler implements."""

from __future__ import annotations

from typing import Any, ClassVar, Protocol

from pydantic import BaseModel, ValidationError

from phantom_spire.errors import InvalidTaskDefinition
from phantom_spire.handlers.context import TaskContext
from phantom_spire.settings import Settings

__all__ = ["Handler", "HandlerRegistry", "default_registry"]


class Handler(Protocol):
    """A unit of CTI work the engine can run.

    ``Parameters`` validates a task's parameters when the task is created, so bad input is
    refused with 422 instead of failing later on a worker.
    """

    name: ClassVar[str]
    Parameters: ClassVar[type[BaseModel]]

    async def run(self, ctx: TaskContext) -> dict[str, Any]: ...


class HandlerRegistry:
    """Handlers by name."""

    def __init__(self) -> None:
        self._handlers: dict[str, Handler] = {}

    def register(self, handler: Handler) -> None:
        if handler.name in self._handlers:
            raise ValueError(f"a handler named {handler.name!r} is already registered")
        self._handlers[handler.name] = handler

    def get(self, name: str) -> Handler:
        try:
            return self._handlers[name]
        except KeyError:
            raise InvalidTaskDefinition(
                f"unknown handler {name!r}; known handlers: {', '.join(self.names()) or 'none'}",
                field="definition.handler",
                value=name,
            ) from None

    def names(self) -> list[str]:
        return sorted(self._handlers)

    def validate_parameters(self, name: str, parameters: dict[str, Any]) -> dict[str, Any]:
        """Check ``parameters`` against the handler's model; return them normalised."""
        handler = self.get(name)
        try:
            model = handler.Parameters.model_validate(parameters)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"])
            raise InvalidTaskDefinition(
                f"invalid parameter {where!r} for handler {name!r}: {first['msg']} "
                f"(got {first.get('input')!r})",
                field=f"definition.parameters.{where}",
                value=first.get("input"),
            ) from exc
        return model.model_dump(mode="json", by_alias=True, exclude_none=True)


def default_registry(settings: Settings | None = None) -> HandlerRegistry:
    """A registry with every handler that ships with Phantom Spire."""
    from phantom_spire.handlers.data_ingestion import DataIngestionHandler
    from phantom_spire.handlers.enrichment import EnrichmentHandler
    from phantom_spire.handlers.ioc_processing import IocProcessingHandler
    from phantom_spire.handlers.noop import NoopHandler

    registry = HandlerRegistry()
    for handler in (DataIngestionHandler(settings), IocProcessingHandler(), NoopHandler()):
        registry.register(handler)
    registry.register(EnrichmentHandler(settings))
    return registry
