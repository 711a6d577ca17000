"""``ioc_processing``: refang, validate, normalise and classify a list of indicator values."""

from __future__ import annotations

from collections import Counter
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field

from phantom_spire.cti import indicators
from phantom_spire.handlers.context import TaskContext

__all__ = ["IocProcessingHandler", "IocProcessingParameters"]

Operation = Literal["refang", "validate", "normalize", "classify"]


class IocProcessingParameters(BaseModel):
    model_config = ConfigDict(extra="forbid")

    iocs: list[str] = Field(min_length=1, max_length=100_000)
    operations: list[Operation] = Field(
        default_factory=lambda: ["refang", "validate", "normalize", "classify"]
    )


class IocProcessingHandler:
    """Per-value results, each with a reason when the value is rejected."""

    name: ClassVar[str] = "ioc_processing"
    Parameters: ClassVar[type[BaseModel]] = IocProcessingParameters

    async def run(self, ctx: TaskContext) -> dict[str, Any]:
        params = IocProcessingParameters.model_validate(ctx.parameters)
        results = await ctx.run_in_thread(_process_all, params)
        summary = Counter("valid" if r["valid"] else "rejected" for r in results)
        by_type = Counter(r["type"] for r in results if r["valid"])
        ctx.logger.info(
            f"processed {len(results)} values: {summary['valid']} valid, "
            f"{summary['rejected']} rejected"
        )
        return {
            "total": len(results),
            "valid": summary["valid"],
            "rejected": summary["rejected"],
            "byType": dict(sorted(by_type.items())),
            "results": results,
        }


def _process_all(params: IocProcessingParameters) -> list[dict[str, Any]]:
    return [_process_one(raw, set(params.operations)) for raw in params.iocs]


def _process_one(raw: str, operations: set[str]) -> dict[str, Any]:
    result: dict[str, Any] = {"input": raw, "refanged": indicators.refang(raw)}
    try:
        indicator = indicators.parse_indicator(raw)
    except indicators.InvalidIndicator as exc:
        result.update(valid=False, type=None, normalized=None, tags=[], reason=exc.reason)
        return result

    result.update(valid=True, reason=None, tags=list(indicator.tags))
    result["type"] = (
        indicator.type if "classify" in operations or "validate" in operations else None
    )
    result["normalized"] = indicator.value if "normalize" in operations else None
    return result
