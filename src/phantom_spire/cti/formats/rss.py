"""RSS and Atom feeds, read with feedparser from the local file (never fetched).

One record per entry; indicators are extracted (with refanging) from the title, summary and
content, with HTML tags removed and entities unescaped first. The document is checked with
defusedxml before feedparser sees it, so entity-expansion documents are refused.
"""

from __future__ import annotations

import html
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import feedparser

from phantom_spire.cti.formats.base import FeedItem, new_context, skipped_item
from phantom_spire.cti.formats.xmlfeed import xml_dialect
from phantom_spire.cti.indicators import extract
from phantom_spire.cti.timestamps import InvalidTimestamp, format_utc, parse_timestamp

__all__ = ["read_rss"]

_TAG = re.compile(r"<[^>]+>")


def _plain(text: str) -> str:
    return html.unescape(_TAG.sub(" ", text))


def _published(entry: Any) -> str | None:
    for key in ("published", "updated", "created"):
        raw = entry.get(key)
        if isinstance(raw, str):
            try:
                return format_utc(parse_timestamp(raw), fraction=False)
            except InvalidTimestamp:
                continue
    return None


def read_rss(path: Path, *, start: int = 0) -> Iterator[FeedItem]:
    """Yield the items of an RSS/Atom feed from entry `start` on.

    Raises:
        FeedFormatError: invalid XML or a refused entity construct.
    """
    xml_dialect(path)  # defusedxml pass: refuses entity bombs before feedparser parses
    parsed = feedparser.parse(path.read_bytes())
    for position, entry in enumerate(parsed.entries):
        if position < start:
            continue
        parts = [entry.get("title", ""), entry.get("summary", "")]
        parts += [content.get("value", "") for content in entry.get("content", [])]
        tags = [tag.get("term") for tag in entry.get("tags", []) if tag.get("term")]
        context = new_context(
            title=entry.get("title"),
            link=entry.get("link"),
            tags=tags,
            first_seen=_published(entry),
        )
        found = extract("\n".join(_plain(part) for part in parts if part))
        if not found:
            yield skipped_item(
                position, f"entry {entry.get('title', position)!r}: no indicator", context
            )
            continue
        for indicator in found:
            yield FeedItem(position, "indicator", indicator, "rss", indicator.value, None, context)
