"""``spire ioc``: refang, classify and extract indicators locally, without a running engine.

Each command reads values from its arguments (or standard input when there are none) and
prints a table or ``--json``. With ``--jsonl`` it speaks the JSON Lines protocol of the shared
IOC bench instead (one request object per input line, one answer per output line; see
:mod:`phantom_spire.cti.ioc_protocol`), so the product can be scored beside peer libraries::

    spire ioc extract --jsonl < requests.jsonl > answers.jsonl
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, TextIO

import typer
from rich.console import Console
from rich.table import Table

from phantom_spire.cti import indicators, ioc_protocol

__all__ = ["ioc_app"]

ioc_app = typer.Typer(
    help="Refang, classify and extract indicators of compromise (no engine needed).",
    no_args_is_help=True,
)

console = Console()
err_console = Console(stderr=True)

JsonlFlag = Annotated[
    bool,
    typer.Option(
        "--jsonl",
        help="Read JSON Lines requests on stdin, write one JSON answer per line on stdout.",
    ),
]
JsonFlag = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]


def _utf8(stream: TextIO) -> TextIO:
    # Feeds arrive in any state; one undecodable byte must not end a batch of answers.
    if hasattr(stream, "reconfigure"):
        stream.reconfigure(encoding="utf-8", errors="replace")
    return stream


def _serve(mode: str) -> None:
    stdin, stdout = _utf8(sys.stdin), _utf8(sys.stdout)
    for line in ioc_protocol.serve_jsonl(mode, stdin):
        stdout.write(line + "\n")
    stdout.flush()


def _values(values: list[str] | None) -> list[str]:
    if values:
        return values
    if sys.stdin.isatty():
        raise _fail("give values as arguments or on standard input (one per line)")
    return [line.rstrip("\r\n") for line in _utf8(sys.stdin) if line.strip()]


def _fail(message: str) -> typer.Exit:
    err_console.print(f"[red]error:[/red] {message}", highlight=False)
    return typer.Exit(code=1)


def _write_json(data: object) -> None:
    sys.stdout.write(json.dumps(data, indent=2, ensure_ascii=False) + "\n")


@ioc_app.command("fang")
def fang(
    values: Annotated[list[str] | None, typer.Argument(help="Defanged values.")] = None,
    jsonl: JsonlFlag = False,
    as_json: JsonFlag = False,
) -> None:
    """Refang values: hxxp -> http, [.] -> ., [at] -> @, and the other common forms."""
    if jsonl:
        _serve("fang")
        return
    fanged = [{"defanged": v, "fanged": indicators.refang(v)} for v in _values(values)]
    if as_json:
        _write_json(fanged)
        return
    for row in fanged:
        sys.stdout.write(row["fanged"] + "\n")


@ioc_app.command("classify")
def classify(
    values: Annotated[list[str] | None, typer.Argument(help="Values to classify.")] = None,
    jsonl: JsonlFlag = False,
    as_json: JsonFlag = False,
) -> None:
    """Refang, validate and classify values; print each one's type and canonical form.

    Exits with 1 when any value is not a valid indicator (the reason is printed).
    """
    if jsonl:
        _serve("classify")
        return
    rows = []
    for value in _values(values):
        try:
            found = indicators.parse_indicator(value)
        except indicators.InvalidIndicator as exc:
            rows.append({"value": value, "type": None, "normalized": None, "error": exc.reason})
            continue
        rows.append(
            {
                "value": value,
                "type": found.type,
                "normalized": found.value,
                "tags": list(found.tags),
            }
        )
    if as_json:
        _write_json(rows)
    else:
        table = Table("value", "type", "normalized", "tags / reason")
        for row in rows:
            note = row.get("error") or ", ".join(row.get("tags", []))
            table.add_row(row["value"], row["type"] or "invalid", row["normalized"] or "", note)
        console.print(table)
    if any(row["type"] is None for row in rows):
        raise typer.Exit(code=1)


@ioc_app.command("extract")
def extract(
    file: Annotated[
        Path | None,
        typer.Argument(help="Text file to read ('-' or absent: standard input).", dir_okay=False),
    ] = None,
    jsonl: JsonlFlag = False,
    as_json: JsonFlag = False,
) -> None:
    """Find indicators in free text (reports, e-mails, pasted chat), refanging as it goes."""
    if jsonl:
        if file is not None:
            raise _fail("--jsonl reads its requests on standard input; drop the file argument")
        _serve("extract")
        return
    if file is None or str(file) == "-":
        text = _utf8(sys.stdin).read()
    else:
        try:
            text = file.read_text(encoding="utf-8", errors="replace")
        except OSError as exc:
            raise _fail(f"cannot read {str(file)!r}: {exc.strerror or exc}") from None
    found = indicators.extract(text)
    if as_json:
        _write_json([{"type": i.type, "value": i.value, "tags": list(i.tags)} for i in found])
        return
    table = Table("type", "value", "tags", title=f"{len(found)} indicators")
    for indicator in found:
        table.add_row(indicator.type, indicator.value, ", ".join(indicator.tags))
    console.print(table)
