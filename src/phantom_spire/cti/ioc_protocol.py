"""The JSON Lines protocol of the shared IOC bench (``../shared/bench/ioc_peers.py``).

``spire ioc extract|fang|classify --jsonl`` reads one request per line and writes one answer
per line; this module does the work so the CLI only wires stdin and stdout:

* extract:  ``{"id", "text"}``     -> ``{"id", "found": {type: [values]}, "types": [...]}``
* fang:     ``{"id", "defanged"}`` -> ``{"id", "fanged"}``
* classify: ``{"id", "value"}``    -> ``{"id", "type": type | null, "normalized": value | null}``

A line that is not a JSON object with the needed field gets ``{"id", "error": ...}``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from typing import Any

from phantom_spire.cti import indicators

__all__ = ["MODES", "answer", "serve_jsonl"]

MODES = ("extract", "fang", "classify")
_FIELDS = {"extract": "text", "fang": "defanged", "classify": "value"}


def answer(mode: str, request: dict[str, Any]) -> dict[str, Any]:
    """Answer one request of the given mode.

    Raises:
        ValueError: `mode` is not one of `MODES`.
    """
    if mode not in MODES:
        raise ValueError(f"unknown mode {mode!r}; expected one of {MODES}")
    field = _FIELDS[mode]
    value = request.get(field)
    if not isinstance(value, str):
        return {"id": request.get("id"), "error": f"expected a string {field!r}, got {value!r:.80}"}
    if mode == "fang":
        return {"id": request.get("id"), "fanged": indicators.refang(value)}
    if mode == "classify":
        try:
            indicator = indicators.parse_indicator(value)
        except indicators.InvalidIndicator:
            return {"id": request.get("id"), "type": None, "normalized": None}
        return {"id": request.get("id"), "type": indicator.type, "normalized": indicator.value}
    found: dict[str, list[str]] = {}
    for indicator in indicators.extract(value):
        found.setdefault(indicator.type, []).append(indicator.value)
    return {"id": request.get("id"), "found": found, "types": list(indicators.TYPES)}


def serve_jsonl(mode: str, lines: Iterable[str]) -> Iterator[str]:
    """Yield one JSON answer line for each non-blank request line."""
    for line in lines:
        if not line.strip():
            continue
        try:
            request = json.loads(line)
        except json.JSONDecodeError as exc:
            yield json.dumps({"id": None, "error": f"invalid JSON: {exc.msg}"})
            continue
        if not isinstance(request, dict):
            yield json.dumps({"id": None, "error": "expected a JSON object"})
            continue
        yield json.dumps(answer(mode, request), ensure_ascii=False)
