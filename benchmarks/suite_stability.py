"""How stable are the chaos suites? Run ``pytest suites`` N times and count each test's outcomes.

Each run is its own pytest subprocess with its own run directory and session summary
(``--raftchaos-summary``, schema ``raftchaos.session/1``, ``reports.session``), from which this
reads every test's outcome (passed / failed / error / skipped / unknown), verdict, seed and the
reasons of its unknown or invalid verdicts. With ``--hog`` a busy-loop process pinned to one CPU
(``os.sched_setaffinity``) competes with the suites for the whole benchmark, as a loaded CI host
would; it is killed at the end, on Ctrl-C too. A measurement, not a CI step: it prints a rich table
per test (pass / fail / unknown / skipped counts, the seeds of every failure and unknown, the
unknown reasons), the totals and each run's wall time.

Exit status: 0 when no run had a failure (a failed or errored test, or a run that did not
produce its summary), 1 otherwise, 254 bad arguments, 130 Ctrl-C.

    .venv/bin/python benchmarks/suite_stability.py --runs 10 --hog [-- PYTEST_ARGS...]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NoReturn

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
from reports.session import load_session  # noqa: E402

EXIT_BAD_INPUT = 254


@dataclass
class RunResult:
    """One pytest run: its number, wall time, exit status and session summary (None: not written)."""

    index: int
    wall_s: float
    exit_status: int
    summary: dict[str, Any] | None
    log: Path
    problem: str | None = None


@dataclass
class TestStats:
    """One test's outcomes over the runs; seeds are (run, seed) with the reasons for unknowns."""

    nodeid: str
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(("pass", "fail", "unknown", "skip"), 0))
    failures: list[str] = field(default_factory=list)
    unknowns: list[str] = field(default_factory=list)


def classify(test: Mapping[str, Any]) -> str:
    """pass / fail / unknown / skip of one session-summary entry. A test failed only by
    ``--raftchaos-strict`` is unknown: its verdict is what the benchmark counts."""
    outcome = test.get("outcome")
    if outcome == "unknown" or (outcome == "failed" and test.get("failed_by_strict")):
        return "unknown"
    return {"passed": "pass", "skipped": "skip"}.get(str(outcome), "fail")


def aggregate(runs: Iterable[RunResult]) -> dict[str, TestStats]:
    """Per-test counts over the runs, in first-seen order."""
    stats: dict[str, TestStats] = {}
    for run in runs:
        for test in (run.summary or {}).get("tests", []):
            entry = stats.setdefault(test["nodeid"], TestStats(test["nodeid"]))
            kind = classify(test)
            entry.counts[kind] += 1
            tag = f"run {run.index}: seed {test.get('seed')}"
            if kind == "fail":
                entry.failures.append(tag + (f": {test['failure']}" if test.get("failure") else ""))
            elif kind == "unknown":
                entry.unknowns.append(f"{tag}: {'; '.join(test.get('reasons') or ['no reason recorded'])}")
    return stats


def failed(runs: Sequence[RunResult], stats: Mapping[str, TestStats]) -> bool:
    """A failure anywhere: a failed/errored test, or a run without a readable summary."""
    return any(r.problem for r in runs) or any(s.counts["fail"] for s in stats.values())


def read_run(index: int, wall_s: float, exit_status: int, summary_path: Path, log: Path) -> RunResult:
    """A finished run; a missing or corrupt summary is the run's problem (pytest crashed, usage error)."""
    try:
        return RunResult(index, wall_s, exit_status, load_session(summary_path), log)
    except ValueError as exc:
        return RunResult(index, wall_s, exit_status, None, log,
                         f"no session summary (pytest exit {exit_status}, log {log}): {exc}")


def tests_table(stats: Mapping[str, TestStats], runs: int) -> Table:
    table = Table(title=f"suite stability over {runs} run{'s' * (runs != 1)}", show_lines=True)
    for column, justify in (("test", "left"), ("pass", "right"), ("fail", "right"), ("unknown", "right"),
                            ("skip", "right"), ("failures (seed)", "left"), ("unknowns (seed: reason)", "left")):
        table.add_column(column, justify=justify, overflow="fold")  # type: ignore[arg-type]
    totals = dict.fromkeys(("pass", "fail", "unknown", "skip"), 0)
    for entry in stats.values():
        for key, value in entry.counts.items():
            totals[key] += value
        c = entry.counts
        table.add_row(escape(entry.nodeid), str(c["pass"]), f"[bold red]{c['fail']}" if c["fail"] else "0",
                      f"[yellow]{c['unknown']}" if c["unknown"] else "0", str(c["skip"]),
                      escape("\n".join(entry.failures) or "-"), escape("\n".join(entry.unknowns) or "-"))
    table.add_row("[bold]total", *(f"[bold]{totals[k]}" for k in ("pass", "fail", "unknown", "skip")), "", "")
    return table


def runs_table(runs: Sequence[RunResult]) -> Table:
    table = Table(title="runs")
    for column in ("run", "wall s", "pytest exit", "passed", "failed", "unknown", "skipped", "problem"):
        table.add_column(column, overflow="fold")
    for run in runs:
        kinds = [classify(t) for t in (run.summary or {}).get("tests", [])]
        table.add_row(str(run.index), f"{run.wall_s:.1f}", str(run.exit_status),
                      *(str(kinds.count(k)) for k in ("pass", "fail", "unknown", "skip")), run.problem or "-")
    return table


@contextmanager
def cpu_hog(enabled: bool, console: Console) -> Iterator[None]:
    """A busy loop pinned to the lowest CPU this process may use, for the duration of the block."""
    if not enabled:
        yield
        return
    cpu = min(os.sched_getaffinity(0))
    hog = subprocess.Popen([sys.executable, "-c", "while True: pass"], stdin=subprocess.DEVNULL)
    try:
        os.sched_setaffinity(hog.pid, {cpu})
        console.print(f"CPU hog pid {hog.pid} pinned to CPU {cpu}")
        yield
    finally:
        hog.kill()
        hog.wait()


def run_pytest(index: int, out: Path, target: str, pytest_args: Sequence[str]) -> RunResult:
    """One ``pytest TARGET`` in a subprocess; Ctrl-C reaches it too (same process group) and is
    given time to tear its clusters down before it is killed."""
    run_dir = out / f"run-{index:02d}"
    run_dir.mkdir(parents=True, exist_ok=True)
    summary, log = run_dir / "summary.json", run_dir / "pytest.log"
    cmd = [sys.executable, "-m", "pytest", target, "-q", "-p", "no:cacheprovider", "--run-dir",
           str(run_dir / "runs"), "--raftchaos-summary", str(summary), "--junitxml", str(run_dir / "junit.xml"),
           *pytest_args]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))
    start = time.monotonic()
    with log.open("w", encoding="utf-8") as sink:
        sink.write(" ".join(cmd) + "\n")
        sink.flush()
        proc = subprocess.Popen(cmd, stdout=sink, stderr=subprocess.STDOUT, env=env, stdin=subprocess.DEVNULL)
        try:
            status = proc.wait()
        except KeyboardInterrupt:
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            raise
    return read_run(index, time.monotonic() - start, status, summary, log)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_BAD_INPUT, f"suite_stability: {message}\n")


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = _Parser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--runs", type=int, default=10, help="how many times to run the suites (default 10)")
    parser.add_argument("--hog", action="store_true", help="a busy-loop process pinned to one CPU meanwhile")
    parser.add_argument("--target", default="suites", help="what pytest runs (default: suites)")
    parser.add_argument("--out", type=Path, default=None,
                        help="where runs go (default .raftchaos/stability/<UTC time>)")
    parser.add_argument("pytest_args", nargs="*", help="passed to pytest (after --)")
    args = parser.parse_args(argv)
    if args.runs < 1:
        parser.error(f"--runs must be at least 1, got {args.runs}")
    if not Path(args.target.split("::")[0]).exists():
        parser.error(f"--target {args.target}: no such file or directory")
    if args.out is not None and args.out.exists() and not args.out.is_dir():
        parser.error(f"--out {args.out}: is an existing file")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    console = Console(width=None if sys.stdout.isatty() else 200)
    out = args.out or Path(".raftchaos/stability") / datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    results: list[RunResult] = []
    interrupted = False
    try:
        with cpu_hog(args.hog, console), Progress(TextColumn("{task.description}"), BarColumn(),
                                                  TextColumn("{task.completed}/{task.total}"),
                                                  TimeElapsedColumn(), console=console) as progress:
            task = progress.add_task(f"pytest {args.target}", total=args.runs)
            for index in range(1, args.runs + 1):
                progress.update(task, description=f"pytest {args.target}: run {index}")
                result = run_pytest(index, out, args.target, args.pytest_args)
                results.append(result)
                kinds = [classify(t) for t in (result.summary or {}).get("tests", [])]
                progress.console.print(f"run {index}: {result.wall_s:.1f}s, exit {result.exit_status}, "
                                       f"{kinds.count('pass')} passed, {kinds.count('fail')} failed, "
                                       f"{kinds.count('unknown')} unknown, {kinds.count('skip')} skipped"
                                       + (f" [red]{result.problem}" if result.problem else ""))
                progress.advance(task)
    except KeyboardInterrupt:
        console.print(f"[yellow]interrupted after {len(results)} run(s)")
        interrupted = True
    stats = aggregate(results)
    console.print(tests_table(stats, len(results)))
    console.print(runs_table(results))
    console.print(f"runs kept in {out}")
    return 130 if interrupted else 1 if failed(results, stats) else 0


if __name__ == "__main__":
    sys.exit(main())
