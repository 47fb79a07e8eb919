"""Helpers shared by the CLI command modules: one-line errors with exit code 2, ``key=value`` parsing,
the open-faults table."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable
from typing import Any, NoReturn

import typer
from rich.table import Table

EXIT_BAD_INPUT = 2


def fail(message: str, code: int = EXIT_BAD_INPUT) -> NoReturn:
    """Print ``raftchaos: error: <first line>`` on stderr and exit ``code`` (no traceback)."""
    print(f"raftchaos: error: {str(message).splitlines()[0] if message else 'failed'}", file=sys.stderr)
    raise typer.Exit(code)


def parse_value(text: str) -> Any:
    """A JSON value when the text is one (``3``, ``0.5``, ``true``, ``[1,2]``), else the text itself."""
    try:
        return json.loads(text)
    except ValueError:
        return text


def parse_pairs(items: Iterable[str], what: str) -> dict[str, Any]:
    """``["a=1", "b=x"]`` → ``{"a": 1, "b": "x"}``; exit 2 naming the bad item."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            fail(f"{what} must look like name=value, got {item!r}")
        out[key.strip()] = parse_value(value.strip())
    return out


def open_faults_table(faults: Iterable[dict[str, Any]], title: str) -> Table:
    """The running cluster's open faults (``GET /faults`` of the supervisor), one row per slot."""
    table = Table(title=title)
    for column in ("slot", "fault", "targets", "term", "params"):
        table.add_column(column)
    for f in faults:
        table.add_row(str(f["slot"]), f["fault"], ",".join(f.get("targets") or []), str(f.get("term")),
                      str(f.get("params")))
    return table
