"""Read indicator feeds: detect a file's format and stream its records as FeedItems.

Public API::

    detect_format(path) -> str                    # "stix" | "misp" | "csv"
    read_feed(path, fmt=None, *, start=0) -> Iterator[FeedItem]
    FeedItem, FeedFormatError

Fatal problems (the file cannot be read as the format at all) raise FeedFormatError naming the
file and the problem; a bad record inside a good file is yielded as a ``rejected`` item and
reading goes on.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator
from pathlib import Path

from phantom_spire.cti.errors import FeedFormatError
from phantom_spire.cti.formats import csv as csv_format
from phantom_spire.cti.formats import misp, stix
from phantom_spire.cti.formats.base import FeedItem, load_json

__all__ = ["FORMATS", "FeedFormatError", "FeedItem", "detect_format", "read_feed"]

logger = logging.getLogger(__name__)

_SNIFF_BYTES = 64 * 1024

_READERS: dict[str, Callable[..., Iterator[FeedItem]]] = {
    "stix": stix.read_stix,
    "misp": misp.read_misp,
    "csv": csv_format.read_csv,
}
FORMATS: tuple[str, ...] = tuple(_READERS)


def _head(path: Path) -> bytes:
    try:
        with path.open("rb") as handle:
            return handle.read(_SNIFF_BYTES)
    except OSError as exc:
        raise FeedFormatError(path, f"cannot read file: {exc.strerror or exc}") from exc


def _check_text(path: Path, head: bytes) -> str:
    if not head.strip():
        raise FeedFormatError(path, "file is empty; expected a feed (STIX, MISP or CSV)")
    if b"\x00" in head:
        offset = head.index(b"\x00")
        raise FeedFormatError(
            path, f"binary data (NUL byte at offset {offset}); expected a text feed"
        )
    try:
        return head.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        # The sample may end inside a multi-byte character; only earlier errors count.
        if exc.start >= len(head) - 3 and exc.reason == "unexpected end of data":
            return head[: exc.start].decode("utf-8-sig")
        raise FeedFormatError(
            path,
            f"not UTF-8 text (byte {head[exc.start]:#04x} at offset {exc.start}); "
            "expected a text feed",
        ) from exc


def detect_format(path: Path) -> str:
    """Return the format of a feed file: ``"stix"``, ``"misp"`` or ``"csv"``.

    JSON documents are told apart by their shape (a STIX bundle or object array, a MISP
    ``Event``/``response``); other text is read as CSV.

    Args:
        path: the feed file.

    Raises:
        FeedFormatError: the file is unreadable, empty, binary, not UTF-8, truncated or invalid
            JSON, or JSON that is neither STIX nor MISP.
    """
    path = Path(path)
    text = _check_text(path, _head(path)).lstrip()
    if text.startswith(("{", "[")):
        document = load_json(path)
        if stix.is_stix(document):
            return "stix"
        if misp.is_misp(document):
            return "misp"
        raise FeedFormatError(path, f"JSON is neither STIX 2 nor MISP: {_describe(document)}")
    if text.startswith("<"):
        raise FeedFormatError(path, "XML feeds are not supported yet; expected STIX, MISP or CSV")
    return "csv"


def _describe(document: object) -> str:
    if isinstance(document, dict):
        keys = list(document)[:8]
        return f"an object with keys {keys!r} (expected 'type': 'bundle', 'Event' or 'response')"
    if isinstance(document, list):
        first = json.dumps(document[0])[:80] if document else "nothing"
        return f"an array whose first item is {first} (expected STIX objects or MISP events)"
    return f"a bare {type(document).__name__} (expected an object or array)"


def read_feed(path: Path, fmt: str | None = None, *, start: int = 0) -> Iterator[FeedItem]:
    """Stream the items of a feed in file order.

    Args:
        path: the feed file.
        fmt: one of `FORMATS`; detected when None.
        start: skip the first `start` records (position-based resume). Items of one record
            share its position, so resume with ``start = last fully handled position + 1``.

    Raises:
        FeedFormatError: the file cannot be read as the format (raised when iteration starts).
        ValueError: `fmt` is not a known format or `start` is negative.
    """
    if fmt is not None and fmt not in _READERS:
        raise ValueError(f"unknown feed format {fmt!r}; expected one of {FORMATS}")
    if start < 0:
        raise ValueError(f"start must be >= 0, got {start!r}")
    return _read(Path(path), fmt, start)


def _read(path: Path, fmt: str | None, start: int) -> Iterator[FeedItem]:
    if fmt is None:
        fmt = detect_format(path)
    else:
        _check_text(path, _head(path))
    logger.debug("reading %s feed %s from record %d", fmt, path, start)
    yield from _READERS[fmt](path, start=start)
