"""CSV / TSV indicator feeds.

Handles what real feeds do: a UTF-8 BOM, ``#`` and ``;`` comment lines (also a commented-out
column header, as abuse.ch writes it), quoted fields spanning lines, spaces after delimiters,
and the delimiter sniffed among comma, tab, semicolon and pipe.

Which columns hold indicators is decided from the header:

* a generic column (``indicator``, ``ioc``, ``value``, ``observable`` ...), typed by a ``type``
  column when there is one (``Type,Indicator`` layouts), else classified value by value;
* columns named after a type (``md5``, ``sha256``, ``url``, ``domain``, ``host``, ``ip``,
  ``IP address(es)``, ``ASN(s)``, ``filename``, ``Remote Template Hash`` ...; the last word of a
  header decides), each validated against that type.

Without a recognisable header, columns whose first values classify as indicators are used. A
file with no indicator column is a FeedFormatError. One record per data row; each indicator
cell yields one item (cells with several values separated by newlines, or ``|`` for types that
cannot contain one, yield one item per value). Columns that are not indicators go into the
context under ``fields``.
"""

from __future__ import annotations

import csv
import functools
import io
import logging
import re
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from phantom_spire.cti.errors import FeedFormatError
from phantom_spire.cti.formats.base import (
    FeedItem,
    indicator_item,
    new_context,
    rejected_item,
    skipped_item,
)
from phantom_spire.cti.indicators import classify, hint_types
from phantom_spire.cti.timestamps import normalize_timestamp

__all__ = [
    "DEFAULT_MAX_RECORD_CHARS",
    "GENERIC_COLUMNS",
    "TYPE_COLUMNS",
    "column_hint",
    "detect_layout",
    "discard_rest_of_line",
    "read_csv",
]

logger = logging.getLogger(__name__)

DEFAULT_MAX_RECORD_CHARS = 1 << 20
"""A record (one row, possibly over several lines) longer than this is rejected unread."""

_DELIMITERS = (",", "\t", ";", "|")
_SNIFF_RECORDS = 50
_COMMENT_STARTS = ("#", ";")
_FIELD_CONTEXT_LIMIT = 1000

GENERIC_COLUMNS = {
    "indicator",
    "indicators",
    "indicator value",
    "ioc",
    "iocs",
    "ioc value",
    "value",
    "observable",
    "observable value",
    "artifact",
    "artefact",
}
TYPE_COLUMNS = {"type", "indicator type", "ioc type", "observable type", "attribute type", "kind"}
_COLUMN_HINTS = {
    "md5": "md5",
    "sha1": "sha1",
    "sha 1": "sha1",
    "sha256": "sha256",
    "sha 256": "sha256",
    "sha512": "sha512",
    "sha 512": "sha512",
    "ssdeep": "ssdeep",
    "hash": "hash",
    "hashes": "hash",
    "filehash": "hash",
    "url": "url",
    "urls": "url",
    "domain": "domain",
    "domains": "domain",
    "domain name": "domain",
    "fqdn": "domain",
    "hostname": "hostname",
    "host": "hostname",
    "ip": "ip",
    "ips": "ip",
    "ip address": "ip",
    "ip addresses": "ip",
    "ip address es": "ip",
    "ipaddress": "ip",
    "ip dst": "ip",
    "ip src": "ip",
    "ipv4": "ipv4",
    "ipv6": "ipv6",
    "email": "email",
    "e mail": "email",
    "email address": "email",
    "filename": "filename",
    "file name": "filename",
    "filenames": "filename",
    "cve": "cve",
    "cves": "cve",
    "cve id": "cve",
    "asn": "asn",
    "asns": "asn",
    "asn s": "asn",
    "as number": "asn",
    "asnumber": "asn",
    "mac": "mac",
    "mac address": "mac",
    "registry key": "regkey",
    "regkey": "regkey",
    "bitcoin": "btc",
    "bitcoin address": "btc",
    "btc": "btc",
    "cidr": "cidr",
    "bgp prefix": "cidr",
    "technique id": "attack_technique",
}
_NO_PIPE_SPLIT = {"url", "filename", "registry_key"}
_TAG_COLUMNS = {"tags", "tag", "threat", "malware", "malware family", "family", "threat type"}


@dataclass(frozen=True)
class _Column:
    index: int
    name: str
    hint: str | None  # None: classify each value
    generic: bool = False


@dataclass(frozen=True)
class _Layout:
    delimiter: str
    header: list[str] | None
    header_is_row: bool  # the header is the first data row (not a comment line)
    columns: list[_Column]
    type_column: int | None


@functools.lru_cache(maxsize=1024)
def _normalize_header(name: str) -> str:
    # Cached: it runs for every cell of every row, with the same few header names.
    return re.sub(r"[^a-z0-9]+", " ", name.lower()).strip()


def column_hint(name: str) -> str | None:
    """Return the type label a column (or JSON field) name stands for, or None."""
    header = _normalize_header(name)
    words = header.split()
    for candidate in (header, " ".join(words[-2:]), words[-1] if words else ""):
        if candidate in _COLUMN_HINTS:
            return _COLUMN_HINTS[candidate]
    return None


def _quote_state(line: str, in_quote: bool, delimiter: str | None) -> bool:
    """Return whether a quoted field is still open at the end of `line`.

    A quote only opens a field at the field's start (as Python's csv reads it), so a stray
    inch mark inside an unquoted field does not swallow the following lines.
    """
    if not in_quote and '"' not in line:
        return False
    at_field_start = not in_quote
    i, length = 0, len(line)
    while i < length:
        char = line[i]
        if in_quote:
            if char == '"':
                if i + 1 < length and line[i + 1] == '"':
                    i += 1
                else:
                    in_quote = False
        elif char == '"' and at_field_start:
            in_quote = True
        elif char not in " \t" or char == delimiter:
            at_field_start = char == delimiter or (delimiter is None and char in _DELIMITERS)
        i += 1
    return in_quote


@dataclass
class _RawRecord:
    line: int
    kind: str  # "comment" | "data" | "oversize"
    text: str


def _raw_records(
    handle: TextIO, delimiter: str | None, max_chars: int, path: Path
) -> Iterator[_RawRecord]:
    """Split a text stream into comment lines and data records (quoted newlines kept)."""
    line_no, start_line = 0, 0
    pending: list[str] = []
    pending_chars, in_quote = 0, False
    while True:
        try:
            line = handle.readline(max_chars + 1)
        except UnicodeDecodeError as exc:
            raise FeedFormatError(
                path,
                f"not UTF-8 text after line {line_no}: {exc.reason} ({exc.object[exc.start : exc.start + 4]!r})",
            ) from exc
        if not line:
            break
        line_no += 1
        if len(line) > max_chars and not line.endswith("\n"):
            discard_rest_of_line(handle)
            yield _RawRecord(start_line if pending else line_no, "oversize", "")
            pending, pending_chars, in_quote = [], 0, False
            continue
        if not pending:
            stripped = line.strip()
            if not stripped:
                continue
            if stripped.startswith(_COMMENT_STARTS):
                yield _RawRecord(line_no, "comment", stripped)
                continue
            start_line = line_no
        pending.append(line)
        pending_chars += len(line)
        in_quote = _quote_state(line, in_quote, delimiter)
        if pending_chars > max_chars:
            yield _RawRecord(start_line, "oversize", "")
            pending, pending_chars, in_quote = [], 0, False
        elif not in_quote:
            yield _RawRecord(start_line, "data", "".join(pending))
            pending, pending_chars = [], 0
    if pending:
        yield _RawRecord(start_line, "data", "".join(pending))


def discard_rest_of_line(handle: TextIO) -> None:
    """Read and drop the rest of an overlong line in chunks, never holding it whole."""
    while True:
        chunk = handle.readline(1 << 16)
        if not chunk or chunk.endswith("\n"):
            return


def bounded_lines(
    path: Path, max_chars: int, *, newline: str | None = None
) -> Iterator[tuple[int, str | None]]:
    """``(line number, line)`` for each line of a UTF-8 text file; ``None`` for a line longer
    than ``max_chars``, whose rest is skipped without ever being held whole.

    Raises:
        FeedFormatError: the file is not UTF-8; the message says after which line.
    """
    with path.open(encoding="utf-8-sig", newline=newline) as handle:
        line_no = 0
        while True:
            try:
                line = handle.readline(max_chars + 1)
            except UnicodeDecodeError as exc:
                raise FeedFormatError(
                    path, f"not UTF-8 text after line {line_no}: {exc.reason}"
                ) from exc
            if not line:
                return
            line_no += 1
            if len(line) > max_chars and not line.endswith(("\n", "\r")):
                discard_rest_of_line(handle)
                yield line_no, None
                continue
            yield line_no, line


def _parse_row(text: str, delimiter: str) -> list[str]:
    reader = csv.reader(io.StringIO(text), delimiter=delimiter, skipinitialspace=True)
    rows = [row for row in reader if row]
    if len(rows) != 1:
        # An unterminated quote at end of file can leave more than one physical row; keep all.
        return [cell for row in rows for cell in row]
    return [cell.strip() for cell in rows[0]]


def _sniff_delimiter(samples: list[str]) -> str:
    best, best_score = ",", 0
    for delimiter in _DELIMITERS:
        widths = []
        for text in samples:
            try:
                widths.append(len(_parse_row(text, delimiter)))
            except csv.Error:
                widths.append(0)
        width, count = Counter(widths).most_common(1)[0] if widths else (1, 0)
        if width > 1 and count > best_score:
            best, best_score = delimiter, count
    return best


def _is_header(row: list[str]) -> bool:
    cells = [cell for cell in row if cell]
    return bool(cells) and all(classify(cell) is None for cell in cells)


def _header_from_comment(comments: list[str], delimiter: str, width: int) -> list[str] | None:
    for comment in reversed(comments):
        text = comment.lstrip("#;").strip()
        if not text:
            continue
        try:
            row = _parse_row(text, delimiter)
        except csv.Error:
            continue
        if len(row) == width and any(
            column_hint(c) or _normalize_header(c) in GENERIC_COLUMNS for c in row
        ):
            return row
    return None


def _columns_from_header(header: list[str]) -> tuple[list[_Column], int | None]:
    normalized = [_normalize_header(name) for name in header]
    type_column = next((i for i, n in enumerate(normalized) if n in TYPE_COLUMNS), None)
    columns = []
    for index, name in enumerate(header):
        if normalized[index] in GENERIC_COLUMNS:
            columns.append(_Column(index, name, None, generic=True))
        elif (hint := column_hint(name)) is not None:
            columns.append(_Column(index, name, hint))
    has_generic = any(column.generic for column in columns)
    return columns, type_column if has_generic else None


def _columns_from_values(rows: list[list[str]]) -> list[_Column]:
    width = max((len(row) for row in rows), default=0)
    columns = []
    for index in range(width):
        values = [row[index] for row in rows if index < len(row) and row[index]]
        hits = sum(1 for value in values if classify(value) is not None)
        if values and hits * 2 >= len(values):
            columns.append(_Column(index, f"column {index + 1}", None))
    return columns


def detect_layout(path: Path, max_chars: int = DEFAULT_MAX_RECORD_CHARS) -> _Layout:
    """Work out delimiter, header and indicator columns from the start of the file.

    Raises:
        FeedFormatError: no data rows, or no indicator column.
    """
    comments: list[str] = []
    samples: list[str] = []
    with path.open(encoding="utf-8-sig", newline="") as handle:
        for record in _raw_records(handle, None, max_chars, path):
            if record.kind == "comment" and not samples:
                comments.append(record.text)
            elif record.kind == "data":
                samples.append(record.text)
                if len(samples) >= _SNIFF_RECORDS:
                    break
    if not samples:
        raise FeedFormatError(path, "no data rows: the file is empty or only comments")

    delimiter = _sniff_delimiter(samples)
    rows = [_parse_row(text, delimiter) for text in samples]
    header: list[str] | None = None
    header_is_row = _is_header(rows[0])
    if header_is_row:
        header = rows[0]
    else:
        header = _header_from_comment(comments, delimiter, len(rows[0]))

    if header is not None:
        columns, type_column = _columns_from_header(header)
    else:
        columns, type_column = _columns_from_values(rows), None
    if not columns:
        found = (
            f"header {header!r}" if header is not None else "no header and no column of indicators"
        )
        raise FeedFormatError(
            path,
            f"no indicator column: {found}; expected a column named like indicator, ioc, value, "
            "url, domain, host, ip, email, md5, sha1, sha256, filename, cve, asn",
        )
    return _Layout(delimiter, header, header_is_row, columns, type_column)


def read_csv(
    path: Path, *, start: int = 0, max_record_chars: int = DEFAULT_MAX_RECORD_CHARS
) -> Iterator[FeedItem]:
    """Yield the items of a CSV feed from record `start` on.

    Args:
        path: the file.
        start: number of data records to skip.
        max_record_chars: records longer than this are rejected without being held in memory.

    Raises:
        FeedFormatError: empty file, no data rows, no indicator column, or not UTF-8.
    """
    layout = detect_layout(path, max_record_chars)
    logger.debug(
        "csv layout of %s: delimiter=%r header=%r indicator columns=%r",
        path,
        layout.delimiter,
        layout.header,
        [c.name for c in layout.columns],
    )
    position = -1
    skipped_header = not layout.header_is_row
    with path.open(encoding="utf-8-sig", newline="") as handle:
        for record in _raw_records(handle, layout.delimiter, max_record_chars, path):
            if record.kind == "comment":
                continue
            if not skipped_header:
                skipped_header = True
                continue
            position += 1
            if position < start:
                continue
            yield from _read_record(position, record, layout, max_record_chars)


def _read_record(
    position: int, record: _RawRecord, layout: _Layout, max_chars: int
) -> Iterator[FeedItem]:
    if record.kind == "oversize":
        reason = f"line {record.line}: record longer than {max_chars} characters, not read"
        yield rejected_item(position, reason, new_context(line=record.line))
        return
    try:
        row = _parse_row(record.text, layout.delimiter)
    except csv.Error as exc:
        reason = f"line {record.line}: unreadable CSV record: {exc}"
        yield rejected_item(position, reason, new_context(line=record.line))
        return

    context = _row_context(row, layout, record.line)
    found = False
    for column in layout.columns:
        cell = row[column.index] if column.index < len(row) else ""
        hint = column.hint
        raw_type = column.name
        if column.generic and layout.type_column is not None and layout.type_column < len(row):
            hint = raw_type = row[layout.type_column] or None
        for value in _cell_values(cell, hint):
            found = True
            where = f"line {record.line} column {column.name!r}"
            yield indicator_item(position, value, raw_type, context, hint=hint or "", where=where)
    if not found:
        names = [column.name for column in layout.columns]
        reason = f"line {record.line}: no value in indicator column(s) {names!r}"
        yield skipped_item(position, reason, context)


def _cell_values(cell: str, hint: str | None) -> list[str]:
    values = [part.strip() for part in cell.splitlines()]
    types = hint_types(hint) or ()
    if not (set(types) & _NO_PIPE_SPLIT):
        values = [piece.strip() for part in values for piece in part.split("|")]
    return [value for value in values if value]


def _row_context(row: list[str], layout: _Layout, line: int) -> dict[str, Any]:
    context = new_context(line=line)
    if layout.header is None:
        return context
    indicator_indexes = {column.index for column in layout.columns}
    fields: dict[str, str] = {}
    for index, name in enumerate(layout.header):
        if index >= len(row) or not row[index] or index in indicator_indexes:
            continue
        value = row[index][:_FIELD_CONTEXT_LIMIT]
        fields[name] = value
        _apply_known_field(context, _normalize_header(name), value)
    context["fields"] = fields
    return context


def _apply_known_field(context: dict[str, Any], header: str, value: str) -> None:
    if header == "tlp":
        context["tlp"] = value.lower().removeprefix("tlp:")
    elif header.startswith("confidence") and value.isdigit():
        context["confidence"] = int(value)
    elif header in _TAG_COLUMNS:
        context["tags"].extend(tag.strip() for tag in re.split(r"[|,]", value) if tag.strip())
    elif any(key in header for key in ("first seen", "firstseen", "dateadded", "date added")):
        context["first_seen"] = normalize_timestamp(value)
    elif any(key in header for key in ("last seen", "lastseen", "last online")):
        context["last_seen"] = normalize_timestamp(value)


def looks_tabular(path: Path, max_chars: int = DEFAULT_MAX_RECORD_CHARS) -> bool:
    """Tell whether a text file is a table: most sampled rows split into the same 2+ columns."""
    samples: list[str] = []
    with path.open(encoding="utf-8-sig", newline="") as handle:
        for record in _raw_records(handle, None, max_chars, path):
            if record.kind == "data":
                samples.append(record.text)
                if len(samples) >= _SNIFF_RECORDS:
                    break
    if not samples:
        return True  # let the CSV reader report "no data rows"
    delimiter = _sniff_delimiter(samples)
    widths = Counter(len(_parse_row(text, delimiter)) for text in samples)
    width, count = widths.most_common(1)[0]
    return width > 1 and (len(samples) == 1 or count >= 0.8 * len(samples))
