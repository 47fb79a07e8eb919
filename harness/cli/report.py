"""``raftchaos report RUN_DIR`` (re-check and re-render a saved run) and ``raftchaos check FILE.jsonl``."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from harness.cli import app

EXIT_VALID, EXIT_INVALID, EXIT_UNKNOWN = 0, 1, 2
_EXIT = {"valid": EXIT_VALID, "invalid": EXIT_INVALID, "unknown": EXIT_UNKNOWN}


def _fail(message: str) -> int:
    print(f"raftchaos: error: {message}", file=sys.stderr)
    return EXIT_UNKNOWN


@app.command("report")
def report(
    run_dir: Annotated[Path, typer.Argument(help="a run directory (holds events.jsonl, spec.json)")],
    recheck: Annotated[bool, typer.Option("--recheck/--no-recheck",
                                          help="re-run the checkers over the saved history first")] = True,
) -> int:
    """Re-run the checkers over a saved run and re-render report.html and summary.json.

    Exit 0 when every verdict is valid, 1 when any is invalid, 2 when any is unknown (or the
    directory is not a run)."""
    from reports.html import render_run  # the composition root may import reports
    from reports.run_data import ReportError

    if not run_dir.is_dir():
        return _fail(f"{run_dir} is not a directory")
    try:
        result = render_run(run_dir, recheck=recheck)
    except ReportError as exc:
        return _fail(str(exc))
    for verdict in result.verdicts:
        print(f"{verdict['validity']:>7}  {verdict['checker']}: {verdict['summary']}")
    for name in result.skipped_checkers:
        print(f"skipped  {name}: checker not available in this checkout")
    for problem in result.problems:
        print(f"warning  {problem}")
    print(f"overall: {result.overall}")
    print(f"report:  {result.report_path}")
    print(f"summary: {result.summary_path}")
    return _EXIT[result.overall]


@app.command("check")
def check(
    file: Annotated[Path, typer.Argument(help="a JSONL history (events.jsonl or Jepsen-style ops)")],
    time_limit: Annotated[float, typer.Option("--time-limit", min=0.0,
                                              help="seconds for reading and checking; unknown past it")] = 60.0,
    memory_limit: Annotated[float | None, typer.Option("--memory-limit", min=1.0,
                                                       help="MB of search memo for all keys at once "
                                                            "(default 400); unknown past it")] = None,
    workers: Annotated[int | None, typer.Option("--workers", min=1,
                                                help="processes searching keys (default: every core)")] = None,
    explain_all: Annotated[bool, typer.Option("--explain-all",
                                              help="search every key, not only up to the first "
                                                   "not linearizable one")] = False,
) -> int:
    """Check a history file for linearizability. Exit 0 linearizable, 1 not, 2 unknown or bad input."""
    try:
        from harness.checkers.linearizable import main_check
    except ImportError:
        return _fail("the linearizability checker is not available in this checkout")
    if not file.is_file():
        return _fail(f"{file} is not a file")
    return int(main_check(file, time_limit_s=time_limit, memory_limit_mb=memory_limit, workers=workers,
                          explain_all=explain_all))
