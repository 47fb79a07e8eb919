"""A mutation score of the node's consensus-critical modules against the chaos suites: where are they weak?

Cosmic Ray (``cosmic-ray`` on PyPI, a dev extra) makes the mutants: its operators enumerate every
mutation position of each module (binary / comparison / unary operator swaps, boolean and number
changes, ``break``/``continue``, exception and decorator removal, zero-iteration loops, ...) and
``cosmic_ray.mutating.mutate_code`` writes one. This driver does the scheduling Cosmic Ray's own
``exec`` does sequentially: a seeded sample of mutants (``--max-mutants``, ``--seed``, printed),
``--workers`` scratch copies of the repository (never the work tree: other people run it), each
mutant written into one copy's module and ``pytest`` run there with a per-mutant cap
(``--timeout-s``), then the module restored. The suites start nodes as ``python -m nodes`` with the
copy first on ``PYTHONPATH``, so the mutant runs in the real node processes; bytecode caching is off
so no stale ``.pyc`` hides a mutant.

Each mutant ends ``killed`` (pytest exit 1: a test failed or a verdict was invalid, and that
test, re-run on the unmutated copy with the same seed, passes), ``flaky`` (it fails unmutated too:
the suite's timing under load, not the mutant; not scored), ``timeout`` (over the cap: counted as
killed, the mutant hung the system), ``survived`` (pytest exit 0; unknown verdicts included: the
harness did not see a difference), or ``error`` (another pytest exit: usage error, nothing
collected, interrupted; not scored). Unmutated, the tests must pass first (the baseline, two
attempts), else no score is meaningful.

A survivor whose change is equivalent (no behaviour change possible) is listed as such with the
reason from ``benchmarks/mutation_equivalents.toml``: ``[[equivalent]]`` tables with ``module``,
``fingerprint`` (shown in the survivor table; a hash of the module, the operator and the changed
lines' text, so it survives unrelated edits that move lines) and ``reason``. Score = killed /
(killed + non-equivalent survivors). A benchmark to find the next weak spot, not a CI gate.

    .venv/bin/python benchmarks/mutation.py [--modules nodes/peer.py,...] [--max-mutants 50] [--workers 2]
        [--timeout-s 900] [--seed N] [--tests suites] [-- PYTEST_ARGS]
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import random
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import NoReturn

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
from benchmarks._mutants import (  # noqa: E402
    OUTCOMES,
    BadInput,
    ModuleScore,
    Mutant,
    Result,
    describe,
    enumerate_mutants,
    load_equivalents,
    load_results,
    mutated_source,
    outcome_of,
    sample,
    score_table,
    scores,
    survivor_table,
    write_results,
)

__all__ = ["OUTCOMES", "BadInput", "ModuleScore", "Mutant", "Result", "describe", "enumerate_mutants",
           "load_equivalents", "load_results", "mutated_source", "outcome_of", "sample", "score_table", "scores",
           "survivor_table", "write_results"]
EXIT_BAD_INPUT = 254
EXIT_BASELINE = 2  # unknown: the unmutated tests do not pass, so nothing can be measured
DEFAULT_MODULES = ("nodes/queue.py", "nodes/peer.py", "nodes/consensus.py", "nodes/update.py", "nodes/election.py")
DEFAULT_EQUIVALENTS = REPO / "benchmarks" / "mutation_equivalents.toml"
COPY_IGNORE = shutil.ignore_patterns(".git", ".venv", ".bin", ".raftchaos", "__pycache__", "*.pyc", ".mypy_cache",
                                     ".ruff_cache", ".pytest_cache")
BASELINE_ATTEMPTS = 2  # the suites are timing-sensitive on a loaded host: one flaky failure is not a verdict
TERM_GRACE_S = 30.0  # after the cap: SIGTERM lets the harness stop its nodes, then SIGKILL


# ---- running ------------------------------------------------------------------------------------


def make_copy(dest: Path) -> Path:
    """A scratch copy of the repository; .venv and .bin are links to the real ones."""
    shutil.copytree(REPO, dest, ignore=COPY_IGNORE, symlinks=True)
    for name in (".venv", ".bin"):
        if (REPO / name).exists():
            (dest / name).symlink_to((REPO / name).resolve())
    return dest


def pytest_command(copy: Path, tag: str, tests: Sequence[str], extra: Sequence[str]) -> list[str]:
    return [str(copy / ".venv" / "bin" / "python"), "-m", "pytest", *tests, "-x", "-q", "-p", "no:cacheprovider",
            "--run-dir", str(copy / ".raftchaos" / f"runs-{tag}"),
            "--raftchaos-summary", str(copy / ".raftchaos" / f"summary-{tag}.json"), *extra]


def run_tests(copy: Path, tag: str, tests: Sequence[str], extra: Sequence[str], timeout_s: float,
              log: Path) -> tuple[int | None, bool]:
    """pytest in ``copy``, capped at ``timeout_s``: (exit status, timed out). Over the cap pytest gets
    SIGTERM (its harness stops the nodes) and after a grace the whole process group SIGKILL."""
    env = dict(os.environ, PYTHONPATH=str(copy), PYTHONDONTWRITEBYTECODE="1", RAFTCHAOS_HOME=str(copy / ".raftchaos"))
    cmd = pytest_command(copy, tag, tests, extra)
    with log.open("w", encoding="utf-8") as sink:
        sink.write(" ".join(cmd) + "\n")
        sink.flush()
        proc = subprocess.Popen(cmd, cwd=copy, env=env, stdout=sink, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)
        try:
            return proc.wait(timeout=timeout_s), False
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=TERM_GRACE_S)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
            return None, True
        finally:
            shutil.rmtree(copy / ".raftchaos" / f"runs-{tag}", ignore_errors=True)


def failed_tests(summary_path: Path) -> list[tuple[str, int | None]]:
    """(nodeid, seed) of the tests that failed for real in a session summary (none if unreadable)."""
    try:
        doc = json.loads(summary_path.read_text(encoding="utf-8"))
        return [(str(t["nodeid"]), t.get("seed")) for t in doc.get("tests", [])
                if t.get("outcome") in ("failed", "error") and not t.get("failed_by_strict")]
    except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError, AttributeError):
        return []


def confirm_kill(copy: Path, tag: str, failing: Sequence[tuple[str, int | None]], extra: Sequence[str],
                 timeout_s: float, log: Path) -> str:
    """A kill counts only when the test that failed passes again unmutated with the same seed;
    otherwise the failure is the suite's flakiness (load, timing), not the mutant: ``flaky``."""
    if not failing:
        return "killed"  # nothing to re-run (pytest recorded no failed test): take pytest's word
    nodeid, seed = failing[0]
    seed_args = ["--seed", str(seed)] if seed is not None else []
    status, _ = run_tests(copy, f"{tag}-confirm", [nodeid], [*seed_args, *extra], timeout_s, log)
    return "killed" if status == 0 else "flaky"


def run_mutant(mutant: Mutant, mutated: str, copies: queue.Queue[Path], tests: Sequence[str],
                extra: Sequence[str], timeout_s: float, logs: Path) -> Result:
    copy = copies.get()
    target = copy / mutant.module
    original = target.read_text(encoding="utf-8")
    log = logs / f"{mutant.module.replace('/', '_')}-{mutant.fingerprint}.log"
    began = time.monotonic()
    try:
        try:
            target.write_text(mutated, encoding="utf-8")
            status, timed_out = run_tests(copy, mutant.fingerprint, tests, extra, timeout_s, log)
        finally:
            target.write_text(original, encoding="utf-8")
        outcome = outcome_of(status, timed_out)
        if outcome == "killed":
            failing = failed_tests(copy / ".raftchaos" / f"summary-{mutant.fingerprint}.json")
            outcome = confirm_kill(copy, mutant.fingerprint, failing, extra, timeout_s,
                                   log.with_name(log.stem + "-confirm.log"))
    finally:
        copies.put(copy)
    return Result(mutant, outcome, time.monotonic() - began, status, str(log))


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_BAD_INPUT, f"mutation: {message}\n")


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = _Parser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--modules", default=",".join(DEFAULT_MODULES),
                        help="comma-separated modules to mutate (default: the five consensus-critical ones)")
    parser.add_argument("--max-mutants", type=int, default=None, help="a seeded sample of this many (default all)")
    parser.add_argument("--workers", type=int, default=2, help="parallel scratch copies (default 2)")
    parser.add_argument("--timeout-s", type=float, default=900.0, help="per-mutant cap in seconds (default 900)")
    parser.add_argument("--seed", type=int, default=None, help="seed of the sample (default random, printed)")
    parser.add_argument("--tests", default="suites", help="comma-separated pytest targets (default: suites)")
    parser.add_argument("--equivalents", type=Path, default=DEFAULT_EQUIVALENTS, help="equivalent mutants file")
    parser.add_argument("--out", type=Path, default=None, help="where copies, logs and results go "
                        "(default /tmp/raftchaos-mutation-<UTC time>)")
    parser.add_argument("--list", action="store_true", help="only count and list the (sampled) mutants")
    parser.add_argument("--report", type=Path, default=None, metavar="RESULTS_JSON",
                        help="print the tables of an earlier run's results.json with today's equivalents file")
    parser.add_argument("pytest_args", nargs="*", help="passed to pytest (after --)")
    args = parser.parse_args(argv)
    args.modules = [m.strip() for m in args.modules.split(",") if m.strip()]
    args.tests = [t.strip() for t in args.tests.split(",") if t.strip()]
    for module in args.modules:
        path = REPO / module
        if not module.endswith(".py") or not path.is_file() or REPO.resolve() not in path.resolve().parents:
            parser.error(f"--modules {module}: not a Python file of this repository")
    if not args.modules or not args.tests:
        parser.error("--modules and --tests need at least one entry")
    for target in args.tests:
        if not (REPO / target.split("::")[0]).exists():
            parser.error(f"--tests {target}: no such file or directory")
    if args.max_mutants is not None and args.max_mutants < 1:
        parser.error(f"--max-mutants must be at least 1, got {args.max_mutants}")
    if not 1 <= args.workers <= 16:
        parser.error(f"--workers must be in [1, 16], got {args.workers}")
    if not 10 <= args.timeout_s <= 86400:
        parser.error(f"--timeout-s must be seconds in [10, 86400], got {args.timeout_s}")
    if args.seed is not None and not 0 <= args.seed < 2**63:
        parser.error(f"--seed must be an integer in [0, 2**63), got {args.seed}")
    if args.out is not None and args.out.exists() and not args.out.is_dir():
        parser.error(f"--out {args.out}: is an existing file")
    if args.report is not None and not args.report.is_file():
        parser.error(f"--report {args.report}: no such file")
    return args


def print_tables(console: Console, results: Sequence[Result], equivalents: Mapping[str, str]) -> None:
    console.print(score_table(scores(results, equivalents)))
    console.print(survivor_table(results, equivalents))


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    console = Console(width=None if sys.stdout.isatty() else 200)
    try:
        equivalents = load_equivalents(args.equivalents)
        if args.report is not None:
            print_tables(console, load_results(args.report), equivalents)
            return 0
    except BadInput as exc:
        print(f"mutation: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(2**31)
    sources = {m: (REPO / m).read_text(encoding="utf-8") for m in args.modules}
    everything = [mutant for m in args.modules for mutant in enumerate_mutants(m, sources[m])]
    chosen = []
    for mutant in sample(everything, args.max_mutants, seed):
        mutated = mutated_source(sources[mutant.module], mutant)
        if mutated is not None:
            chosen.append((describe(mutant, sources[mutant.module], mutated), mutated))
    console.print(f"mutation: {len(everything)} mutants in {', '.join(args.modules)}; {len(chosen)} sampled with "
                  f"seed {seed} (replay: --seed {seed} --max-mutants {args.max_mutants}); tests: "
                  f"{' '.join(args.tests)}; {args.workers} worker(s), cap {args.timeout_s:g} s per mutant")
    if args.list:
        for mutant, _ in chosen:
            console.print(f"{mutant.module}:{mutant.line} {mutant.operator} {mutant.fingerprint} {escape(mutant.change())}")
        return 0
    out = args.out or Path("/tmp") / f"raftchaos-mutation-{datetime.now(UTC).strftime('%Y%m%dT%H%M%SZ')}"
    logs = out / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    copies: queue.Queue[Path] = queue.Queue()
    for index in range(args.workers):
        copies.put(make_copy(out / f"copy-{index}"))
    results: list[Result] = []
    meta = {"seed": seed, "modules": args.modules, "tests": args.tests, "total_mutants": len(everything),
            "sampled": len(chosen)}
    try:
        console.print("baseline: the tests on an unmutated copy ...")
        copy = copies.get()
        for attempt in range(1, BASELINE_ATTEMPTS + 1):
            began = time.monotonic()
            status, timed_out = run_tests(copy, f"baseline-{attempt}", args.tests, args.pytest_args, args.timeout_s,
                                          logs / f"baseline-{attempt}.log")
            console.print(f"baseline attempt {attempt}: pytest exit {status} in {time.monotonic() - began:.0f} s")
            if status == 0:
                break
        copies.put(copy)
        if status != 0:
            console.print(f"[bold red]baseline failed (pytest exit {status}{', timed out' if timed_out else ''}; "
                          f"logs {logs}/baseline-*.log): no score can be measured")
            return EXIT_BASELINE
        with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                      console=console) as progress, ThreadPoolExecutor(args.workers) as pool:
            task = progress.add_task("mutants", total=len(chosen))
            futures = [pool.submit(run_mutant, m, code, copies, args.tests, args.pytest_args, args.timeout_s, logs)
                       for m, code in chosen]
            for future in futures:
                result = future.result()
                results.append(result)
                write_results(out / "results.json", results, meta)
                progress.console.print(f"{result.mutant.module}:{result.mutant.line} {result.mutant.operator} "
                                       f"{result.outcome} in {result.wall_s:.0f} s")
                progress.advance(task)
    except KeyboardInterrupt:
        console.print(f"[yellow]interrupted after {len(results)} mutant(s); results so far in {out / 'results.json'}")
        return 130
    print_tables(console, results, equivalents)
    console.print(f"results in {out / 'results.json'}, logs in {logs}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
