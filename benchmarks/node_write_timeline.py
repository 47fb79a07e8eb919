"""Per-write step timeline at a few clients on the nodes' own clocks (issue #14): where a write's time goes.

Starts 3 local nodes (fsync on, default flags) under benchmarks/_tracednode.py, writes to the
leader with the driver of node_vs_etcd.py for ``--duration`` seconds, then lines up every
acknowledged write's steps across the three processes (CLOCK_MONOTONIC stamps, one clock on one
machine) and prints the p50 / p90 of each step, which follower's reply committed the write, how
often the leader's own fsync was the last thing the commit waited for, and what each Peer was
doing when the write arrived (a request in flight, of which kind). Relative figures: the
wrappers cost a little on every step. A measurement, not a test.
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import json
import os
import signal
import statistics
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks._kvdriver import run_load  # noqa: E402
from benchmarks._localnodes import ROOT, LocalNodes  # noqa: E402
from benchmarks.node_vs_etcd import node_body, node_ok  # noqa: E402

Stamp = tuple[int, str, dict[str, Any]]


class TracedNodes(LocalNodes):
    """LocalNodes whose processes stamp their write-path steps."""

    def trace_path(self, node: str) -> Path:
        return self.dir / f"{node}.trace"

    def start(self, node: str) -> None:
        self.start_with(node, [str(ROOT / "benchmarks" / "_tracednode.py")],
                        {"RAFTCHAOS_TRACE": str(self.trace_path(node))})

    def collect(self, timeout_s: float = 10.0) -> dict[str, list[Stamp]]:
        """Every node's stamps since the last collect (SIGUSR1, then wait for its dump line)."""
        for n in self.ids:
            self.trace_path(n).unlink(missing_ok=True)
            self.procs[n].send_signal(signal.SIGUSR1)
        deadline = time.monotonic() + timeout_s
        out: dict[str, list[Stamp]] = {}
        for n in self.ids:
            while True:
                path = self.trace_path(n)
                text = path.read_text() if path.exists() else ""
                if text.endswith('"dump", {}]\n'):
                    break
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{n} did not dump its trace; logs in {self.dir}")
                time.sleep(0.02)
            out[n] = [tuple(json.loads(line)) for line in text.splitlines()]
        return out


class Track:
    """One process's stamps of one step kind, in time order, for 'first at or after t' lookups."""

    def __init__(self, stamps: list[Stamp]) -> None:
        self.by_step: dict[str, list[Stamp]] = {}
        for s in stamps:
            self.by_step.setdefault(s[1], []).append(s)
        self.times = {k: [s[0] for s in v] for k, v in self.by_step.items()}

    def first(self, step: str, t: int, pred: Any = None) -> Stamp | None:
        times = self.times.get(step, [])
        i = bisect.bisect_left(times, t)
        for s in self.by_step[step][i:i + 200] if step in self.by_step else []:
            if pred is None or pred(s[2]):
                return s
        return None

    def last(self, step: str, t: int) -> Stamp | None:
        times = self.times.get(step, [])
        i = bisect.bisect_right(times, t)
        return self.by_step[step][i - 1] if i else None


Step = tuple[str, Track, str, Any]


def walk(steps: list[Step], start: int) -> dict[str, int] | None:
    """Follow ``steps`` (key, track, step, predicate) from ``start``, each the first stamp at or
    after the previous one: the stamp time per key, or None where the chain breaks."""
    found: dict[str, int] = {}
    prev = start
    for key, track, step, pred in steps:
        s = track.first(step, prev, pred)
        if s is None:
            return None
        found[key] = prev = s[0]
    return found


def holds(i: int) -> Any:
    return lambda a: a.get("first") is not None and a["first"] <= i <= a["last"]


STEPS = [
    ("http bytes in -> Replicate called", "rx", "rep"),
    ("Replicate -> request queued (fast peer)", "rep", "sq"),
    ("request queued -> written (end of turn)", "sq", "sf"),
    ("written -> follower bytes in", "sf", "frx"),
    ("follower bytes in -> decoded", "frx", "fdec"),
    ("decoded -> Update handler runs", "fdec", "fus"),
    ("Update runs -> WAL thread starts", "fus", "fws"),
    ("follower WAL write+fsync", "fws", "fwe"),
    ("WAL done -> handler resumes", "fwe", "fdur"),
    ("handler resumes -> reply written", "fdur", "ftx"),
    ("reply written -> leader bytes in", "ftx", "crx"),
    ("leader bytes in -> Peer has reply", "crx", "ri"),
    ("Peer has reply -> commit", "ri", "c"),
    ("commit -> HTTP answer written", "c", "tx"),
    ("TOTAL http in -> answer out", "rx", "tx"),
    ("leader: Replicate -> WAL thread starts", "rep", "lws"),
    ("leader WAL write+fsync", "lws", "lwe"),
    ("leader: WAL done -> local vote", "lwe", "ld"),
    ("client: answer out -> next request in", "tx", "next_rx"),
]


def timeline(traces: dict[str, list[Stamp]], leader: str) -> tuple[list[dict[str, int]], Counter[str]]:
    tracks = {n: Track(s) for n, s in traces.items()}
    lt = tracks[leader]
    followers = [n for n in traces if n != leader]
    rows: list[dict[str, int]] = []
    notes: Counter[str] = Counter()
    for app_stamp in lt.by_step.get("appended", []):
        i = app_stamp[2]["index"]
        t = {"app": app_stamp[0]}
        rep = lt.last("replicate_in", app_stamp[0])
        rx = lt.last("http_rx", app_stamp[0])
        c = lt.first("commit", app_stamp[0], lambda a, i=i: a["before"] < i <= a["index"])
        if rep is None or rx is None or c is None:
            continue
        t["rx"], t["c"], t["rep"] = rx[0], c[0], rep[0]
        for pending, kind in rep[2]["peers"].values():
            notes[f"at arrival, peer busy: {pending} ({kind if pending else '-'})"] += 1
        tx = lt.first("http_tx", c[0])
        nxt = lt.first("http_rx", tx[0]) if tx else None
        if tx is None or nxt is None:
            continue
        t["tx"], t["next_rx"] = tx[0], nxt[0]
        per_peer: dict[str, dict[str, int]] = {}
        for f in followers:
            ft = tracks[f]
            sq = lt.first("send_queued", rep[0], lambda a, f=f, i=i: a["peer"] == f and holds(i)(a))
            if sq is None:
                continue
            p = {"sq": sq[0]}
            steps = [("sf", lt, "send_flush", lambda a, f=f: a["peer"] == f),
                     ("frx", ft, "server_rx", None), ("fdec", ft, "server_decoded", None),
                     ("fus", ft, "update_start", holds(i)), ("fws", ft, "wal_start", holds(i)),
                     ("fwe", ft, "wal_end", None), ("fdur", ft, "follower_durable", None),
                     ("ftx", ft, "reply_tx", None), ("crx", lt, "client_rx", None),
                     ("ri", lt, "reply_in", lambda a, f=f, i=i: a["peer"] == f and a["last"] >= i)]
            found = walk(steps, sq[0])
            if found is not None:
                per_peer[f] = {**p, **found}
        done = {f: p for f, p in per_peer.items() if p["ri"] <= t["c"]}
        if not done:
            continue
        fast = min(done, key=lambda f: done[f]["ri"])
        t.update(done[fast])
        notes[f"committed by the reply of {fast}"] += 1
        ws = lt.first("wal_start", rep[0], holds(i))
        if ws is not None:
            we = lt.first("wal_end", ws[0])
            ld = lt.first("local_durable", ws[0], lambda a, i=i: a["index"] >= i)
            if we is not None and ld is not None:
                t.update(lws=ws[0], lwe=we[0], ld=ld[0])
                notes["leader's own vote was last (its fsync on the critical path)"
                      if ld[0] > t["ri"] else "a follower's reply was last"] += 1
        sends = lt.by_step.get("send_next", [])
        carrier = lt.last("send_next", t["sq"])
        if carrier is not None and sends:
            notes[f"the fast peer's request carrying it went out on: {carrier[2]['trigger']}"] += 1
        rows.append(t)
    return rows, notes


COMMIT_ONLY_STEPS = [
    ("queued -> written", "sq", "sf"),
    ("written -> follower bytes in", "sf", "frx"),
    ("bytes in -> decoded", "frx", "fdec"),
    ("decoded -> Update handler runs", "fdec", "fus"),
    ("Update handler runs -> returns", "fus", "fue"),
    ("handler returns -> reply written", "fue", "ftx"),
    ("reply written -> leader bytes in", "ftx", "crx"),
    ("leader bytes in -> Peer has reply", "crx", "ri"),
    ("TOTAL round trip", "sq", "ri"),
]


def commit_only_trips(traces: dict[str, list[Stamp]], leader: str) -> list[dict[str, int]]:
    """The round trips of requests without ops (the commit-only follow-ups): what a write that
    arrives meanwhile waits for."""
    tracks = {n: Track(s) for n, s in traces.items()}
    lt = tracks[leader]
    rows = []
    for sq in lt.by_step.get("send_queued", []):
        if sq[2]["first"] is not None:
            continue
        f = sq[2]["peer"]
        ft = tracks[f]
        p = {"sq": sq[0]}
        steps = [("sf", lt, "send_flush", lambda a, f=f: a["peer"] == f),
                 ("frx", ft, "server_rx", None), ("fdec", ft, "server_decoded", None),
                 ("fus", ft, "update_start", lambda a: a["first"] is None),
                 ("fue", ft, "update_end", None), ("ftx", ft, "reply_tx", None),
                 ("crx", lt, "client_rx", None),
                 ("ri", lt, "reply_in", lambda a, f=f: a["peer"] == f)]
        found = walk(steps, sq[0])
        if found is not None:
            rows.append({**p, **found})
    return rows


def print_steps(console: Console, title: str, steps: list[tuple[str, str, str]],
                rows: list[dict[str, int]]) -> None:
    table = Table(title=title)
    for col in ("step", "p50", "p90", "mean"):
        table.add_column(col, justify="right" if col != "step" else "left")
    for name, a, b in steps:
        d = [(r[b] - r[a]) / 1e6 for r in rows if a in r and b in r]
        if d:
            d.sort()
            table.add_row(name, f"{statistics.median(d):.3f}", f"{d[int(0.9 * len(d))]:.3f}",
                          f"{statistics.fmean(d):.3f}")
    console.print(table)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--duration", type=float, default=5.0, help="seconds of load")
    ap.add_argument("--clients", type=int, default=1)
    args = ap.parse_args()
    console = Console(width=max(Console().width, 120))
    if args.duration <= 0 or args.clients < 1:
        console.print("node_write_timeline: --duration and --clients must be positive")
        return 254
    load = os.getloadavg()
    console.print(f"load average {load[0]:.1f} {load[1]:.1f} {load[2]:.1f} on {os.cpu_count()} CPUs")
    nodes = TracedNodes(3)
    try:
        nodes.start_all()
        leader = nodes.wait_leader()
        asyncio.run(run_load(nodes.http[leader], "/kv/put", node_body, 4, 1.0, node_ok))  # warm-up
        nodes.collect()
        result = asyncio.run(run_load(nodes.http[leader], "/kv/put", node_body, args.clients,
                                      args.duration, node_ok))
        traces = nodes.collect()
    finally:
        nodes.stop()
    rows, notes = timeline(traces, leader)
    console.print(f"{result.acked} writes acknowledged ({result.writes_per_s:.0f} w/s, client p50 "
                  f"{result.quantile_ms(0.5):.2f} ms); {len(rows)} lined up across the nodes")
    print_steps(console, f"per-write steps, {args.clients} client(s), ms (node clocks)", STEPS, rows)
    trips = commit_only_trips(traces, leader)
    print_steps(console, f"{len(trips)} requests without ops (commit-only follow-ups), ms",
                COMMIT_ONLY_STEPS, trips)
    for note, n in sorted(notes.items()):
        console.print(f"  {note}: {n}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
