"""The nightly exploration: the nemesis families over many seeds with longer schedules, within a wall-clock budget.

``make chaos`` runs every suite once with short schedules; this goes deeper where bugs hide best,
in long random fault schedules. One master seed (printed; ``--master-seed`` replays the choice of
run seeds) draws a seed per run; the families take turns (mixed, network, process, flags, ...).
Every run is a real ``pytest`` invocation of the nemesis suite's test for one family, with
``--seed``, ``--nemesis-duration-s`` and ``--raftchaos-strict``, its own run directory and session
summary (``raftchaos.session/1``), so its verdict, reports and replay command are exactly the
suite's. A run is started only while the budget is expected to hold it (the longest run seen so
far, at first the schedule length plus a start-up allowance); the run in progress is never cut.

A run's verdict is its session summary's ``overall`` (valid / invalid / unknown), ``unknown`` when
every test was skipped (nothing exercised), and ``error`` when pytest wrote no summary (a crash or
usage error of the harness: someone must look, so it counts with the invalid ones).

Exit status (the project's Jepsen convention): 0 every run valid, 1 a run invalid or in error,
2 no invalid run but an unknown one (or no run fitted the budget), 254 bad arguments, 130 Ctrl-C.

    .venv/bin/python benchmarks/nightly.py --budget-s 1200 --duration-s 30 [--master-seed N] [-- PYTEST_ARGS]
"""

from __future__ import annotations

import argparse
import math
import os
import random
import shlex
import subprocess
import sys
import time
from collections.abc import Iterable, Sequence
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
FAMILIES = ("mixed", "network", "process", "flags", "storage")  # suites/test_nemesis.py's parameters
TEST = "suites/test_nemesis.py::test_random_schedule_keeps_acknowledged_writes"
STARTUP_ALLOWANCE_S = 45.0  # cluster start, workload warm-up, final heal and checkers, before a run is timed
SEED_LIMIT = 2**31
VERDICTS = ("valid", "invalid", "unknown", "error")


@dataclass
class NightlyRun:
    """One pytest invocation: its family, seed, wall time, exit status and what its summary said."""

    index: int
    family: str
    seed: int
    wall_s: float
    exit_status: int
    verdict: str
    reasons: list[str] = field(default_factory=list)
    run_dirs: list[str] = field(default_factory=list)
    log: Path | None = None


def run_seeds(master_seed: int, count: int) -> list[int]:
    """The first ``count`` run seeds drawn from the master seed (a prefix is stable as count grows)."""
    rng = random.Random(master_seed)
    return [rng.randrange(SEED_LIMIT) for _ in range(count)]


def plan_run(index: int, master_seed: int, families: Sequence[str]) -> tuple[str, int]:
    """(family, seed) of run ``index`` (0-based): families in turn, seeds from the master seed."""
    return families[index % len(families)], run_seeds(master_seed, index + 1)[index]


def verdict_of(summary: dict[str, Any] | None) -> tuple[str, list[str], list[str]]:
    """(verdict, reasons, run dirs) of one run's session summary; None (not written) is ``error``."""
    if summary is None:
        return "error", ["pytest wrote no session summary"], []
    tests = summary.get("tests", [])
    reasons = [r for t in tests for r in (t.get("reasons") or [])]
    reasons += [t["failure"] for t in tests if t.get("failure") and not t.get("failed_by_strict")]
    run_dirs = [d for t in tests for d in (t.get("run_dirs") or [])]
    if not tests or all(t.get("outcome") == "skipped" for t in tests):
        return "unknown", reasons or ["not exercised: every test skipped"], run_dirs
    return str(summary.get("overall")), reasons, run_dirs


def exit_code(runs: Iterable[NightlyRun]) -> int:
    """0 all valid, 1 any invalid or error, 2 otherwise (an unknown, or no run at all)."""
    verdicts = [r.verdict for r in runs]
    if any(v in ("invalid", "error") for v in verdicts):
        return 1
    return 0 if verdicts and all(v == "valid" for v in verdicts) else 2


def replay_command(run: NightlyRun, duration_s: float) -> str:
    """The pytest command that replays one run (same test, seed and schedule length)."""
    return (f".venv/bin/python -m pytest {shlex.quote(f'{TEST}[{run.family}]')} --seed {run.seed} "
            f"--nemesis-duration-s {duration_s:g} --raftchaos-strict")


def fits(elapsed_s: float, budget_s: float, expected_s: float) -> bool:
    """Start another run only when the budget is expected to hold it whole."""
    return elapsed_s + expected_s <= budget_s


def families_table(runs: Sequence[NightlyRun], families: Sequence[str]) -> Table:
    table = Table(title=f"nightly: {len(runs)} run{'s' * (len(runs) != 1)} per family and verdict")
    table.add_column("family")
    for verdict in VERDICTS:
        table.add_column(verdict, justify="right")
    table.add_column("seeds", overflow="fold")
    for family in families:
        mine = [r for r in runs if r.family == family]
        cells = []
        for verdict in VERDICTS:
            n = sum(r.verdict == verdict for r in mine)
            style = {"invalid": "bold red", "error": "bold red", "unknown": "yellow"}.get(verdict)
            cells.append(f"[{style}]{n}" if n and style else str(n))
        table.add_row(family, *cells, ", ".join(str(r.seed) for r in mine) or "-")
    return table


def problems_table(runs: Sequence[NightlyRun], duration_s: float) -> Table | None:
    bad = [r for r in runs if r.verdict != "valid"]
    if not bad:
        return None
    table = Table(title="runs that were not valid: seed, replay command, run directories, reasons", show_lines=True)
    for column in ("run", "family", "verdict", "seed", "replay", "reasons / run dirs / log"):
        table.add_column(column, overflow="fold")
    for run in bad:
        details = "\n".join([*run.reasons, *(f"run dir: {d}" for d in run.run_dirs),
                             f"log: {run.log}" if run.log else ""]).strip()
        table.add_row(str(run.index), run.family, run.verdict, str(run.seed), escape(replay_command(run, duration_s)),
                      escape(details or "-"))
    return table


def pytest_command(run_dir: Path, family: str, seed: int, duration_s: float, timeout_s: float,
                   extra: Sequence[str]) -> list[str]:
    return [sys.executable, "-m", "pytest", f"{TEST}[{family}]", "-q", "-p", "no:cacheprovider",
            "--seed", str(seed), "--nemesis-duration-s", f"{duration_s:g}", "--raftchaos-strict",
            "--run-dir", str(run_dir / "runs"), "--raftchaos-summary", str(run_dir / "summary.json"),
            "--junitxml", str(run_dir / "junit.xml"), "--timeout", str(math.ceil(timeout_s)), *extra]


def run_one(index: int, out: Path, family: str, seed: int, duration_s: float, extra: Sequence[str],
            progress: Progress, task: Any, start: float) -> NightlyRun:
    """One pytest run in a subprocess; the bar follows the budget meanwhile. Ctrl-C reaches pytest
    too (same process group) and it is given time to tear its cluster down."""
    run_dir = out / f"run-{index:03d}-{family}"
    run_dir.mkdir(parents=True, exist_ok=True)
    log = run_dir / "pytest.log"
    cmd = pytest_command(run_dir, family, seed, duration_s, 4 * duration_s + 300, extra)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))
    began = time.monotonic()
    with log.open("w", encoding="utf-8") as sink:
        sink.write(shlex.join(cmd) + "\n")
        sink.flush()
        proc = subprocess.Popen(cmd, stdout=sink, stderr=subprocess.STDOUT, env=env, stdin=subprocess.DEVNULL,
                                cwd=REPO)
        try:
            while True:  # the wait decides when pytest is done; the timeout only refreshes the bar
                try:
                    status = proc.wait(timeout=1.0)
                    break
                except subprocess.TimeoutExpired:
                    progress.update(task, completed=time.monotonic() - start)
        except KeyboardInterrupt:
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            raise
    try:
        summary: dict[str, Any] | None = load_session(run_dir / "summary.json")
    except ValueError:
        summary = None
    verdict, reasons, run_dirs = verdict_of(summary)
    if summary is None:
        reasons = [f"pytest exit {status} and no session summary"]
    return NightlyRun(index, family, seed, time.monotonic() - began, status, verdict, reasons, run_dirs, log)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_BAD_INPUT, f"nightly: {message}\n")


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = _Parser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--budget-s", type=float, default=1200.0, help="wall-clock budget in seconds (default 1200)")
    parser.add_argument("--duration-s", type=float, default=30.0,
                        help="length of each random schedule in seconds (default 30; the suite's is 10)")
    parser.add_argument("--seeds", type=int, default=None,
                        help="at most this many runs (default: as many as the budget holds)")
    parser.add_argument("--master-seed", type=int, default=None, help="draws every run's seed (default: random)")
    parser.add_argument("--families", default=",".join(FAMILIES),
                        help=f"comma-separated nemesis families (default {','.join(FAMILIES)})")
    parser.add_argument("--out", type=Path, default=None, help="where runs go (default .raftchaos/nightly/<UTC time>)")
    parser.add_argument("pytest_args", nargs="*", help="passed to pytest (after --)")
    args = parser.parse_args(argv)
    if not (math.isfinite(args.budget_s) and 60 <= args.budget_s <= 7 * 86400):
        parser.error(f"--budget-s must be seconds in [60, 604800], got {args.budget_s}")
    if not (math.isfinite(args.duration_s) and 5 <= args.duration_s <= 3600):
        parser.error(f"--duration-s must be seconds in [5, 3600], got {args.duration_s}")
    if args.seeds is not None and args.seeds < 1:
        parser.error(f"--seeds must be at least 1, got {args.seeds}")
    if args.master_seed is not None and not 0 <= args.master_seed < 2**63:
        parser.error(f"--master-seed must be an integer in [0, 2**63), got {args.master_seed}")
    families = [f.strip() for f in args.families.split(",") if f.strip()]
    unknown = [f for f in families if f not in FAMILIES]
    if not families or unknown:
        parser.error(f"--families {args.families}: unknown family {', '.join(unknown) or '(none given)'}; "
                     f"known: {', '.join(FAMILIES)}")
    args.families = families
    if args.out is not None and args.out.exists() and not args.out.is_dir():
        parser.error(f"--out {args.out}: is an existing file")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    console = Console(width=None if sys.stdout.isatty() else 200)
    master = args.master_seed if args.master_seed is not None else random.SystemRandom().randrange(SEED_LIMIT)
    out = args.out or REPO / ".raftchaos" / "nightly" / datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    console.print(f"nightly: master seed {master} (replay the seed choice: --master-seed {master}), budget "
                  f"{args.budget_s:g} s, schedules of {args.duration_s:g} s, families {', '.join(args.families)}, "
                  f"runs in {out}")
    runs: list[NightlyRun] = []
    interrupted = False
    start = time.monotonic()
    expected_s = args.duration_s + STARTUP_ALLOWANCE_S
    try:
        with Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.percentage:>3.0f}% of budget"),
                      TimeElapsedColumn(), console=console) as progress:
            task = progress.add_task("nightly", total=args.budget_s)
            while (args.seeds is None or len(runs) < args.seeds) and fits(time.monotonic() - start, args.budget_s,
                                                                          expected_s):
                family, seed = plan_run(len(runs), master, args.families)
                bad = sum(r.verdict != "valid" for r in runs)
                progress.update(task, description=f"run {len(runs) + 1}: {family} seed {seed} ({bad} not valid so far)")
                run = run_one(len(runs) + 1, out, family, seed, args.duration_s, args.pytest_args, progress, task, start)
                runs.append(run)
                expected_s = max(expected_s, run.wall_s)
                colour = {"valid": "green", "unknown": "yellow"}.get(run.verdict, "bold red")
                progress.console.print(f"run {run.index}: {family} seed {seed}: [{colour}]{run.verdict}[/] "
                                       f"in {run.wall_s:.0f} s (pytest exit {run.exit_status})")
                progress.update(task, completed=time.monotonic() - start)
    except KeyboardInterrupt:
        console.print(f"[yellow]interrupted after {len(runs)} run(s)")
        interrupted = True
    console.print(families_table(runs, args.families))
    problems = problems_table(runs, args.duration_s)
    if problems is not None:
        console.print(problems)
    code = exit_code(runs)
    console.print(f"nightly: {len(runs)} runs in {time.monotonic() - start:.0f} s, master seed {master}; "
                  f"exit {130 if interrupted else code}" + ("" if runs else " (no run fitted the budget)"))
    return 130 if interrupted else code


if __name__ == "__main__":
    sys.exit(main())
