"""Linearizability checker benchmark: time and peak memory on simulated KV histories.

Histories come from concurrent clients against a sequential KV store: each op gets a random
interval and takes effect at a point inside it (an info op, a timeout, takes effect later or
never, and its client continues as a new process). Invalid variants corrupt one read into a stale
value; for those the search is also timed alone ("search alone"), as if the stale-read proof had
not caught the anomaly. Each case runs in a forked child so its peak RSS is its own. A
measurement, not a test: it prints a table and marks the targets (10k ops <= 2 s, 100k ops
<= 30 s, peak <= 1 GB).
"""

from __future__ import annotations

import argparse
import heapq
import json
import multiprocessing
import os
import random
import re
import resource
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))
import porcupine_corpus  # noqa: E402

from harness.checkers import compose  # noqa: E402
from harness.checkers.history_ops import OpStatus, parse_history  # noqa: E402
from harness.checkers.kv_model import compile_keys  # noqa: E402
from harness.checkers.linearizable import check_linearizable, check_ops  # noqa: E402
from harness.checkers.op_reader import read_ops  # noqa: E402
from harness.checkers.wgl import search_key  # noqa: E402

MB = 1024 * 1024


@dataclass(frozen=True)
class Case:
    name: str
    ops: int
    keys: int
    threads: int
    info_rate: float
    invalid: bool
    append_keys: int = 0  # keys driven with read/append instead of read/write/cas
    target_s: float | None = None
    small_values: bool = False  # values 0..4 (Knossos's cas register) instead of unique ones
    kv: bool = False  # porcupine's kv shape: get / put / append on the same keys


def simulate(rng: random.Random, case: Case) -> tuple[list[dict[str, Any]], bool]:
    """One history of ``case.ops`` ops; returns the events and whether a read was corrupted.

    Times are integer nanoseconds. Register values are unique ints (as etcd's robustness tests
    write) or, for ``small_values``, 0..4; append tokens are unique strings.
    """
    keys = [f"k{i}" for i in range(case.keys)]
    append_keys = set(keys[: case.append_keys])
    clock = [(rng.uniform(0, 1e-3), th) for th in range(case.threads)]
    heapq.heapify(clock)
    pid = list(range(case.threads))
    next_pid = case.threads
    written: dict[str, list[Any]] = {k: [None] for k in keys}
    planned: list[list[Any]] = []  # [at, start, end, process, f, key, value, outcome]
    for n in range(1, case.ops + 1):
        now, th = heapq.heappop(clock)
        start = now + rng.expovariate(1 / 50e-6)
        key = rng.choice(keys)
        roll = rng.random()
        value: Any
        if case.kv:  # porcupine's kv shape: mostly appends and gets, a few puts
            f, value = ("read", None) if roll < 0.45 else ("write", f"p{n}.") if roll < 0.5 else ("append", f"a{n}.")
        elif key in append_keys:
            f, value = ("read", None) if roll < 0.5 else ("append", f"{n},")
        elif roll < 0.5:
            f, value = "read", None
        elif case.small_values:
            f, value = ("write", rng.randrange(5)) if roll < 0.75 else ("cas", [rng.randrange(5), rng.randrange(5)])
        elif roll < 0.8:
            f, value = "write", n
            written[key].append(n)
        else:
            # Mostly the latest value written (so the cas often swaps), sometimes an older one.
            recent = written[key][-3:]
            f, value = "cas", [recent[-1] if rng.random() < 0.6 else rng.choice(recent), n]
            written[key].append(n)
        outcome = rng.random()
        if outcome < case.info_rate:  # timeout: maybe applied, possibly after the client gave up
            end = start + 5e-3
            at = start + rng.uniform(0, 10e-3) if rng.random() < 0.5 else None
            kind, process = "info", pid[th]
            pid[th], next_pid = next_pid, next_pid + 1  # the client goes on as a new process
        elif outcome < case.info_rate + 0.02:  # refused: definitely not applied
            end = start + rng.uniform(20e-6, 200e-6)
            at, kind, process = None, "fail", pid[th]
        else:
            end = start + 100e-6 + rng.expovariate(1 / 900e-6)
            at, kind, process = rng.uniform(start, end), "ok", pid[th]
        planned.append([at, start, end, process, f, key, value, kind])
        heapq.heappush(clock, (end, th))
    results = _execute(planned)
    if not case.invalid:
        corrupted = False
    elif case.kv:
        corrupted = _swap_tokens(rng, planned, results)
    else:
        corrupted = _corrupt_one_read(rng, planned, results)
    return _events(planned, results), corrupted


def _execute(planned: list[list[Any]]) -> dict[int, Any]:
    """Apply the ops that took effect in the order of their points; returns read results and marks
    cas that found another value (recorded as fail without error)."""
    store: dict[str, Any] = {}
    results: dict[int, Any] = {}
    order = sorted((op[0], i) for i, op in enumerate(planned) if op[0] is not None)
    for _, i in order:
        op = planned[i]
        f, key, value = op[4], op[5], op[6]
        current = store.get(key)
        if f == "read":
            results[i] = current
        elif f == "write":
            store[key] = value
        elif f == "append":
            store[key] = (current or "") + value
        elif current == value[0]:
            store[key] = value[1]
        elif op[7] == "ok":
            op[7] = "mismatch"
    return results


def _corrupt_one_read(rng: random.Random, planned: list[list[Any]], results: dict[int, Any]) -> bool:
    """Make one ok read (from the middle third if possible) return a value that is provably stale.

    Stale for read R and value v: some ok write W2 of another value returned before R was invoked,
    and every op that could write v (write v, cas to v; ok or info) returned before W2 was invoked.
    Then in any order W2 comes after the last write of v and before R, so R cannot read v. Returns
    False when no read of the history can be corrupted so.
    """
    n = len(planned)
    reads = [i for i in range(n) if planned[i][4] == "read" and planned[i][7] == "ok"
             and isinstance(results.get(i), int)]
    middle = [i for i in reads if n // 3 <= i < 2 * n // 3]
    rng.shuffle(reads)
    rng.shuffle(middle)
    inf = float("inf")
    for i in middle + reads:
        key, start, end = planned[i][5], planned[i][1], planned[i][2]
        setters: dict[Any, float] = {}  # value -> latest return of an op that may write it
        oks: list[tuple[float, float, Any]] = []
        for op in planned:
            if op[5] != key or op[4] not in ("write", "cas") or op[7] not in ("ok", "info") or op[1] > end:
                continue
            value = op[6] if op[4] == "write" else op[6][1]
            ret = op[2] if op[7] == "ok" else inf
            setters[value] = max(setters.get(value, -inf), ret)
            if op[7] == "ok" and op[2] < start:
                oks.append((op[1], op[2], value))
        for v, last_ret in setters.items():
            if v != results[i] and any(value != v and call > last_ret for call, _ret, value in oks):
                results[i] = v
                return True
    return False


def _swap_tokens(rng: random.Random, planned: list[list[Any]], results: dict[int, Any]) -> bool:
    """Swap two appended tokens in one ok read's value, where the first append returned before the
    second was invoked and both before the read: every value holding both has them in call order
    (tokens and put values are unique), so the read is impossible. False if no read qualifies."""
    reads = [i for i in range(len(planned)) if planned[i][4] == "read" and planned[i][7] == "ok"
             and isinstance(results.get(i), str)]
    rng.shuffle(reads)
    for i in reads:
        tokens = [t + "." for t in results[i].split(".") if t]
        for a in range(len(tokens) - 1):
            t1, t2 = tokens[a], tokens[a + 1]
            if not (t1.startswith("a") and t2.startswith("a")):
                continue
            op1, op2 = planned[int(t1[1:-1]) - 1], planned[int(t2[1:-1]) - 1]
            if op1[7] == op2[7] == "ok" and op1[2] < op2[1] and op2[2] < planned[i][1]:
                tokens[a], tokens[a + 1] = t2, t1
                results[i] = "".join(tokens)
                return True
    return False


def _events(planned: list[list[Any]], results: dict[int, Any]) -> list[dict[str, Any]]:
    timed: list[tuple[int, int, dict[str, Any]]] = []
    for i, (_at, start, end, process, f, key, value, kind) in enumerate(planned):
        t0, t1 = int(start * 1e9), max(int(start * 1e9), int(end * 1e9))
        timed.append((t0, 1, {"process": process, "type": "invoke", "f": f, "key": key, "value": value,
                              "time": t0}))
        done: dict[str, Any] = {"process": process, "f": f, "key": key, "value": value, "time": t1}
        if kind == "ok":
            done["type"] = "ok"
            if f == "read":
                done["value"] = results.get(i)
        elif kind == "mismatch":
            done["type"] = "fail"
        elif kind == "fail":
            done["type"], done["error"] = "fail", "connection_refused"
        else:
            done["type"], done["error"] = "info", "timeout"
        timed.append((t1, 0, done))
    timed.sort(key=lambda e: (e[0], e[1]))
    return [ev for _, _, ev in timed]


# ---- running cases --------------------------------------------------------------------------------


def _run_case(case: Case, seed: int, time_limit_s: float, conn: Any) -> None:
    """In a forked child: generate, check, and send back the figures (peak RSS is this child's)."""
    rng = random.Random(seed)
    events, corrupted = simulate(rng, case)
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    started = time.perf_counter()
    verdict = check_linearizable(events, time_limit_s=time_limit_s)
    elapsed = time.perf_counter() - started
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    states = sum(k["states"] for k in verdict.details["keys"].values())
    info = sum(1 for ev in events if ev["type"] == "info")
    result = {"verdict": verdict.validity.value, "elapsed_s": elapsed, "peak_bytes": peak,
              "history_bytes": rss_before, "states": states, "info": info, "corrupted": corrupted,
              "reason": verdict.details.get("reason", "")}
    if corrupted:
        # The same history with the search alone, as if the stale-read proof had not caught it:
        # what an anomaly the proof cannot see costs.
        started = time.perf_counter()
        deadline = time.monotonic() + time_limit_s
        models = compile_keys(op for op in parse_history(events) if op.status is not OpStatus.FAILED)
        results = [search_key(m, deadline) for m in models]
        result["search_s"] = time.perf_counter() - started
        result["search_verdict"] = compose(r.validity for r in results).value
        result["search_states"] = sum(r.states for r in results)
        result["peak_bytes"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    conn.send(result)
    conn.close()


def run_case(case: Case, seed: int, time_limit_s: float) -> dict[str, Any]:
    ctx = multiprocessing.get_context("fork")
    parent, child = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_run_case, args=(case, seed, time_limit_s, child))
    proc.start()
    child.close()
    try:
        result = parent.recv()
    except EOFError:
        result = {"verdict": f"crashed (exit {proc.exitcode})", "elapsed_s": float("nan"), "peak_bytes": 0,
                  "history_bytes": 0, "states": 0, "info": 0, "corrupted": case.invalid, "reason": ""}
    proc.join()
    return result


def cases(sizes: list[int], hard_ops: int, hard_runs: int) -> list[Case]:
    out: list[Case] = []
    for n in sizes:
        target = 2.0 if n <= 10_000 else 30.0
        for invalid in (False, True):
            out.append(Case(f"{n // 1000}k {'invalid' if invalid else 'valid'}", n, 10, 16, 0.05, invalid,
                            append_keys=2, target_s=target))
    for r in range(hard_runs):
        for invalid in (False, True):
            label = "invalid" if invalid else "valid"
            out.append(Case(f"hard #{r + 1} {label}", hard_ops, 1, 16, 0.3, invalid))
            out.append(Case(f"hard 0..4 #{r + 1} {label}", hard_ops, 1, 16, 0.3, invalid, small_values=True))
        out.append(Case(f"hard append #{r + 1}", hard_ops, 1, 16, 0.3, False, append_keys=1))
    return out


# ---- porcupine side by side -----------------------------------------------------------------------


def _effectful(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The events without refused ops (a fail naming an error had no effect): porcupine's parsers
    have no line for them and would keep their invokes open, as if indeterminate."""
    open_: dict[Any, int] = {}
    drop: set[int] = set()
    for i, ev in enumerate(events):
        if ev["type"] == "invoke":
            open_[ev["process"]] = i
        else:
            j = open_.pop(ev["process"])
            if ev["type"] == "fail" and ev.get("error"):
                drop.update((i, j))
    return [ev for i, ev in enumerate(events) if i not in drop]


def own_corpus(seed: int) -> list[porcupine_corpus.Corpus]:
    """Porcupine-shaped histories of our own, valid and with one planted violation, for 1, 10 and 50
    concurrent clients: a register like the Jepsen etcd logs (one key, values 0..4, read / write /
    cas, a few timeouts) and kv like porcupine's (10 keys, get / put / append, no timeouts)."""
    out: list[porcupine_corpus.Corpus] = []
    for j, (clients, invalid) in enumerate((c, i) for c in (1, 10, 50) for i in (False, True)):
        label = f"c{clients:02d}-{'bad' if invalid else 'ok'}"
        reg = Case(f"reg-{label}", 500, 1, clients, 0.02, invalid, small_values=True)
        events, corrupted = simulate(random.Random(seed + 2 * j), reg)
        events = _effectful(events)
        out.append(porcupine_corpus.Corpus("own register", reg.name, events, not corrupted, reg.name))
        kv = Case(f"kv-{label}", 2000, 10, clients, 0.0, invalid, kv=True)
        events, corrupted = simulate(random.Random(seed + 2 * j + 1), kv)
        events = _effectful(events)
        out.append(porcupine_corpus.Corpus("own kv", kv.name, events, not corrupted, kv.name))
    return out


def side_by_side(console: Console, porcupine: Path | None, seed: int, time_limit_s: float) -> None:
    """Our checker and porcupine on the same histories in one run: porcupine's test_data (when its
    mirror is given) and our porcupine-shaped corpus; per history and per-set totals."""
    corpus = own_corpus(seed)
    go: dict[str, tuple[float, str | None]] = {}
    if porcupine is None:
        console.print("[yellow]no --porcupine DIR: porcupine's histories and timings skipped "
                      "(fetch github:anishathalye/porcupine and pass its directory)[/]")
    else:
        with tempfile.TemporaryDirectory(prefix="porcupine-src-") as tmp:
            root = porcupine_corpus.checkout(porcupine, Path(tmp) / "src")
            corpus = porcupine_corpus.load(root) + corpus
            extra = {c.bench: ("etcd" if c.set == "own register" else "kv",
                               (porcupine_corpus.etcd_log if c.set == "own register" else porcupine_corpus.kv_log)(c.events))
                     for c in corpus if c.set.startswith("own")}
            go, note = porcupine_corpus.go_timings(root, extra, time_limit_s)
        console.print(note)
    table = Table("set", "history", "ops", "expected", "ours", "ours s", "porcupine", "porcupine s", "ratio",
                  title="linearizability: ours vs porcupine (check only, history parsed beforehand)")
    totals: dict[str, list[float]] = {}
    wrong = undecided = 0
    for c in corpus:
        ops = parse_history(c.events)
        started = time.perf_counter()
        verdict = check_ops(ops, time_limit_s=time_limit_s)
        ours_s = time.perf_counter() - started
        expected = "valid" if c.valid else "invalid"
        ok = verdict.validity.value == expected
        undecided += verdict.validity.value == "unknown"
        wrong += not ok and verdict.validity.value != "unknown"
        own = c.set.startswith("own")
        bench = "Raftchaos_" + re.sub(r"\W", "_", c.bench) if own else c.bench
        p_s, p_valid = go.get(bench, (float("nan"), None))
        p_verdict = p_valid or ""
        if not own and p_s == p_s:
            p_verdict = expected  # porcupine's own tests assert these verdicts
        t = totals.setdefault(c.set, [0.0, 0.0, 0])
        t[0] += ours_s
        t[1] += p_s if p_s == p_s else 0.0
        t[2] += 1
        if c.set != "porcupine etcd" or not ok or ours_s > 0.05:  # the 102 etcd logs go in the totals only
            table.add_row(c.set, c.name, str(len(ops)), expected,
                          verdict.validity.value if ok else f"[bold red]{verdict.validity.value}[/]",
                          f"{ours_s:.4f}", p_verdict, f"{p_s:.4f}" if p_s == p_s else "",
                          f"{ours_s / p_s:.2f}x" if p_s == p_s and p_s > 0 else "")
    console.print(table)
    summary = Table("set", "histories", "ours s", "porcupine s", "ours / porcupine", title="per-set totals")
    for name, (ours_s, p_s, count) in totals.items():
        summary.add_row(name, str(int(count)), f"{ours_s:.3f}", f"{p_s:.3f}" if p_s else "",
                        f"{ours_s / p_s:.2f}x" if p_s else "")
    console.print(summary)
    console.print(f"wrong verdicts: {wrong} of {len(corpus)}; unknown (past --time-limit): {undecided}")


def read_and_check(console: Console, seed: int, time_limit_s: float) -> None:
    """A 100k-op history written to JSONL, then read and checked as `raftchaos check` does (``read_ops``,
    then ``check_ops`` on every core); and
    the CLI with --time-limit 2 on a hard history, wall clock including its start, and the elapsed
    time the command reports itself (from its process's start to its answer). Targets: read + check
    of 100k ops <= 3 s; the command's answer <= 2.5 s."""
    table = Table("history", "ops", "file MB", "read s", "check s", "total s", "CPU s", "verdict", "target",
                  title=f"read + check (load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores; "
                        f"CPU s: this process and its workers)")
    shapes = [Case("100k register (10 keys, 16 clients)", 100_000, 10, 16, 0.05, False),
              Case("100k mixed (8 register + 2 append keys)", 100_000, 10, 16, 0.05, False, append_keys=2)]
    with tempfile.TemporaryDirectory(prefix="checker-bench-") as tmp:
        for j, case in enumerate(shapes):
            events, _ = simulate(random.Random(seed + 100 + j), case)
            path = Path(tmp) / "h.jsonl"
            path.write_text("".join(json.dumps(ev) + "\n" for ev in events))
            del events  # as in `raftchaos check`, nothing else in memory
            cpu = _cpu_s()
            started = time.perf_counter()
            ops = read_ops(path)
            read_s = time.perf_counter() - started
            verdict = check_ops(ops, time_limit_s=time_limit_s)
            total_s = time.perf_counter() - started
            cpu = _cpu_s() - cpu
            del ops
            table.add_row(case.name, str(case.ops), f"{path.stat().st_size / MB:.0f}", f"{read_s:.3f}",
                          f"{total_s - read_s:.3f}", f"{total_s:.3f}", f"{cpu:.3f}", verdict.validity.value,
                          _met(total_s, 3.0))
        # Timed-out appends of distinct tokens and a read no order of them gives (a timed-out write
        # keeps every order possible): proving it means trying every order of every subset.
        hard: list[dict[str, Any]] = [{"process": 100, "type": "invoke", "f": "write", "value": ""},
                                      {"process": 100, "type": "info", "f": "write", "value": ""}]
        for p in range(18):
            hard += [{"process": p, "type": "invoke", "f": "append", "value": chr(97 + p)},
                     {"process": p, "type": "info", "f": "append", "value": chr(97 + p)}]
        hard += [{"process": 99, "type": "invoke", "f": "read", "value": None},
                 {"process": 99, "type": "ok", "f": "read", "value": "impossible"}]
        path = Path(tmp) / "hard.jsonl"
        path.write_text("".join(json.dumps(ev) + "\n" for ev in hard))
        root = Path(__file__).resolve().parent.parent
        started = time.perf_counter()
        proc = subprocess.run([sys.executable, "-c", "from harness.entry.cli import main; main()", "check", str(path),
                               "--time-limit", "2"], capture_output=True, text=True, cwd=root,
                              env={**os.environ, "PYTHONPATH": str(root)})
        wall = time.perf_counter() - started
        table.add_row(f"raftchaos check --time-limit 2 (hard, exit {proc.returncode}), wall", str(len(hard) // 2),
                      "", "", "", f"{wall:.3f}", "", proc.stdout.split(" ", 1)[0] if proc.stdout else proc.stderr[-80:],
                      _met(wall, 2.5))
        own = re.search(r"elapsed ([0-9.]+) s since the command started", proc.stdout)
        if own is not None:
            table.add_row("  the same, as the command reports it", "", "", "", "", own.group(1), "", "",
                          _met(float(own.group(1)), 2.5))
    console.print(table)


def _cpu_s() -> float:
    """CPU seconds of this process and of its children waited for (the checker's workers): the
    figure to compare while the machine is loaded, when wall time mostly measures the others."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def _met(seconds: float, target: float) -> str:
    return f"{'[green]ok' if seconds <= target else '[red]MISSED'} (<= {target:g} s)[/]"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=None, help="RNG seed (default: random, printed)")
    parser.add_argument("--sizes", default="1000,10000,100000", help="history sizes (ops), comma-separated")
    parser.add_argument("--hard-ops", type=int, default=80, help="ops in each single-key hard history")
    parser.add_argument("--hard-runs", type=int, default=3, help="hard histories per variant")
    parser.add_argument("--time-limit", type=float, default=60.0, help="checker time limit per case (s)")
    parser.add_argument("--porcupine", type=Path, default=None,
                        help="porcupine's source (checkout or git mirror): check its test_data side by side")
    parser.add_argument("--only", choices=["sizes", "porcupine", "read"], default=None,
                        help="run one part: the simulated sizes, the side by side, or read + check")
    args = parser.parse_args(argv)
    seed = args.seed if args.seed is not None else random.randrange(2**32)
    console = Console() if sys.stdout.isatty() else Console(width=160)
    console.print(f"seed {seed}  (replay: python benchmarks/checker.py --seed {seed})")
    if args.porcupine is not None and not args.porcupine.is_dir():
        print(f"checker.py: --porcupine {args.porcupine}: not a directory", file=sys.stderr)
        return 2
    if args.only in (None, "porcupine"):
        side_by_side(console, args.porcupine, seed, args.time_limit)
    if args.only in (None, "read"):
        read_and_check(console, seed, args.time_limit)
    if args.only not in (None, "sizes"):
        return 0
    table = Table("case", "ops", "info", "expected", "verdict", "time s", "states", "target",
                  "search alone", "search s", "search states", "peak RSS MB", title="linearizability checker")
    worst_peak = 0
    for j, case in enumerate(cases([int(s) for s in args.sizes.split(",") if s], args.hard_ops,
                                   args.hard_runs)):
        r = run_case(case, seed + j, args.time_limit)
        expected = "invalid" if r["corrupted"] else "valid"
        verdict = r["verdict"] if r["verdict"] == expected else f"[bold red]{r['verdict']}[/]"
        met = ""
        if case.target_s is not None:
            met = f"{'[green]ok' if r['elapsed_s'] <= case.target_s else '[red]MISSED'} (<= {case.target_s:g} s)[/]"
        worst_peak = max(worst_peak, r["peak_bytes"])
        alone = ("", "", "")
        if "search_s" in r:
            alone = (r["search_verdict"] if r["search_verdict"] == expected else f"[yellow]{r['search_verdict']}[/]",
                     f"{r['search_s']:.3f}", str(r["search_states"]))
        table.add_row(case.name, str(case.ops), str(r["info"]), expected, verdict, f"{r['elapsed_s']:.3f}",
                      str(r["states"]), met, *alone, f"{r['peak_bytes'] / MB:.0f}")
    console.print(table)
    console.print(f"worst peak RSS {worst_peak / MB:.0f} MB "
                  f"({'[green]ok' if worst_peak <= 1024 * MB else '[red]MISSED'}[/] target <= 1024 MB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
