"""Plain-text feeds: one-indicator-per-line lists and free-text reports.

One record per non-blank, non-comment line (``#`` and ``;`` start comments, also after a value:
``1.4.0.0/17 ; SBL256893``). A line that is a single value is parsed as one indicator (a
``host/path`` without a scheme is read as a URL, as blocklists write them); any other line has
its indicators extracted from the text, refanging first. A line with no indicator is skipped.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

from phantom_spire.cti.errors import InvalidIndicator
from phantom_spire.cti.formats.base import (
    FeedItem,
    indicator_item,
    new_context,
    rejected_item,
    skipped_item,
)
from phantom_spire.cti.formats.csv import DEFAULT_MAX_RECORD_CHARS, bounded_lines
from phantom_spire.cti.indicators import extract, parse_indicator

__all__ = ["read_text"]

_INLINE_COMMENT = re.compile(r"\s+[#;].*$")
_SCHEMELESS_URL = re.compile(r"^[\w.-]+\.[A-Za-z]{2,63}(?::\d+)?/\S*$")


def read_text(
    path: Path, *, start: int = 0, max_record_chars: int = DEFAULT_MAX_RECORD_CHARS
) -> Iterator[FeedItem]:
    """Yield the items of a text feed from record (line) `start` on.

    Raises:
        FeedFormatError: the file is not UTF-8 text.
    """
    position = -1
    for line_no, line in _lines(path, max_record_chars):
        position += 1
        if position < start:
            continue
        context = new_context(line=line_no)
        if line is None:
            reason = f"line {line_no}: longer than {max_record_chars} characters, not read"
            yield rejected_item(position, reason, context)
            continue
        yield from _read_line(position, line_no, line, context)


def _read_line(
    position: int, line_no: int, line: str, context: dict[str, object]
) -> Iterator[FeedItem]:
    value = _INLINE_COMMENT.sub("", line).strip()
    if value and not any(c.isspace() for c in value):
        hint = "url" if _SCHEMELESS_URL.match(value) else None
        try:
            parse_indicator(value, hint)
        except InvalidIndicator:
            pass
        else:
            yield indicator_item(position, value, hint, context, where=f"line {line_no}")
            return
    found = extract(line)
    if not found:
        yield skipped_item(
            position,
            f"line {line_no}: no indicator in {line[:80]!r}",
            context,
            raw_value=line[:200],
        )
        return
    for indicator in found:
        yield FeedItem(position, "indicator", indicator, "text", indicator.value, None, context)


def _lines(path: Path, max_chars: int) -> Iterator[tuple[int, str | None]]:
    for line_no, line in bounded_lines(path, max_chars, newline=""):
        if line is None:
            yield line_no, None
            continue
        stripped = line.strip()
        if stripped and not stripped.startswith(("#", ";")):
            yield line_no, stripped
