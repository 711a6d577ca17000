"""MISP event JSON: ``{"Event": ...}``, ``{"response": [{"Event": ...}, ...]}``, a bare event,
or a list of events.

One record per attribute, in file order: each event's own attributes first, then the
attributes of its objects, object by object. Positions continue across events.

* Composite types (``domain|ip``, ``filename|sha256``, ``ip-dst|port``, ``regkey|value``,
  ``malware-sample`` ...) are split: each part of an indicator type becomes one item of the same
  record; the other parts (port, registry value data) go into the context.
* Types that describe rather than identify (``text``, ``comment``, ``other``, ``datetime``,
  ``attachment``, ``threat-actor`` ...) are ``skipped``. So are ``link`` (MISP uses it for a
  reference to a report, not for an observed URL; the observed kind is ``url``) and ``uri``
  (a path without a host, which is none of our types).
* Context: ``misp_type`` (the attribute's full type), ``misp_uuid``, ``misp_event_uuid``, ``event_info``, ``category``, ``to_ids``,
  ``comment``, ``object_name``/``object_uuid`` for object attributes, ``tags`` (event tags,
  attribute tags, and galaxy cluster tag names), ``tlp`` from a ``tlp:`` tag, ``first_seen`` /
  ``last_seen`` when the attribute has them.

The file is streamed with ijson. A single event (``{"Event": ...}`` or bare) is read in three
passes: its own fields (uuid, info, tags, galaxies, wherever they sit in the file), then its
attributes one at a time, then its objects one at a time; so memory holds one attribute or
object, not the event. In ``response`` lists and lists of events, one event at a time is held.
Every form is read to the end once before the first item is yielded, so a truncated file is
refused before anything of it is stored.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import ijson

from phantom_spire.cti.errors import FeedFormatError
from phantom_spire.cti.formats.base import (
    FeedItem,
    indicator_item,
    json_stream_error,
    new_context,
    open_json,
    rejected_item,
    skipped_item,
    tlp_from_tags,
    top_level,
)
from phantom_spire.cti.timestamps import normalize_timestamp

__all__ = ["INDICATOR_TYPES", "is_misp", "misp_events", "read_attribute", "read_misp"]

logger = logging.getLogger(__name__)

# MISP attribute type -> hint understood by indicators.parse_indicator.
INDICATOR_TYPES: dict[str, str] = {
    "ip-dst": "ip-dst",
    "ip-src": "ip-src",
    "ip": "ip",
    "domain": "domain",
    "hostname": "hostname",
    "url": "url",
    "email": "email",
    "email-src": "email-src",
    "email-dst": "email-dst",
    "email-reply-to": "email-reply-to",
    "target-email": "target-email",
    "whois-registrant-email": "whois-registrant-email",
    "dns-soa-email": "email",
    "md5": "md5",
    "sha1": "sha1",
    "sha256": "sha256",
    "sha512": "sha512",
    "ssdeep": "ssdeep",
    "filename": "filename",
    "regkey": "regkey",
    "mac-address": "mac-address",
    "AS": "asn",
    "btc": "btc",
    "vulnerability": "cve",
    "mitre-attack-pattern": "attack_technique",
}

# Composite types whose name does not spell its parts.
_COMPOSITE_ALIASES = {"malware-sample": "filename|md5"}


def is_misp(document: Any) -> bool:
    """Tell whether a parsed JSON document looks like MISP event JSON."""
    if isinstance(document, dict):
        if isinstance(document.get("Event"), dict):
            return True
        response = document.get("response")
        if isinstance(response, list):
            return bool(response) and all(_is_event_wrapper(r) for r in response)
        return _is_bare_event(document)
    if isinstance(document, list) and document:
        return all(_is_event_wrapper(e) for e in document)
    return False


def _is_bare_event(value: dict[str, Any]) -> bool:
    # An event without its {"Event": ...} wrapper, as PyMISP's fixtures and exports write it.
    lists = [value.get(key) for key in ("Attribute", "Object") if key in value]
    return "type" not in value and bool(lists) and all(isinstance(v, list) for v in lists)


def _is_event_wrapper(value: Any) -> bool:
    return isinstance(value, dict) and isinstance(value.get("Event"), dict)


def misp_events(document: Any, path: Path) -> list[dict[str, Any]]:
    """Return the events of a MISP document, or raise FeedFormatError."""
    if isinstance(document, dict) and isinstance(document.get("Event"), dict):
        return [document["Event"]]
    if isinstance(document, dict) and isinstance(document.get("response"), list):
        return [wrapper["Event"] for wrapper in document["response"] if _is_event_wrapper(wrapper)]
    if isinstance(document, list):
        return [wrapper["Event"] for wrapper in document if _is_event_wrapper(wrapper)]
    if isinstance(document, dict) and _is_bare_event(document):
        return [document]
    raise FeedFormatError(
        path, 'not MISP: expected {"Event": ...}, {"response": [...]} or a list of events'
    )


def read_misp(path: Path, *, start: int = 0) -> Iterator[FeedItem]:
    """Yield the items of a MISP event file from record `start` on, streaming it.

    Raises:
        FeedFormatError: the file is not complete JSON or not MISP event JSON.
    """
    position = 0
    for event, attributes in _stream_events(path):
        for attribute, obj in attributes():
            if position >= start:
                context = _context(event, attribute, obj)
                yield from read_attribute(position, attribute, context)
            position += 1


_Attributes = Callable[[], Iterator[tuple[Any, dict[str, Any] | None]]]
_EVENT_FIELDS = ("uuid", "info", "Tag", "Galaxy")
_NOT_MISP = 'not MISP: expected {"Event": ...}, {"response": [...]} or a list of events'


def _stream_events(path: Path) -> Iterator[tuple[dict[str, Any], _Attributes]]:
    """Yield each event's own fields with a function that streams its attributes."""
    kind, keys = top_level(path, {"Event", "response"}, any_of=True)
    if kind == "dict" and keys.get("Event", ("",))[0] == "dict":
        yield _single_event(path, "Event")
    elif kind == "dict" and keys.get("response", ("",))[0] == "list":
        yield from _event_list(path, "response.item")
    elif kind == "list":
        yield from _event_list(path, "item")
    elif kind == "dict" and _is_bare_event_keys(keys):
        yield _single_event(path, "")
    else:
        raise FeedFormatError(path, _NOT_MISP)


def _is_bare_event_keys(keys: dict[str, tuple[str, Any]]) -> bool:
    lists = [keys[key][0] for key in ("Attribute", "Object") if key in keys]
    return "type" not in keys and bool(lists) and all(kind == "list" for kind in lists)


def _items(path: Path, prefix: str) -> Iterator[Any]:
    with open_json(path) as handle:
        try:
            yield from ijson.items(handle, prefix)
        except ijson.JSONError as exc:
            raise json_stream_error(path, exc) from exc


def _event_list(path: Path, prefix: str) -> Iterator[tuple[dict[str, Any], _Attributes]]:
    for _ in _items(path, prefix):
        pass  # first pass: the whole file parses, before anything of it is yielded
    for wrapper in _items(path, prefix):
        if _is_event_wrapper(wrapper):
            event = wrapper["Event"]
            yield event, lambda event=event: _attributes(event)


def _single_event(path: Path, prefix: str) -> tuple[dict[str, Any], _Attributes]:
    event = _event_fields(path, prefix)
    dot = f"{prefix}." if prefix else ""

    def attributes() -> Iterator[tuple[Any, dict[str, Any] | None]]:
        for attribute in _items(path, f"{dot}Attribute.item"):
            yield attribute, None
        for obj in _items(path, f"{dot}Object.item"):
            if isinstance(obj, dict):
                for attribute in _as_list(obj.get("Attribute")):
                    yield attribute, obj

    return event, attributes


def _event_fields(path: Path, prefix: str) -> dict[str, Any]:
    """Read an event's own small fields, skipping its attribute and object lists."""
    fields: dict[str, Any] = {}
    builder: ijson.ObjectBuilder | None = None
    key = ""
    with open_json(path) as handle:
        try:
            for where, event, value in ijson.parse(handle):
                if builder is None:
                    if where == prefix and event == "map_key" and value in _EVENT_FIELDS:
                        key, builder = value, ijson.ObjectBuilder()
                    continue
                builder.event(event, value)
                full = f"{prefix}.{key}" if prefix else key
                if where == full and event not in ("start_map", "start_array", "map_key"):
                    fields[key] = builder.value
                    builder = None
        except ijson.JSONError as exc:
            raise json_stream_error(path, exc) from exc
    return fields


def _attributes(event: dict[str, Any]) -> Iterator[tuple[Any, dict[str, Any] | None]]:
    for attribute in _as_list(event.get("Attribute")):
        yield attribute, None
    for obj in _as_list(event.get("Object")):
        if not isinstance(obj, dict):
            continue
        for attribute in _as_list(obj.get("Attribute")):
            yield attribute, obj


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _tag_names(holder: dict[str, Any]) -> list[str]:
    return [
        str(tag["name"])
        for tag in _as_list(holder.get("Tag"))
        if isinstance(tag, dict) and "name" in tag
    ]


def _galaxy_tags(event: dict[str, Any]) -> list[str]:
    names = []
    for galaxy in _as_list(event.get("Galaxy")):
        if not isinstance(galaxy, dict):
            continue
        for cluster in _as_list(galaxy.get("GalaxyCluster")):
            if isinstance(cluster, dict) and isinstance(cluster.get("tag_name"), str):
                names.append(cluster["tag_name"])
    return names


def _context(event: dict[str, Any], attribute: Any, obj: dict[str, Any] | None) -> dict[str, Any]:
    attribute = attribute if isinstance(attribute, dict) else {}
    tags = list(dict.fromkeys(_tag_names(event) + _galaxy_tags(event) + _tag_names(attribute)))
    context = new_context(
        misp_uuid=attribute.get("uuid"),
        misp_event_uuid=event.get("uuid"),
        event_info=event.get("info"),
        category=attribute.get("category"),
        to_ids=_to_bool(attribute.get("to_ids")),
        comment=attribute.get("comment") or None,
        tags=tags,
        tlp=tlp_from_tags(tags),
        first_seen=normalize_timestamp(attribute.get("first_seen")),
        last_seen=normalize_timestamp(attribute.get("last_seen")),
    )
    if obj is not None:
        context["object_name"] = obj.get("name")
        context["object_uuid"] = obj.get("uuid")
    return context


def _to_bool(value: Any) -> bool | None:
    if isinstance(value, bool):
        return value
    if isinstance(value, str | int):
        return str(value).strip().lower() in ("1", "true", "yes")
    return None


def read_attribute(position: int, attribute: Any, context: dict[str, Any]) -> Iterator[FeedItem]:
    """Yield the items of one MISP attribute (also used for STIX ``x-misp-attribute``).

    Args:
        position: the record's position.
        attribute: the attribute dict (``type``, ``value``, ``uuid`` ...).
        context: the record's context; composite parts that are not indicators are added to it.
    """
    if not isinstance(attribute, dict):
        reason = f"MISP attribute #{position} is not an object: {attribute!r:.120}"
        yield rejected_item(position, reason, context)
        return
    misp_type, value, uuid = attribute.get("type"), attribute.get("value"), attribute.get("uuid")
    context["misp_type"] = misp_type
    where = f"MISP attribute {uuid or '#' + str(position)}"
    if not isinstance(misp_type, str) or not isinstance(value, str):
        reason = f"{where}: needs string 'type' and 'value', got {misp_type!r} and {value!r:.80}"
        yield rejected_item(position, reason, context)
        return

    parts = _split_composite(misp_type, value)
    if parts is None:
        reason = f"{where}: composite type {misp_type!r} but value {value!r:.120} has no '|'"
        yield rejected_item(position, reason, context, raw_type=misp_type, raw_value=value)
        return
    indicator_parts = [(t, v) for t, v in parts if t in INDICATOR_TYPES]
    for part_type, part_value in parts:
        if part_type not in INDICATOR_TYPES:
            context[part_type.replace("-", "_")] = part_value
    if not indicator_parts:
        reason = f"{where}: type {misp_type!r} carries no indicator (value {value!r:.80})"
        yield skipped_item(position, reason, context, raw_type=misp_type, raw_value=value)
        return
    for part_type, part_value in indicator_parts:
        yield indicator_item(
            position,
            part_value,
            part_type,
            context,
            hint=INDICATOR_TYPES[part_type],
            where=f"{where} ({misp_type})",
        )


def _split_composite(misp_type: str, value: str) -> list[tuple[str, str]] | None:
    composite = _COMPOSITE_ALIASES.get(misp_type, misp_type)
    if "|" not in composite:
        return [(misp_type, value)]
    types = composite.split("|")
    values = value.split("|", len(types) - 1)
    if len(values) != len(types):
        return None
    return list(zip(types, values, strict=True))
