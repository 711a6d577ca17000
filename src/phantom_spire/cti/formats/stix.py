"""STIX 2.0 / 2.1 JSON: bundles, bare arrays of objects, or a single object.

One record per STIX object, in file order. What becomes an indicator:

* ``indicator`` objects whose pattern (pattern_type ``stix`` or absent, as in 2.0) is a single
  comparison ``[type:path = 'value']`` or an OR of such comparisons (inside one observation or
  across observations): one item per comparison. Any other pattern (AND, qualifiers, operators
  other than ``=``, object paths that are not an indicator type) is ``skipped`` with the
  pattern in the context, so nothing is silently half-read.
* cyber-observable objects (SCOs): ipv4-addr, ipv6-addr, domain-name, url, email-addr,
  mac-addr, windows-registry-key, autonomous-system, and file/artifact hashes (a file's name is
  kept in the context; it only becomes a ``filename`` indicator when the file has no hash).
* STIX 2.0 ``observed-data`` with embedded ``objects``: the SCOs inside it.
* MISP's custom ``x-misp-attribute`` objects: read like a MISP attribute.

Everything else (SDOs, SROs, marking definitions, custom objects) is ``skipped``.

The objects are read as plain JSON rather than through ``stix2.parse``: that parser rejects
whole bundles for custom properties and missing spec_version that real feeds have (see the
shared corpus), and we only need a handful of properties.

The file is streamed with ijson (one object in memory at a time) in two passes. The first
builds a small index of what objects refer to: TLP marking definitions, the names of named
objects (identities, malware, threat actors, intrusion sets, campaigns, tools, attack
patterns, vulnerabilities) and the relationships between those and indicators or observables.
The second yields the items, so a reference to an object that comes later in the file (a
marking defined at the end, an ``indicates`` relationship after its indicator) is resolved
instead of lost: the context gets ``created_by`` and ``related``
(``[{"relationship", "type", "name", "id"}]``). The index grows with the number of those
objects and relationships, not with the rest of the file.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import ijson

from phantom_spire.cti.errors import FeedFormatError
from phantom_spire.cti.formats import misp
from phantom_spire.cti.formats.base import (
    FeedItem,
    indicator_item,
    json_stream_error,
    load_json,
    new_context,
    open_json,
    rejected_item,
    skipped_item,
    top_level,
)
from phantom_spire.cti.timestamps import normalize_timestamp

__all__ = ["is_stix", "read_stix", "stix_objects"]

logger = logging.getLogger(__name__)

_TLP_MARKINGS = {
    "marking-definition--613f2e26-407d-48c7-9eca-b8e91df99dc9": "white",
    "marking-definition--34098fce-860f-48ae-8e50-ebd3cc5e41da": "green",
    "marking-definition--f88d31f6-486f-44da-b317-01333bde0b82": "amber",
    "marking-definition--5e57c739-391a-4eb3-b6be-7d15ca92d5ed": "red",
}

_VALUE_SCOS = {"ipv4-addr", "ipv6-addr", "domain-name", "url", "email-addr", "mac-addr"}
_HASH_NAMES = {
    "MD5": "md5",
    "SHA1": "sha1",
    "SHA256": "sha256",
    "SHA512": "sha512",
    "SSDEEP": "ssdeep",
}

_PATH = r"[a-z0-9_-]+(?:\.(?:[a-z0-9_-]+|'[^']*')|\[(?:\d+|\*)\])*"
_CMP = rf"[a-z0-9][a-z0-9-]*:{_PATH}\s*=\s*'(?:[^'\\]|\\.)*'"
_OBSERVATION = rf"\[\s*{_CMP}(?:\s+OR\s+{_CMP})*\s*\]"
_SIMPLE_PATTERN = re.compile(rf"^\s*{_OBSERVATION}(?:\s+OR\s+{_OBSERVATION})*\s*$", re.IGNORECASE)
_COMPARISON = re.compile(
    rf"(?P<object>[a-z0-9][a-z0-9-]*):(?P<path>{_PATH})\s*=\s*'(?P<value>(?:[^'\\]|\\.)*)'",
    re.IGNORECASE,
)
_UNESCAPE = re.compile(r"\\(.)")


def is_stix(document: Any) -> bool:
    """Tell whether a parsed JSON document looks like STIX 2 (bundle, object array or object)."""
    if isinstance(document, dict):
        if document.get("type") == "bundle":
            return True
        return _looks_like_stix_object(document)
    if isinstance(document, list) and document:
        return _looks_like_stix_object(document[0])
    return False


def _looks_like_stix_object(obj: Any) -> bool:
    return (
        isinstance(obj, dict)
        and isinstance(obj.get("type"), str)
        and isinstance(obj.get("id"), str)
        and obj["id"].startswith(f"{obj['type']}--")
    )


def stix_objects(document: Any, path: Path) -> list[Any]:
    """Return the list of objects of a STIX document, or raise FeedFormatError."""
    if isinstance(document, dict) and document.get("type") == "bundle":
        objects = document.get("objects", [])
        if not isinstance(objects, list):
            raise FeedFormatError(
                path, f"bundle 'objects' is {type(objects).__name__}, expected a list"
            )
        return objects
    if isinstance(document, list):
        return document
    if _looks_like_stix_object(document):
        return [document]
    raise FeedFormatError(path, "not STIX 2: expected a bundle, an array of objects or an object")


def read_stix(path: Path, *, start: int = 0) -> Iterator[FeedItem]:
    """Yield the items of a STIX 2 file from record `start` on, streaming it twice.

    The first pass indexes references (see the module docstring) and reads the whole file,
    so a truncated or invalid file is refused before any item is yielded.

    Raises:
        FeedFormatError: the file is not complete JSON or not STIX.
    """
    index = _Index()
    for obj in stream_objects(path):
        index.add(obj)
    for position, obj in enumerate(stream_objects(path)):
        if position >= start:
            yield from _read_object(position, obj, index)


def stream_objects(path: Path) -> Iterator[Any]:
    """Yield the objects of a STIX document one at a time, without loading the file.

    Raises:
        FeedFormatError: the JSON is invalid or truncated, or the document is not STIX 2.
    """
    kind, keys = top_level(path, {"type", "objects"})
    if kind == "list":
        prefix = "item"
    elif kind == "dict" and keys.get("type") == ("str", "bundle"):
        objects = keys.get("objects")
        if objects is None:
            return
        if objects[0] != "list":
            raise FeedFormatError(path, f"bundle 'objects' is {objects[0]}, expected a list")
        prefix = "objects.item"
    else:
        # A single object is small: read it whole.
        yield from stix_objects(load_json(path), path)
        return
    with open_json(path) as handle:
        count = 0
        try:
            for obj in ijson.items(handle, prefix):
                count += 1
                yield obj
        except ijson.JSONError as exc:
            raise json_stream_error(path, exc, f"after object {count}") from exc


_NAMED_TYPES = {
    "identity",
    "malware",
    "threat-actor",
    "intrusion-set",
    "campaign",
    "tool",
    "attack-pattern",
    "vulnerability",
}


def _type_of(ref: Any) -> str | None:
    return ref.partition("--")[0] if isinstance(ref, str) and "--" in ref else None


@dataclass
class _Index:
    """What the first pass learns about references: markings, names, relationships."""

    tlp: dict[str, str] = field(default_factory=lambda: dict(_TLP_MARKINGS))
    names: dict[str, str] = field(default_factory=dict)
    related: dict[str, list[tuple[str, str]]] = field(default_factory=dict)

    def add(self, obj: Any) -> None:
        if not isinstance(obj, dict):
            return
        kind = obj.get("type")
        if kind == "marking-definition":
            tlp = _marking_tlp(obj)
            if tlp is not None:
                self.tlp[str(obj.get("id"))] = tlp
        elif kind in _NAMED_TYPES and isinstance(obj.get("name"), str):
            self.names[str(obj.get("id"))] = obj["name"]
        elif kind == "relationship":
            self._add_relationship(obj)

    def _add_relationship(self, obj: dict[str, Any]) -> None:
        source, target = obj.get("source_ref"), obj.get("target_ref")
        relationship = str(obj.get("relationship_type") or "related-to")
        # Only links between an indicator-bearing object and a named one: those are what an
        # analyst reads on an indicator ("indicates malware X"); the rest would only cost memory.
        if _type_of(target) in _NAMED_TYPES and _type_of(source) not in _NAMED_TYPES:
            self.related.setdefault(str(source), []).append((relationship, str(target)))
        elif _type_of(source) in _NAMED_TYPES and _type_of(target) not in _NAMED_TYPES:
            self.related.setdefault(str(target), []).append((relationship, str(source)))

    def related_to(self, stix_id: Any) -> list[dict[str, Any]]:
        return [
            {"relationship": rel, "type": _type_of(ref), "name": self.names.get(ref), "id": ref}
            for rel, ref in self.related.get(str(stix_id), ())
        ]


def _marking_tlp(obj: dict[str, Any]) -> str | None:
    definition = obj.get("definition")
    if isinstance(definition, dict) and isinstance(definition.get("tlp"), str):
        return definition["tlp"].lower()
    if isinstance(obj.get("name"), str) and obj["name"].upper().startswith("TLP:"):
        return obj["name"][4:].strip().lower()
    return None


def _context(obj: dict[str, Any], index: _Index) -> dict[str, Any]:
    labels = [str(label) for label in obj.get("labels", []) if isinstance(label, str)]
    labels += [str(t) for t in obj.get("indicator_types", []) if isinstance(t, str)]
    refs = obj.get("object_marking_refs", [])
    tlp = next((index.tlp[r] for r in refs if isinstance(r, str) and r in index.tlp), None)
    confidence = obj.get("confidence")
    # Timestamps are normalised to UTC microseconds (BUG-STX-01); the original strings are kept
    # for faithful re-export.
    raw_timestamps = {
        key: obj[key]
        for key in (
            "created",
            "modified",
            "valid_from",
            "valid_until",
            "first_observed",
            "last_observed",
        )
        if isinstance(obj.get(key), str)
    }
    return new_context(
        stix_id=obj.get("id"),
        stix_type=obj.get("type"),
        spec_version=obj.get("spec_version"),
        name=obj.get("name") if isinstance(obj.get("name"), str) else None,
        created_by_ref=obj.get("created_by_ref"),
        tags=labels,
        confidence=confidence if isinstance(confidence, int) else None,
        tlp=tlp,
        first_seen=normalize_timestamp(obj.get("valid_from") or obj.get("first_observed")),
        # valid_until is when the indicator stops being valid (often ahead of today), not a
        # sighting: keep it apart so it is not mistaken for a last-seen time in the future.
        last_seen=normalize_timestamp(obj.get("last_observed")),
        valid_until=normalize_timestamp(obj.get("valid_until")),
        created=normalize_timestamp(obj.get("created")),
        modified=normalize_timestamp(obj.get("modified")),
        raw_timestamps=raw_timestamps,
        created_by=index.names.get(str(obj.get("created_by_ref"))),
        related=index.related_to(obj.get("id")),
    )


def _read_object(position: int, obj: Any, index: _Index) -> Iterator[FeedItem]:
    if not isinstance(obj, dict) or not isinstance(obj.get("type"), str):
        reason = f"STIX object #{position} is not an object with a 'type' property: {obj!r:.120}"
        yield rejected_item(position, reason, new_context())
        return
    context = _context(obj, index)
    stix_type = obj["type"]
    if stix_type == "indicator":
        yield from _read_indicator(position, obj, context)
    elif stix_type == "observed-data" and isinstance(obj.get("objects"), dict):
        yield from _read_observed_data(position, obj, context)
    elif stix_type == "x-misp-attribute":
        yield from _read_misp_attribute(position, obj, context)
    else:
        values = list(_sco_values(obj, context))
        if not values:
            reason = f"{obj.get('id', stix_type)}: STIX {stix_type!r} carries no indicator value"
            yield skipped_item(position, reason, context, raw_type=stix_type)
            return
        for raw_type, hint, value in values:
            yield indicator_item(
                position, value, raw_type, context, hint=hint, where=str(obj.get("id"))
            )


def _sco_values(obj: dict[str, Any], context: dict[str, Any]) -> Iterator[tuple[str, str, Any]]:
    """Yield (raw_type, hint, value) for each indicator value a cyber-observable holds."""
    sco_type = obj.get("type")
    if sco_type in _VALUE_SCOS and "value" in obj:
        yield f"{sco_type}:value", str(sco_type), obj["value"]
    elif sco_type == "windows-registry-key" and "key" in obj:
        yield "windows-registry-key:key", "windows-registry-key", obj["key"]
    elif sco_type == "autonomous-system" and "number" in obj:
        yield "autonomous-system:number", "autonomous-system", str(obj["number"])
    elif sco_type in ("file", "artifact"):
        hashes = obj.get("hashes") if isinstance(obj.get("hashes"), dict) else {}
        found = False
        for name, value in hashes.items():
            kind = _HASH_NAMES.get(str(name).upper().replace("-", ""))
            if kind is not None:
                found = True
                yield f"{sco_type}:hashes.{name}", kind, value
        if isinstance(obj.get("name"), str):
            context["file_name"] = obj["name"]
            if not found and sco_type == "file":
                yield "file:name", "filename", obj["name"]


def _read_observed_data(
    position: int, obj: dict[str, Any], context: dict[str, Any]
) -> Iterator[FeedItem]:
    found = False
    for key, sco in obj["objects"].items():
        if not isinstance(sco, dict):
            continue
        for raw_type, hint, value in _sco_values(sco, context):
            found = True
            where = f"{obj.get('id')} objects[{key!r}]"
            yield indicator_item(position, value, raw_type, context, hint=hint, where=where)
    if not found:
        reason = f"{obj.get('id')}: observed-data holds no indicator value"
        yield skipped_item(position, reason, context, raw_type="observed-data")


def _read_misp_attribute(
    position: int, obj: dict[str, Any], context: dict[str, Any]
) -> Iterator[FeedItem]:
    attribute = {
        "type": obj.get("x_misp_type"),
        "value": obj.get("x_misp_value"),
        "category": obj.get("x_misp_category"),
        "comment": obj.get("x_misp_comment"),
        "uuid": obj.get("id"),
    }
    yield from misp.read_attribute(position, attribute, context)


def _hint_for_path(object_type: str, path: str) -> str | None:
    """Return the hint for an object path, or None when the path is not an indicator."""
    object_type, path = object_type.lower(), path.replace("'", "")
    if path == "value" and object_type in _VALUE_SCOS:
        return object_type
    if path.lower().startswith("hashes.") and object_type in ("file", "artifact"):
        return _HASH_NAMES.get(path[7:].upper().replace("-", ""))
    simple = {
        ("file", "name"): "filename",
        ("windows-registry-key", "key"): "windows-registry-key",
        ("autonomous-system", "number"): "autonomous-system",
    }
    if (object_type, path) in simple:
        return simple[(object_type, path)]
    if object_type == "email-message" and path.endswith(".value"):
        return "email-addr"
    if object_type == "network-traffic" and path in ("src_ref.value", "dst_ref.value"):
        return "host"
    return None


def _read_indicator(
    position: int, obj: dict[str, Any], context: dict[str, Any]
) -> Iterator[FeedItem]:
    pattern = obj.get("pattern")
    pattern_type = obj.get("pattern_type", "stix")
    context["pattern"] = pattern
    stix_id = obj.get("id")
    if pattern_type != "stix":
        reason = f"{stix_id}: pattern_type {pattern_type!r} is not supported; expected 'stix'"
        yield skipped_item(position, reason, context, raw_type="indicator", raw_value=pattern)
        return
    if not isinstance(pattern, str) or not _SIMPLE_PATTERN.match(pattern):
        if not isinstance(pattern, str):
            reason = f"{stix_id}: indicator has no pattern string (got {pattern!r:.80})"
            yield rejected_item(position, reason, context, raw_type="indicator")
            return
        reason = f"{stix_id}: pattern not a simple comparison: {pattern!r:.200}"
        yield skipped_item(position, reason, context, raw_type="indicator", raw_value=pattern)
        return
    for match in _COMPARISON.finditer(pattern):
        object_type, object_path = match.group("object"), match.group("path")
        value = _UNESCAPE.sub(r"\1", match.group("value"))
        raw_type = f"{object_type}:{object_path}"
        hint = _hint_for_path(object_type, object_path)
        if hint is None:
            reason = f"{stix_id}: object path {raw_type!r} is not an indicator type"
            yield skipped_item(position, reason, context, raw_type=raw_type, raw_value=value)
            continue
        yield indicator_item(
            position, value, raw_type, context, hint=hint, where=f"{stix_id} pattern"
        )
