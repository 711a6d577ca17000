"""Handlers behind built-in workflow steps: approvals, branches, roll-ups and summaries.

These run on workers like any handler. The engine passes them what they need in their
parameters (an approval's decision, a gathering step's ``upstream`` results), so none of
them reads the store.
"""

from __future__ import annotations

from collections import Counter
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field

from phantom_spire.errors import HandlerError
from phantom_spire.handlers.context import TaskContext

__all__ = [
    "ApprovalHandler",
    "BranchHandler",
    "IngestionRollupHandler",
    "WorkflowSummaryHandler",
    "workflow_step_handlers",
]


class ApprovalParameters(BaseModel):
    model_config = ConfigDict(extra="forbid")

    prompt: str = ""
    decision: dict[str, Any] | None = None


class ApprovalHandler:
    """Records the human decision that let this step run (a rejection skips the step)."""

    name: ClassVar[str] = "approval"
    Parameters: ClassVar[type[BaseModel]] = ApprovalParameters

    async def run(self, ctx: TaskContext) -> dict[str, Any]:
        params = ApprovalParameters.model_validate(ctx.parameters)
        if params.decision is None:
            raise HandlerError("approval step ran without a decision", retryable=False)
        return {"approved": params.decision.get("approved", False), **params.decision}


class BranchParameters(BaseModel):
    model_config = ConfigDict(extra="forbid")

    choose: str | list[str] = Field(description="Downstream step id(s) to follow.")
    upstream: dict[str, Any] | None = None


class BranchHandler:
    """Chooses the downstream step(s) to follow; the others are skipped."""

    name: ClassVar[str] = "branch"
    Parameters: ClassVar[type[BaseModel]] = BranchParameters

    async def run(self, ctx: TaskContext) -> dict[str, Any]:
        params = BranchParameters.model_validate(ctx.parameters)
        chosen = [params.choose] if isinstance(params.choose, str) else params.choose
        return {"branch": chosen}


class GatherParameters(BaseModel):
    model_config = ConfigDict(extra="forbid")

    title: str = ""
    upstream: dict[str, list[Any]] = Field(default_factory=dict)


class IngestionRollupHandler:
    """Adds up the quality reports of upstream ``data_ingestion`` tasks."""

    name: ClassVar[str] = "ingestion_rollup"
    Parameters: ClassVar[type[BaseModel]] = GatherParameters

    async def run(self, ctx: TaskContext) -> dict[str, Any]:
        params = GatherParameters.model_validate(ctx.parameters)
        reports = [r for results in params.upstream.values() for r in results if r]
        return rollup_ingestions(reports)


def rollup_ingestions(reports: list[dict[str, Any]]) -> dict[str, Any]:
    """Totals over ingestion reports, and one line per source."""
    by_type: dict[str, Counter[str]] = {}
    sources = []
    anomalies = 0
    for report in reports:
        stored = report.get("stored", {})
        for kind, counts in (report.get("byType") or {}).items():
            by_type.setdefault(kind, Counter()).update(counts)
        flags = report.get("quality", {}).get("anomalies", [])
        anomalies += len(flags)
        sources.append(
            {
                "source": report.get("source"),
                "format": report.get("format"),
                "indicators": stored.get("indicators", 0),
                "new": stored.get("new", 0),
                "anomalies": len(flags),
            }
        )
    return {
        "sources": len(sources),
        "indicators": sum(s["indicators"] for s in sources),
        "new": sum(s["new"] for s in sources),
        "anomalies": anomalies,
        "byType": {kind: dict(c) for kind, c in sorted(by_type.items())},
        "perSource": sources,
    }


class WorkflowSummaryHandler:
    """A summary of the upstream steps' results, for a report or a notification."""

    name: ClassVar[str] = "workflow_summary"
    Parameters: ClassVar[type[BaseModel]] = GatherParameters

    async def run(self, ctx: TaskContext) -> dict[str, Any]:
        params = GatherParameters.model_validate(ctx.parameters)
        steps = {step: len(results) for step, results in params.upstream.items()}
        merged: dict[str, Any] = {}
        for results in params.upstream.values():
            for result in results:
                if isinstance(result, dict):
                    merged.update(result)
        ctx.logger.info(f"summary of {sum(steps.values())} upstream result(s)")
        return {"title": params.title, "steps": steps, **merged}


def workflow_step_handlers() -> list[Any]:
    """Every handler of this module, for the registry."""
    return [ApprovalHandler(), BranchHandler(), IngestionRollupHandler(), WorkflowSummaryHandler()]
