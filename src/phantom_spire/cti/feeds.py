"""Read indicator feeds: detect a file's format and stream its records as FeedItems.

Public API::

    detect_format(path) -> str     # one of FORMATS
    read_feed(path, fmt=None, *, start=0) -> Iterator[FeedItem]
    FeedItem, FeedFormatError

Formats: ``stix`` (2.0/2.1 JSON), ``misp`` (event JSON), ``csv``, ``json`` (generic, mapped by
path), ``jsonl``, ``xml`` (STIX 1.x; generic XML with an XmlMapping), ``openioc``, ``rss``
(RSS/Atom) and ``text`` (lists and free text). Gzip-compressed files are decompressed on the fly
(nesting and size are capped, so a compression bomb is refused).

Fatal problems (the file cannot be read as the format at all) raise FeedFormatError naming the
file and the problem; a bad record inside a good file is yielded as a ``rejected`` item and
reading goes on.
"""

from __future__ import annotations

import gzip
import json
import logging
import tempfile
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path

import ijson

from phantom_spire.cti.errors import FeedFormatError
from phantom_spire.cti.formats import csv as csv_format
from phantom_spire.cti.formats import jsonfeed, misp, rss, stix, text, xmlfeed
from phantom_spire.cti.formats.base import FeedItem, load_json

__all__ = [
    "FORMATS",
    "MAX_DECOMPRESSED_BYTES",
    "MAX_GZIP_LAYERS",
    "FeedFormatError",
    "FeedItem",
    "detect_format",
    "read_feed",
]

logger = logging.getLogger(__name__)

_SNIFF_BYTES = 64 * 1024
# Up to this size a JSON document is parsed whole to tell its format (exact); above, from its
# first events, so detection never costs more memory than the streaming readers do.
_FULL_JSON_CHECK_BYTES = 4 * 1024 * 1024
_GZIP_MAGIC = b"\x1f\x8b"

MAX_GZIP_LAYERS = 2
"""A gzip inside a gzip is tolerated; deeper nesting is refused as a likely compression bomb."""
MAX_DECOMPRESSED_BYTES = 4 * 1024**3
"""Decompressed size above which a compressed feed is refused."""

_READERS: dict[str, Callable[..., Iterator[FeedItem]]] = {
    "stix": stix.read_stix,
    "misp": misp.read_misp,
    "csv": csv_format.read_csv,
    "json": jsonfeed.read_json,
    "jsonl": jsonfeed.read_jsonl,
    "xml": xmlfeed.read_xml,
    "openioc": xmlfeed.read_xml,
    "rss": rss.read_rss,
    "text": text.read_text,
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
        raise FeedFormatError(path, f"file is empty; expected a feed ({', '.join(FORMATS)})")
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


def _gunzip_head(path: Path) -> bytes:
    data = _head(path)
    layers = 0
    while data.startswith(_GZIP_MAGIC):
        layers += 1
        if layers > MAX_GZIP_LAYERS:
            raise FeedFormatError(
                path,
                f"more than {MAX_GZIP_LAYERS} nested gzip layers; refused as a likely compression bomb",
            )
        try:
            data = zlib.decompressobj(wbits=31).decompress(data, _SNIFF_BYTES)
        except zlib.error as exc:
            raise FeedFormatError(path, f"corrupt gzip data: {exc}") from exc
    return data


def _json_format(path: Path) -> str:
    if path.stat().st_size <= _FULL_JSON_CHECK_BYTES:
        document = load_json(path)
        if stix.is_stix(document):
            return "stix"
        if misp.is_misp(document):
            return "misp"
        if isinstance(document, dict | list):
            return "json"
        raise FeedFormatError(
            path, f"JSON is a bare {type(document).__name__}; expected an object or array"
        )
    return _json_format_streaming(path)


def _json_format_streaming(path: Path) -> str:
    # Large files: decide from the first events instead of loading the document.
    with path.open("rb") as handle:
        keys: list[str] = []
        try:
            for prefix, event, value in ijson.parse(handle):
                if event == "map_key" and prefix in ("", "item"):
                    keys.append(value)
                if prefix in ("type", "item.type") and value == "bundle":
                    return "stix"
                if prefix == "item.id" and isinstance(value, str) and "--" in value:
                    return "stix"
                if len(keys) > 50:
                    break
        except ijson.common.IncompleteJSONError as exc:
            raise FeedFormatError(path, f"truncated or invalid JSON: {exc}") from exc
    if "Event" in keys or "response" in keys:
        return "misp"
    if ("Attribute" in keys or "Object" in keys) and "type" not in keys:
        return "misp"  # a bare event, without its {"Event": ...} wrapper
    return "json"


def _is_json_lines(text: str) -> bool:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if len(lines) < 2 or not lines[1].startswith("{"):
        return False
    try:
        return isinstance(json.loads(lines[0]), dict)
    except json.JSONDecodeError:
        return False


def detect_format(path: Path) -> str:
    """Return the format of a feed file, one of `FORMATS`.

    JSON documents are told apart by their shape (STIX bundle or object array, MISP ``Event`` /
    ``response``, anything else generic JSON); JSON Lines by one object per line; XML by its
    root element; other text is CSV when its rows split into the same columns, else text.
    A gzip-compressed file is detected by what it decompresses to.

    Raises:
        FeedFormatError: the file is unreadable, empty, binary, not UTF-8, truncated or invalid
            JSON/XML, or nested compression.
    """
    path = Path(path)
    head = _head(path)
    if head.startswith(_GZIP_MAGIC):
        with _decompressed(path) as plain:
            return detect_format(plain)
    sample = _check_text(path, head).lstrip()
    if sample.startswith("{") and _is_json_lines(sample):
        return "jsonl"
    if sample.startswith(("{", "[")):
        return _json_format(path)
    if sample.startswith("<"):
        dialect = xmlfeed.xml_dialect(path)
        return {"stix1": "xml"}.get(dialect, dialect)
    return "csv" if csv_format.looks_tabular(path) else "text"


class _decompressed:
    """Decompress a gzip file (and at most MAX_GZIP_LAYERS - 1 inner layers) into a temp file."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.tmp: tempfile.TemporaryDirectory[str] | None = None

    def __enter__(self) -> Path:
        self.tmp = tempfile.TemporaryDirectory(prefix="spire-feed-")
        try:
            return self._unwrap(Path(self.tmp.name))
        except BaseException:
            # __exit__ does not run when __enter__ raises; clean up here.
            self.tmp.cleanup()
            raise

    def _unwrap(self, folder: Path) -> Path:
        current = self.path
        for layer in range(1, MAX_GZIP_LAYERS + 2):
            if not _head(current).startswith(_GZIP_MAGIC):
                return current
            if layer > MAX_GZIP_LAYERS:
                break
            target = folder / f"layer{layer}"
            _gunzip(self.path, current, target)
            current = target
        raise FeedFormatError(
            self.path,
            f"more than {MAX_GZIP_LAYERS} nested gzip layers; refused as a likely compression bomb",
        )

    def __exit__(self, *exc: object) -> None:
        if self.tmp is not None:
            self.tmp.cleanup()


def _gunzip(original: Path, source: Path, target: Path) -> None:
    written = 0
    try:
        with gzip.open(source, "rb") as compressed, target.open("wb") as plain:
            while chunk := compressed.read(1 << 20):
                written += len(chunk)
                if written > MAX_DECOMPRESSED_BYTES:
                    raise FeedFormatError(
                        original,
                        f"decompresses to more than {MAX_DECOMPRESSED_BYTES} bytes; refused",
                    )
                plain.write(chunk)
    except (OSError, EOFError, zlib.error) as exc:
        raise FeedFormatError(original, f"corrupt gzip data: {exc}") from exc


def read_feed(path: Path, fmt: str | None = None, *, start: int = 0) -> Iterator[FeedItem]:
    """Stream the items of a feed in file order.

    Args:
        path: the feed file (possibly gzip-compressed).
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
    if _head(path).startswith(_GZIP_MAGIC):
        with _decompressed(path) as plain:
            yield from _read(plain, fmt, start)
        return
    if fmt is None:
        fmt = detect_format(path)
    else:
        _check_text(path, _head(path))
    logger.debug("reading %s feed %s from record %d", fmt, path, start)
    yield from _READERS[fmt](path, start=start)
