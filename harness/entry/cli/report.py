"""``raftchaos report RUN_DIR`` (re-check and re-render a saved run) and ``raftchaos check FILE.jsonl``."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated, Any

import typer

from harness.entry.cli import app
from harness.entry.cli.common import EXIT_BY_VERDICT, EXIT_UNKNOWN, fail
from harness.errors import ConfigError, HarnessError, read_utf8


def _json_object(path: Path) -> dict[str, Any]:
    try:
        doc = json.loads(read_utf8(path))
    except ValueError as exc:
        raise ConfigError(f"{path}: not valid JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise ConfigError(f"{path}: must be a JSON object, got {type(doc).__name__}")
    return doc


def _history(path: Path) -> int:
    """How many events a history holds; ConfigError naming the file and line when it is not one.
    A torn last line is the one tolerance (a crashed run leaves one, and load_history drops it)."""
    from harness.history import load_history

    read_utf8(path)
    try:
        return len(load_history(path))
    except HarnessError as exc:
        raise ConfigError(str(exc)) from None


def check_run_files(run_dir: Path) -> None:
    """Every file ``report`` reads, checked before anything is re-rendered or rewritten (a corrupt
    verdicts.json must not be silently replaced by a re-check): events.jsonl, spec.json,
    verdicts.json, run.json and schedule.jsonl when present. ConfigError naming file and problem."""
    from harness.runplan import RUN_INFO, read_run_info
    from harness.schedule import read_executed
    from harness.spec import ClusterSpec
    from harness.store import open_run_dir

    run = open_run_dir(run_dir)
    if run.events_path.exists():
        _history(run.events_path)
    if run.spec_path.exists():
        try:
            ClusterSpec.from_dict(_json_object(run.spec_path))
        except ConfigError as exc:
            raise ConfigError(exc.args[0] if str(exc).startswith(str(run.spec_path))
                              else f"{run.spec_path}: {exc}") from None
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"{run.spec_path}: not a valid cluster spec: {exc}") from None
    if run.verdicts_path.exists():
        doc = _json_object(run.verdicts_path)
        verdicts = doc.get("verdicts", [])
        if not isinstance(verdicts, list) or not all(
                isinstance(v, dict) and isinstance(v.get("checker"), str)
                and v.get("validity") in EXIT_BY_VERDICT for v in verdicts):
            raise ConfigError(f"{run.verdicts_path}: verdicts must be a list of "
                              "{checker, validity: valid|invalid|unknown, ...} objects")
    if (run.path / RUN_INFO).exists():
        read_run_info(run)
    if run.schedule_path.exists():
        read_executed(run.schedule_path, shape=False)


@app.command("report")
def report(
    run_dir: Annotated[Path, typer.Argument(help="a run directory (holds events.jsonl, spec.json)")],
    recheck: Annotated[bool, typer.Option("--recheck/--no-recheck",
                                          help="re-run the checkers over the saved history first")] = True,
) -> int:
    """Re-run the checkers over a saved run and re-render report.html and summary.json.

    Exit by the overall verdict: 0 valid, 1 invalid, 2 unknown; 254 when the directory is not a
    run or any of its files is unreadable or corrupt (nothing is rewritten then)."""
    from reports.html import render_run  # the composition root may import reports
    from reports.run_data import ReportError

    if not run_dir.is_dir():
        fail(f"{run_dir}: is not a directory")
    try:
        check_run_files(run_dir)
        result = render_run(run_dir, recheck=recheck)
    except (ConfigError, ReportError) as exc:
        fail(str(exc))
    for verdict in result.verdicts:
        print(f"{verdict['validity']:>7}  {verdict['checker']}: {verdict['summary']}")
    for name in result.skipped_checkers:
        print(f"skipped  {name}: checker not available in this checkout")
    print(f"overall: {result.overall}")
    print(f"report:  {result.report_path}")
    print(f"summary: {result.summary_path}")
    if result.problems:
        fail(f"{run_dir}: {result.problems[0]}")
    return EXIT_BY_VERDICT.get(result.overall, EXIT_UNKNOWN)


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
    """Check a history file for linearizability. Exit 0 linearizable, 1 not, 2 unknown (time or
    memory limit reached); 254 when the file is missing, not UTF-8, not JSONL or holds no events."""
    from harness.checkers.history_ops import HistoryError
    from harness.checkers.linearizable import check_linearizable, print_verdict
    from harness.checkers.verdict import Validity
    from harness.entry.cli.clock import command_start

    started = command_start()  # the limit covers the interpreter, the imports and the reading
    # The verdict is drawn with rich: imported now, inside the limit, so that drawing it past the
    # deadline takes milliseconds.
    import rich.console
    import rich.markup
    import rich.table  # noqa: F401
    if not file.is_file():
        fail(f"{file}: is not a file")
    try:
        text = read_utf8(file)
        if not text or text.isspace():  # (no stripped copy: histories run to hundreds of MB)
            fail(f"{file}: holds no events")
        del text
        verdict = check_linearizable(file, time_limit_s=time_limit, memory_limit_mb=memory_limit,
                                     workers=workers, explain_all=explain_all, started=started)
    except ConfigError as exc:
        fail(str(exc))
    except HistoryError as exc:
        fail(f"{file}: {exc}")
    print_verdict(verdict)
    print(f"elapsed {time.monotonic() - started:.3f} s since the command started "
          f"(time limit {time_limit:g} s)")
    return {Validity.VALID: 0, Validity.INVALID: 1, Validity.UNKNOWN: 2}[verdict.validity]
