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
import difflib
import hashlib
import json
import os
import queue
import random
import shutil
import signal
import subprocess
import sys
import time
import tomllib
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NoReturn

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

REPO = Path(__file__).resolve().parent.parent
EXIT_BAD_INPUT = 254
EXIT_BASELINE = 2  # unknown: the unmutated tests do not pass, so nothing can be measured
DEFAULT_MODULES = ("nodes/queue.py", "nodes/peer.py", "nodes/consensus.py", "nodes/update.py", "nodes/election.py")
DEFAULT_EQUIVALENTS = REPO / "benchmarks" / "mutation_equivalents.toml"
COPY_IGNORE = shutil.ignore_patterns(".git", ".venv", ".bin", ".raftchaos", "__pycache__", "*.pyc", ".mypy_cache",
                                     ".ruff_cache", ".pytest_cache")
OUTCOMES = ("killed", "timeout", "survived", "flaky", "error")
BASELINE_ATTEMPTS = 2  # the suites are timing-sensitive on a loaded host: one flaky failure is not a verdict
TERM_GRACE_S = 30.0  # after the cap: SIGTERM lets the harness stop its nodes, then SIGKILL


class BadInput(Exception):
    """A bad argument or equivalents file: one line naming it and the problem."""


@dataclass(frozen=True)
class Mutant:
    """One mutation: Cosmic Ray's (module, operator, occurrence) plus where and what it changes."""

    module: str
    operator: str
    occurrence: int
    line: int
    removed: tuple[str, ...] = ()
    added: tuple[str, ...] = ()

    @property
    def ident(self) -> str:
        return f"{self.module}:{self.operator}#{self.occurrence}"

    @property
    def fingerprint(self) -> str:
        """Stable across edits elsewhere in the module: the changed lines' text, not their numbers."""
        text = "\n".join([self.module, self.operator, *("-" + r for r in self.removed), *("+" + a for a in self.added)])
        return hashlib.sha256(text.encode()).hexdigest()[:12]

    def change(self) -> str:
        return " / ".join([*("- " + r for r in self.removed), *("+ " + a for a in self.added)])


@dataclass
class Result:
    mutant: Mutant
    outcome: str
    wall_s: float
    exit_status: int | None
    log: str


# ---- enumeration --------------------------------------------------------------------------------


def _operators() -> list[tuple[str, Any]]:
    """Every Cosmic Ray operator that takes no arguments (the parametrised ones need a config)."""
    import cosmic_ray.plugins  # type: ignore[import-untyped]

    out = []
    for name in cosmic_ray.plugins.operator_names():
        cls = cosmic_ray.plugins.get_operator(name)
        if not cls.arguments():
            out.append((name, cls()))
    return out


def enumerate_mutants(module: str, source: str) -> list[Mutant]:
    """Every (operator, occurrence) of ``source``, in Cosmic Ray's order (its ``init`` command's)."""
    from cosmic_ray.ast import ast_nodes, get_ast  # type: ignore[import-untyped]

    tree = get_ast(source)
    mutants: list[Mutant] = []
    for name, operator in _operators():
        positions = (start for node in ast_nodes(tree) for start, _ in operator.mutation_positions(node))
        mutants.extend(Mutant(module, name, occurrence, start[0]) for occurrence, start in enumerate(positions))
    return mutants


def sample(mutants: Sequence[Mutant], max_mutants: int | None, seed: int) -> list[Mutant]:
    """A seeded sample (all when ``max_mutants`` is None or not smaller), in module/line order."""
    chosen = list(mutants) if max_mutants is None or max_mutants >= len(mutants) else \
        random.Random(seed).sample(list(mutants), max_mutants)
    return sorted(chosen, key=lambda m: (m.module, m.line, m.operator, m.occurrence))


def mutated_source(source: str, mutant: Mutant) -> str | None:
    import cosmic_ray.plugins
    from cosmic_ray.mutating import mutate_code  # type: ignore[import-untyped]

    mutated: str | None = mutate_code(source, cosmic_ray.plugins.get_operator(mutant.operator)(), mutant.occurrence)
    return mutated


def describe(mutant: Mutant, original: str, mutated: str) -> Mutant:
    """The mutant with the stripped text of the lines it removes and adds."""
    removed: list[str] = []
    added: list[str] = []
    for line in difflib.unified_diff(original.splitlines(), mutated.splitlines(), lineterm="", n=0):
        if line.startswith(("---", "+++", "@@")):
            continue
        (removed if line.startswith("-") else added).append(line[1:].strip())
    return Mutant(mutant.module, mutant.operator, mutant.occurrence, mutant.line, tuple(removed), tuple(added))


# ---- equivalents --------------------------------------------------------------------------------


def load_equivalents(path: Path) -> dict[str, str]:
    """fingerprint -> reason from the equivalents file (absent file: none)."""
    if not path.exists():
        return {}
    try:
        doc = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise BadInput(f"{path}: {exc}") from None
    unknown = set(doc) - {"equivalent"}
    if unknown:
        raise BadInput(f"{path}: unknown key {sorted(unknown)[0]!r} (only [[equivalent]] tables)")
    entries = doc.get("equivalent", [])
    if not isinstance(entries, list):
        raise BadInput(f"{path}: 'equivalent' must be an array of tables ([[equivalent]])")
    out: dict[str, str] = {}
    for index, entry in enumerate(entries, 1):
        where = f"{path}: equivalent #{index}"
        if not isinstance(entry, dict) or set(entry) - {"module", "fingerprint", "reason", "change"}:
            raise BadInput(f"{where}: keys are module, fingerprint, reason (and an optional change)")
        for key in ("module", "fingerprint", "reason"):
            if not isinstance(entry.get(key), str) or not entry[key].strip():
                raise BadInput(f"{where}: {key} must be a non-empty string")
        if entry["fingerprint"] in out:
            raise BadInput(f"{where}: fingerprint {entry['fingerprint']} listed twice")
        out[entry["fingerprint"]] = entry["reason"].strip()
    return out


# ---- outcomes and the score ---------------------------------------------------------------------


def outcome_of(exit_status: int | None, timed_out: bool) -> str:
    """pytest's exit status as the mutant's fate (see the module docstring)."""
    if timed_out:
        return "timeout"
    return {0: "survived", 1: "killed"}.get(exit_status if exit_status is not None else -1, "error")


@dataclass
class ModuleScore:
    module: str
    counts: dict[str, int]
    equivalent: int

    @property
    def detected(self) -> int:
        return self.counts["killed"] + self.counts["timeout"]

    @property
    def scored(self) -> int:
        return self.detected + self.counts["survived"] - self.equivalent

    @property
    def score(self) -> float | None:
        return self.detected / self.scored if self.scored else None


def scores(results: Iterable[Result], equivalents: Mapping[str, str]) -> dict[str, ModuleScore]:
    """Per module and ``total``: outcome counts, equivalent survivors and the score."""
    out: dict[str, ModuleScore] = {}
    for result in results:
        for key in (result.mutant.module, "total"):
            entry = out.setdefault(key, ModuleScore(key, dict.fromkeys(OUTCOMES, 0), 0))
            entry.counts[result.outcome] += 1
            if result.outcome == "survived" and result.mutant.fingerprint in equivalents:
                entry.equivalent += 1
    if "total" in out:
        out["total"] = out.pop("total")  # last
    return out


def score_table(module_scores: Mapping[str, ModuleScore]) -> Table:
    table = Table(title="mutation score (killed + timeout) / (killed + timeout + survived - equivalent)")
    for column in ("module", *OUTCOMES, "equivalent", "score"):
        table.add_column(column, justify="left" if column == "module" else "right")
    for entry in module_scores.values():
        score = "-" if entry.score is None else f"{100 * entry.score:.1f} %"
        table.add_row(entry.module, *(str(entry.counts[k]) for k in OUTCOMES), str(entry.equivalent), score)
    return table


def survivor_table(results: Iterable[Result], equivalents: Mapping[str, str]) -> Table:
    table = Table(title="survivors by module (equivalent ones with the reason)", show_lines=True)
    for column in ("module:line", "operator", "change", "fingerprint", "equivalent?"):
        table.add_column(column, overflow="fold")
    for r in sorted((r for r in results if r.outcome == "survived"), key=lambda r: (r.mutant.module, r.mutant.line)):
        m = r.mutant
        table.add_row(f"{m.module}:{m.line}", m.operator.removeprefix("core/"), escape(m.change()), m.fingerprint,
                      escape(equivalents.get(m.fingerprint, "no: a weak spot")))
    return table


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


def test_mutant(mutant: Mutant, mutated: str, copies: queue.Queue[Path], tests: Sequence[str],
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


def load_results(path: Path) -> list[Result]:
    """The results of an earlier run (its ``results.json``), to re-score with a newer equivalents file."""
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
        out = []
        for r in doc["results"]:
            m = r["mutant"]
            mutant = Mutant(str(m["module"]), str(m["operator"]), int(m["occurrence"]), int(m["line"]),
                            tuple(m["removed"]), tuple(m["added"]))
            out.append(Result(mutant, str(r["outcome"]), float(r["wall_s"]), r["exit_status"], str(r["log"])))
        return out
    except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError) as exc:
        raise BadInput(f"{path}: not a results.json of benchmarks/mutation.py ({type(exc).__name__}: {exc})") from None


def write_results(path: Path, results: Sequence[Result], meta: Mapping[str, Any]) -> None:
    """``results.json``, rewritten after every mutant so a stopped run keeps what it measured."""
    doc = {**meta, "results": [{**asdict(r), "mutant": {**asdict(r.mutant), "fingerprint": r.mutant.fingerprint}}
                               for r in results]}
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(doc, indent=2), encoding="utf-8")
    tmp.replace(path)


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
            futures = [pool.submit(test_mutant, m, code, copies, args.tests, args.pytest_args, args.timeout_s, logs)
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
