"""What every feed reader shares: the FeedItem record and helpers to build items."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import ijson

from phantom_spire.cti.errors import FeedFormatError, InvalidIndicator
from phantom_spire.cti.indicators import Indicator, parse_indicator

__all__ = [
    "FeedItem",
    "indicator_item",
    "json_stream_error",
    "load_json",
    "new_context",
    "open_json",
    "rejected_item",
    "skipped_item",
    "top_level",
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


_BOM = b"\xef\xbb\xbf"


@contextlib.contextmanager
def open_json(path: Path) -> Iterator[BinaryIO]:
    """Open a JSON file for ijson, past a UTF-8 byte-order mark (which ijson refuses)."""
    with path.open("rb") as handle:
        if handle.read(len(_BOM)) != _BOM:
            handle.seek(0)
        yield handle


def json_stream_error(path: Path, exc: Exception, where: str = "") -> FeedFormatError:
    """Turn an ijson error into a FeedFormatError that says what kind of problem it is."""
    message = exc.args[0] if exc.args else str(exc)
    if isinstance(message, bytes):
        message = message.decode("utf-8", "replace")
    first = str(message).strip().splitlines()[0] if str(message).strip() else type(exc).__name__
    if "premature EOF" in first:
        problem = "truncated JSON"
    elif "UTF8" in first:
        problem = "not UTF-8 text"
    else:
        problem = "invalid JSON"
    suffix = f" {where}" if where else ""
    return FeedFormatError(path, f"{problem}{suffix}: {first}")


_CONTAINERS = {"start_map": "dict", "start_array": "list"}


def top_level(
    path: Path, wanted: set[str], *, any_of: bool = False
) -> tuple[str, dict[str, tuple[str, Any]]]:
    """Describe a JSON document's top level without loading it.

    Reads events only until every key in `wanted` has been seen (with `any_of`, until one
    of them has), to the end of the document otherwise.

    Returns:
        ``(kind, keys)``: kind is ``"dict"``, ``"list"`` or the Python type name of a scalar
        document; keys maps each top-level key seen to ``(type name, value)``, the value only
        for scalars (None for containers).

    Raises:
        FeedFormatError: the JSON is invalid before the wanted keys were found.
    """
    kind = ""
    keys: dict[str, tuple[str, Any]] = {}
    pending: str | None = None
    with open_json(path) as handle:
        try:
            for prefix, event, value in ijson.parse(handle):
                if not kind:
                    kind = _CONTAINERS.get(event, type(value).__name__)
                    if kind != "dict":
                        break
                    continue
                if prefix == "" and event == "map_key":
                    pending = value
                elif pending is not None and prefix == pending:
                    keys[pending] = (_CONTAINERS.get(event, type(value).__name__), value)
                    pending = None
                    if (wanted & keys.keys()) if any_of else (wanted <= keys.keys()):
                        break
        except ijson.JSONError as exc:
            raise json_stream_error(path, exc) from exc
    return kind, keys
