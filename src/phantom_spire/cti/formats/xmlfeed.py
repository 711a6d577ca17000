"""XML feeds, always parsed through defusedxml: OpenIOC 1.x, STIX 1.x, and generic XML.

defusedxml refuses DTD entity declarations and external references, so an entity-expansion
("billion laughs") or external-entity document is a FeedFormatError instead of a memory blow-up
or a file read. Documents are read with ``iterparse`` and each record element is cleared after
use, so memory stays bounded on large files.

Records:

* OpenIOC: each ``IndicatorItem``; its ``Context/@search`` (``FileItem/Md5sum``,
  ``Network/DNS``, ``PortItem/remoteIP`` ...) gives the type, ``Content`` the value.
* STIX 1.x: each ``Observable``; the values of its CybOX properties (``Address_Value``,
  ``Value``, ``Simple_Hash_Value``, ``File_Name``, ``Key``) are classified. An Observable that
  only refers to another (``idref``) is skipped.
* generic: an `XmlMapping` names the record element and the child elements holding values.
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from xml.etree.ElementTree import Element, ParseError

import defusedxml.ElementTree as safe_et
from defusedxml import DefusedXmlException

from phantom_spire.cti.errors import FeedFormatError
from phantom_spire.cti.formats.base import FeedItem, indicator_item, new_context, skipped_item

__all__ = ["XmlMapping", "read_xml", "xml_dialect"]

logger = logging.getLogger(__name__)

_OPENIOC_SEARCH_HINTS = {
    "md5sum": "md5",
    "sha1sum": "sha1",
    "sha256sum": "sha256",
    "filename": "filename",
    "fullpath": "filename",
    "filepath": "filename",
    "dns": "hostname",
    "host": "hostname",
    "hostname": "hostname",
    "remoteip": "ip",
    "localip": "ip",
    "ip": "ip",
    "uri": "url",
    "url": "url",
    "from": "email",
    "to": "email",
    "path": "regkey",
    "keypath": "regkey",
}
_STIX1_VALUE_TAGS = {
    "Address_Value",
    "Value",
    "Simple_Hash_Value",
    "File_Name",
    "Key",
    "Hash_Value",
}


@dataclass(frozen=True)
class XmlMapping:
    """Generic XML: which elements are records and which child elements hold values.

    Attributes:
        record: local name of the record element.
        values: local name of a descendant holding a value -> type label (None = classify).
    """

    record: str
    values: dict[str, str | None] = field(default_factory=dict)


def _local(tag: Any) -> str:
    return tag.rsplit("}", 1)[-1] if isinstance(tag, str) else ""


def _iterparse(path: Path) -> Iterator[tuple[str, Element]]:
    try:
        yield from safe_et.iterparse(str(path), events=("start", "end"), forbid_dtd=False)
    except DefusedXmlException as exc:
        raise FeedFormatError(
            path,
            f"XML refused: {type(exc).__name__} ({exc}); entity declarations and external references are not allowed",
        ) from exc
    except ParseError as exc:
        raise FeedFormatError(path, f"invalid XML: {exc}") from exc


def xml_dialect(path: Path) -> str:
    """Return ``"openioc"``, ``"stix1"``, ``"rss"`` or ``"xml"`` from the root element."""
    for _event, element in _iterparse(path):
        root, namespace = _local(element.tag), element.tag.partition("}")[0]
        if root == "ioc" or ("mandiant.com" in namespace and root in ("ioc", "OpenIOC")):
            return "openioc"
        if root in ("STIX_Package", "Observables") or "stix.mitre.org" in namespace:
            return "stix1"
        if root in ("rss", "feed", "RDF"):
            return "rss"
        return "xml"
    raise FeedFormatError(path, "empty XML document")


def read_xml(
    path: Path, *, start: int = 0, mapping: XmlMapping | None = None
) -> Iterator[FeedItem]:
    """Yield the items of an XML feed from record `start` on.

    Raises:
        FeedFormatError: invalid XML, a refused entity/DTD construct, or generic XML without a mapping.
    """
    dialect = "xml" if mapping else xml_dialect(path)
    if dialect == "openioc":
        return _read_records(path, start, "IndicatorItem", _openioc_item)
    if dialect == "stix1":
        return _read_records(path, start, "Observable", _stix1_observable)
    if mapping is None:
        raise FeedFormatError(
            path, "generic XML needs an XmlMapping (record element and value elements)"
        )
    return _read_records(path, start, mapping.record, lambda p, e: _mapped_record(p, e, mapping))


def _read_records(path: Path, start: int, record_tag: str, read: Any) -> Iterator[FeedItem]:
    position = -1
    depth = 0
    for event, element in _iterparse(path):
        if _local(element.tag) != record_tag:
            continue
        if event == "start":
            depth += 1
            continue
        depth -= 1
        position += 1
        if position >= start:
            yield from read(position, element)
        if depth == 0:
            element.clear()


def _openioc_item(position: int, element: Element) -> Iterator[FeedItem]:
    context_el = next((c for c in element if _local(c.tag) == "Context"), None)
    content_el = next((c for c in element if _local(c.tag) == "Content"), None)
    search = context_el.get("search", "") if context_el is not None else ""
    value = (content_el.text or "").strip() if content_el is not None else ""
    context = new_context(
        openioc_id=element.get("id"), openioc_search=search, condition=element.get("condition")
    )
    hint = _OPENIOC_SEARCH_HINTS.get(search.rsplit("/", 1)[-1].lower())
    if not value:
        yield skipped_item(
            position, f"IndicatorItem {element.get('id')}: empty Content", context, raw_type=search
        )
    elif hint is None:
        reason = f"IndicatorItem {element.get('id')}: search {search!r} is not an indicator type"
        yield skipped_item(position, reason, context, raw_type=search, raw_value=value)
    else:
        yield indicator_item(
            position, value, search, context, hint=hint, where=f"IndicatorItem {element.get('id')}"
        )


def _stix1_observable(position: int, element: Element) -> Iterator[FeedItem]:
    context = new_context(stix1_id=element.get("id") or element.get("idref"))
    values = [
        (_local(child.tag), child.text.strip())
        for child in element.iter()
        if _local(child.tag) in _STIX1_VALUE_TAGS and child.text and child.text.strip()
    ]
    if not values:
        reason = f"Observable {element.get('id') or element.get('idref')}: no indicator value"
        yield skipped_item(position, reason, context)
        return
    where = f"Observable {element.get('id') or element.get('idref')}"
    for tag, value in values:
        for part in _stix1_values(value):
            hint = "filename" if tag == "File_Name" else ""
            yield indicator_item(position, part, tag, context, hint=hint, where=f"{where} {tag}")


def _stix1_values(value: str) -> list[str]:
    """Split CybOX multi-values; an address range ``a##comma##b`` becomes its CIDR blocks."""
    parts = [part.strip() for part in value.split("##comma##")]
    if len(parts) == 2:
        try:
            first, last = ipaddress.ip_address(parts[0]), ipaddress.ip_address(parts[1])
            networks = ipaddress.summarize_address_range(first, last)  # type: ignore[type-var]
            return [str(network) for network in networks]
        except (ValueError, TypeError):
            pass
    return [part for part in parts if part]


def _mapped_record(position: int, element: Element, mapping: XmlMapping) -> Iterator[FeedItem]:
    context = new_context()
    found = False
    for child in element.iter():
        name = _local(child.tag)
        if name in mapping.values and child.text and child.text.strip():
            found = True
            hint = mapping.values[name]
            yield indicator_item(
                position,
                child.text.strip(),
                name,
                context,
                hint=hint or "",
                where=f"{mapping.record} #{position} {name}",
            )
    if not found:
        yield skipped_item(
            position, f"{mapping.record} #{position}: no value in {list(mapping.values)!r}", context
        )
