"""Generic JSON and JSON Lines feeds, with field mapping by path.

A `JsonMapping` says where the records are and which fields hold indicators; without one, it is
inferred from the start of the file: the records are the deepest array whose objects have a
field named like an indicator (``indicator``, ``ioc``, ``value``, ``url``, ``domain``,
``source.ip``, ``NetworkDestinationIPv4``, ``FileHash-MD5`` ...), or an array of strings that
classify as indicators. A ``type`` field next to a generic value field types it (AlienVault OTX).

Reading streams with ijson: only one top-level array element is held in memory at a time, so
memory does not grow with the file (it grows with the largest single element, e.g. one OTX pulse
and its indicators). Records nested inside such an element carry the element's scalar fields
(``name``, ``tlp``, ``tags``) in their context.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import ijson

from phantom_spire.cti.errors import FeedFormatError
from phantom_spire.cti.formats import csv as csv_format
from phantom_spire.cti.formats.base import (
    FeedItem,
    indicator_item,
    new_context,
    rejected_item,
    skipped_item,
    tlp_from_tags,
)
from phantom_spire.cti.indicators import classify
from phantom_spire.cti.timestamps import normalize_timestamp

__all__ = ["JsonMapping", "infer_mapping", "read_json", "read_jsonl"]

logger = logging.getLogger(__name__)

_SAMPLE_EVENTS = 20_000
_GENERIC_FIELDS = csv_format.GENERIC_COLUMNS | {"indicator value", "observable"}
_TYPE_FIELDS = csv_format.TYPE_COLUMNS


@dataclass(frozen=True)
class JsonMapping:
    """Where a JSON feed keeps its records and indicator values.

    Attributes:
        records: dotted path from the document root to the array of records; ``"*"`` steps
            into every element of an array (``"*.indicators"`` for a list of pulses that each
            hold indicators); ``""`` when the root itself is the array.
        value_fields: paths inside a record that hold indicator values, each mapped to a type
            label (hint) or None to classify the value. Empty when records are bare strings.
        type_field: path of a field that types the generic value field (``"type"``).
        tags_field, tlp_field, first_seen_field, last_seen_field, confidence_field: optional
            context fields inside a record.
    """

    records: str
    value_fields: dict[str, str | None] = field(default_factory=dict)
    type_field: str | None = None
    tags_field: str | None = None
    tlp_field: str | None = None
    first_seen_field: str | None = None
    last_seen_field: str | None = None
    confidence_field: str | None = None


def _words(key: str) -> str:
    spaced = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", " ", key)
    return re.sub(r"[^a-z0-9]+", " ", spaced.lower()).strip()


def get_path(record: Any, path: str) -> Any:
    """Return the value at a dotted path; a key that itself contains dots is tried first."""
    if isinstance(record, dict) and path in record:
        return record[path]
    current = record
    for part in path.split("."):
        if not isinstance(current, dict) or part not in current:
            return None
        current = current[part]
    return current


def _field_roles(keys: list[str]) -> JsonMapping:
    value_fields: dict[str, str | None] = {}
    roles: dict[str, str] = {}
    type_field = None
    for key in keys:
        words = _words(key)
        if words in _GENERIC_FIELDS:
            value_fields[key] = None
        elif words in _TYPE_FIELDS and type_field is None:
            type_field = key
        elif (hint := csv_format.column_hint(words)) is not None:
            value_fields[key] = hint
        elif words in ("tags", "tag", "labels"):
            roles.setdefault("tags", key)
        elif words in ("tlp", "tlp level"):
            roles.setdefault("tlp", key)
        elif words.startswith("confidence"):
            roles.setdefault("confidence", key)
        elif any(w in words for w in ("first seen", "first reported", "firstseen", "created")):
            roles.setdefault("first_seen", key)
        elif any(w in words for w in ("last seen", "last reported", "lastseen")):
            roles.setdefault("last_seen", key)
    has_generic = any(hint is None for hint in value_fields.values())
    return JsonMapping(
        records="",
        value_fields=value_fields,
        type_field=type_field if has_generic else None,
        tags_field=roles.get("tags"),
        tlp_field=roles.get("tlp"),
        first_seen_field=roles.get("first_seen"),
        last_seen_field=roles.get("last_seen"),
        confidence_field=roles.get("confidence"),
    )


@dataclass
class _ArrayInfo:
    prefix: str
    keys: list[str] = field(default_factory=list)
    scalars: list[str] = field(default_factory=list)
    maps: int = 0


def _sample_arrays(handle: BinaryIO, path: Path) -> dict[str, _ArrayInfo]:
    arrays: dict[str, _ArrayInfo] = {}
    try:
        for count, (prefix, event, value) in enumerate(ijson.parse(handle)):
            if count >= _SAMPLE_EVENTS:
                break
            if prefix == "item" or prefix.endswith(".item"):
                info = arrays.setdefault(prefix, _ArrayInfo(prefix))
                if event == "start_map":
                    info.maps += 1
                elif event == "string" and len(info.scalars) < 20:
                    info.scalars.append(value)
                elif event == "map_key" and value not in info.keys:
                    info.keys.append(value)
    except ijson.common.IncompleteJSONError as exc:
        raise FeedFormatError(path, f"truncated or invalid JSON: {exc}") from exc
    return arrays


def _prefix_to_records(prefix: str) -> str:
    # ijson prefix "item.indicators.item" -> mapping path "*.indicators"
    parts = prefix.split(".")[:-1]
    return ".".join("*" if part == "item" else part for part in parts)


def infer_mapping(path: Path) -> JsonMapping:
    """Infer where the records and indicator fields of a generic JSON feed are.

    Raises:
        FeedFormatError: the file holds no array of records.
    """
    with path.open("rb") as handle:
        arrays = _sample_arrays(handle, path)
    candidates = []
    for info in arrays.values():
        if info.maps:
            roles = _field_roles(info.keys)
            if roles.value_fields:
                candidates.append((1, info.prefix.count("."), info.prefix, roles))
        elif info.scalars:
            hits = sum(1 for value in info.scalars if classify(value) is not None)
            if hits * 2 >= len(info.scalars):
                candidates.append((0, info.prefix.count("."), info.prefix, JsonMapping("")))
    if candidates:
        # Objects with indicator fields beat arrays of strings (an OTX pulse's "references"),
        # then the deepest array wins (indicators inside pulses, not the pulses).
        _, _, prefix, roles = max(candidates, key=lambda c: (c[0], c[1]))
        return _with_records(roles, _prefix_to_records(prefix))
    object_arrays = [info for info in arrays.values() if info.maps]
    if object_arrays:
        # Records without any indicator field: read them (they are counted) but skip each one.
        first = min(object_arrays, key=lambda info: info.prefix.count("."))
        return JsonMapping(_prefix_to_records(first.prefix))
    raise FeedFormatError(
        path, "no array of records found; expected a JSON array of objects or of indicator strings"
    )


def _with_records(mapping: JsonMapping, records: str) -> JsonMapping:
    return JsonMapping(
        records,
        mapping.value_fields,
        mapping.type_field,
        mapping.tags_field,
        mapping.tlp_field,
        mapping.first_seen_field,
        mapping.last_seen_field,
        mapping.confidence_field,
    )


def _outer_prefix(records: str) -> tuple[str, list[str]]:
    """Split a records path into the ijson prefix of the outermost array and the rest."""
    parts = records.split(".") if records else []
    if "*" not in parts:
        return ".".join([*parts, "item"]), []
    first_star = parts.index("*")
    outer = ".".join([*parts[:first_star], "item"])
    return outer, parts[first_star + 1 :]


def _inner_records(
    element: Any, rest: list[str], parents: dict[str, Any]
) -> Iterator[tuple[Any, dict[str, Any]]]:
    if not rest:
        yield element, parents
        return
    if isinstance(element, dict):
        scalars = {k: v for k, v in element.items() if isinstance(v, str | int | float | bool)}
        if isinstance(element.get("tags"), list):
            scalars["tags"] = element["tags"]
        parents = {**parents, **scalars}
    head, tail = rest[0], rest[1:]
    if head == "*":
        for child in element if isinstance(element, list) else []:
            yield from _inner_records(child, tail, parents)
        return
    child = get_path(element, head)
    if (tail and tail[0] == "*") or not tail:
        for item in child if isinstance(child, list) else []:
            yield from _inner_records(item, tail[1:] if tail else [], parents)
    else:
        yield from _inner_records(child, tail, parents)


def read_json(
    path: Path, *, start: int = 0, mapping: JsonMapping | None = None
) -> Iterator[FeedItem]:
    """Yield the items of a generic JSON feed from record `start` on.

    Raises:
        FeedFormatError: truncated/invalid JSON or no array of records.
    """
    mapping = mapping or infer_mapping(path)
    logger.debug("json mapping of %s: %r", path, mapping)
    outer, rest = _outer_prefix(mapping.records)
    position = -1
    with path.open("rb") as handle:
        try:
            for element in ijson.items(handle, outer, use_float=True):
                for record, parents in _inner_records(element, rest, {}):
                    position += 1
                    if position >= start:
                        yield from read_record(position, record, mapping, parents)
        except ijson.common.IncompleteJSONError as exc:
            raise FeedFormatError(
                path, f"truncated or invalid JSON after record {position}: {exc}"
            ) from exc


def _context(record: Any, mapping: JsonMapping, parents: dict[str, Any]) -> dict[str, Any]:
    tags: list[str] = []
    for source in (
        parents.get("tags"),
        get_path(record, mapping.tags_field) if mapping.tags_field else None,
    ):
        if isinstance(source, list):
            tags.extend(str(tag) for tag in source if isinstance(tag, str | int))
    tlp_value = get_path(record, mapping.tlp_field) if mapping.tlp_field else parents.get("tlp")
    confidence = get_path(record, mapping.confidence_field) if mapping.confidence_field else None
    context = new_context(
        tags=tags,
        tlp=str(tlp_value).lower().removeprefix("tlp:") if tlp_value else tlp_from_tags(tags),
        confidence=confidence if isinstance(confidence, int) else None,
        first_seen=normalize_timestamp(get_path(record, mapping.first_seen_field))
        if mapping.first_seen_field
        else None,
        last_seen=normalize_timestamp(get_path(record, mapping.last_seen_field))
        if mapping.last_seen_field
        else None,
    )
    parent_fields = {k: v for k, v in parents.items() if k in ("id", "name", "author_name")}
    if parent_fields:
        context["parent"] = parent_fields
    return context


def read_record(
    position: int, record: Any, mapping: JsonMapping, parents: dict[str, Any] | None = None
) -> Iterator[FeedItem]:
    """Yield the items of one JSON record (an object, or a bare indicator string)."""
    if isinstance(record, str):
        yield indicator_item(position, record, None, new_context(), where=f"record {position}")
        return
    if not isinstance(record, dict):
        reason = f"record {position} is a {type(record).__name__}, expected an object: {json.dumps(record)[:80]}"
        yield rejected_item(position, reason, new_context())
        return
    context = _context(record, mapping, parents or {})
    found = False
    for path, hint in mapping.value_fields.items():
        values = get_path(record, path)
        if hint is None and mapping.type_field:
            type_value = get_path(record, mapping.type_field)
            hint = str(type_value) if type_value is not None else None
        for value in values if isinstance(values, list) else [values]:
            if value is None or value == "":
                continue
            found = True
            raw = value if isinstance(value, str) else json.dumps(value)
            yield indicator_item(
                position,
                raw,
                hint or path,
                context,
                hint=hint or "",
                where=f"record {position} field {path!r}",
            )
    if not found:
        reason = (
            f"record {position} has no value in indicator field(s) {list(mapping.value_fields)!r}"
        )
        yield skipped_item(position, reason, context)


def read_jsonl(
    path: Path,
    *,
    start: int = 0,
    mapping: JsonMapping | None = None,
    max_record_chars: int = csv_format.DEFAULT_MAX_RECORD_CHARS,
) -> Iterator[FeedItem]:
    """Yield the items of a JSON Lines feed (one JSON value per line) from record `start` on.

    A line that is not valid JSON, or longer than `max_record_chars`, is a rejected record.
    """
    if mapping is None:
        keys: list[str] = []
        for _, text in zip(range(50), _jsonl_lines(path, max_record_chars), strict=False):
            try:
                value = json.loads(text[1]) if text[1] else None
            except json.JSONDecodeError:
                continue
            if isinstance(value, dict):
                keys.extend(k for k in value if k not in keys)
        mapping = _field_roles(keys)
    position = -1
    for line_no, text in _jsonl_lines(path, max_record_chars):
        position += 1
        if position < start:
            continue
        if text is None:
            reason = f"line {line_no}: longer than {max_record_chars} characters, not read"
            yield rejected_item(position, reason, new_context(line=line_no))
            continue
        try:
            record = json.loads(text)
        except json.JSONDecodeError as exc:
            reason = f"line {line_no}: invalid JSON: {exc.msg} at column {exc.colno}"
            yield rejected_item(position, reason, new_context(line=line_no))
            continue
        yield from read_record(position, record, mapping)


def _jsonl_lines(path: Path, max_chars: int) -> Iterator[tuple[int, str | None]]:
    for line_no, line in csv_format.bounded_lines(path, max_chars):
        if line is None:
            yield line_no, None
        elif line.strip():
            yield line_no, line.strip()
