"""What every feed reader shares: the FeedItem record and helpers to build items."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from phantom_spire.cti.errors import FeedFormatError, InvalidIndicator
from phantom_spire.cti.indicators import Indicator, parse_indicator

__all__ = [
    "FeedItem",
    "indicator_item",
    "load_json",
    "new_context",
    "rejected_item",
    "skipped_item",
]

_TLP_LEVELS = ("clear", "white", "green", "amber+strict", "amber", "red")


@dataclass
class FeedItem:
    """One result of reading a feed.

    A record (a STIX object, a MISP attribute, a CSV row) yields one or more items that share
    its ``position``: a MISP ``domain|ip`` attribute, a CSV row with several indicator columns
    and a STIX pattern ``[a] OR [b]`` each yield one item per value. To resume after record
    ``p`` has been fully handled, read again with ``start=p + 1``.

    Attributes:
        position: 0-based index of the record in the feed, stable across runs of the same file.
        kind: ``"indicator"``, ``"rejected"`` (a value that is not a valid indicator) or
            ``"skipped"`` (a record that carries no indicator, e.g. a STIX relationship).
        indicator: the indicator, for kind ``"indicator"``.
        raw_type: the feed's own type label (STIX object path, MISP type, CSV column).
        raw_value: the value as found in the feed.
        reason: for rejected/skipped items, what was wrong, naming the object id, field, value.
        context: JSON-serialisable facts about the record; always has the keys ``tags``,
            ``confidence``, ``tlp``, ``first_seen``, ``last_seen``, plus format-specific ids.
    """

    position: int
    kind: str
    indicator: Indicator | None
    raw_type: str | None
    raw_value: str | None
    reason: str | None
    context: dict[str, Any] = field(default_factory=dict)


def new_context(**extra: Any) -> dict[str, Any]:
    """Return a context dict with the standard keys set to empty values, updated by `extra`."""
    context: dict[str, Any] = {
        "tags": [],
        "confidence": None,
        "tlp": None,
        "first_seen": None,
        "last_seen": None,
    }
    context.update(extra)
    return context


def tlp_from_tags(tags: list[str]) -> str | None:
    """Return the TLP level named by a ``tlp:<level>`` tag, if any."""
    for tag in tags:
        lowered = tag.strip().lower().replace(" ", "")
        if lowered.startswith("tlp:") and lowered[4:] in _TLP_LEVELS:
            return lowered[4:]
    return None


def indicator_item(
    position: int,
    raw_value: object,
    raw_type: str | None,
    context: dict[str, Any],
    *,
    hint: str | None = None,
    where: str = "",
) -> FeedItem:
    """Parse one value into an indicator item, or a rejected item saying why.

    Args:
        position: the record's position.
        raw_value: the value as found.
        raw_type: the feed's label, reported as ``raw_type``.
        context: the record's context (shared by reference between the record's items).
        hint: the label to validate against; defaults to `raw_type`.
        where: names the record and field for the rejection reason (e.g. ``indicator--1 pattern``).
    """
    text = raw_value if isinstance(raw_value, str) else None
    try:
        indicator = parse_indicator(raw_value, raw_type if hint is None else hint)  # type: ignore[arg-type]
    except InvalidIndicator as exc:
        prefix = f"{where}: " if where else ""
        reason = f"{prefix}{exc.reason} (value {exc.value!r})"
        return FeedItem(position, "rejected", None, raw_type, text, reason, context)
    return FeedItem(position, "indicator", indicator, raw_type, text, None, context)


def skipped_item(
    position: int,
    reason: str,
    context: dict[str, Any],
    *,
    raw_type: str | None = None,
    raw_value: str | None = None,
) -> FeedItem:
    """Return an item for a record that carries no indicator."""
    return FeedItem(position, "skipped", None, raw_type, raw_value, reason, context)


def rejected_item(
    position: int,
    reason: str,
    context: dict[str, Any],
    *,
    raw_type: str | None = None,
    raw_value: str | None = None,
) -> FeedItem:
    """Return an item for a record that is malformed."""
    return FeedItem(position, "rejected", None, raw_type, raw_value, reason, context)


def load_json(path: Path) -> Any:
    """Load a whole JSON document, turning decoding problems into FeedFormatError.

    Raises:
        FeedFormatError: the file is empty, not UTF-8, or not complete valid JSON.
    """
    data = path.read_bytes()
    if not data.strip():
        raise FeedFormatError(path, "file is empty; expected a JSON document")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise FeedFormatError(
            path, f"not UTF-8 text (byte {data[exc.start]:#04x} at offset {exc.start})"
        ) from exc
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        # An unterminated string is reported where the string starts, not at the end.
        truncated = exc.pos >= len(text.rstrip()) or exc.msg.startswith("Unterminated string")
        problem = "truncated JSON" if truncated else "invalid JSON"
        raise FeedFormatError(
            path, f"{problem}: {exc.msg} at line {exc.lineno} column {exc.colno}"
        ) from exc
