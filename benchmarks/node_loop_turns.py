"""Event-loop turns per acknowledged write on each node (issue #14): evidence load cannot distort.

Starts 3 local nodes (fsync on, default flags) through benchmarks/_countednode.py, writes to the
leader with the same driver as node_vs_etcd.py for ``--duration`` seconds at each client count,
and prints per acknowledged write, per node: loop iterations, callbacks run, hand-backs from the
WAL/metadata threads, tasks created, and CPU ms (all threads, /proc/<pid>/stat). Wall-clock
throughput on a loaded machine is noise; these counts are what the node does per write
whatever the load (CPU ms is shown beside them, and does depend on it). A measurement, not a test.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks._kvdriver import cpu_seconds, run_load  # noqa: E402
from benchmarks._localnodes import ROOT, LocalNodes  # noqa: E402
from benchmarks.node_vs_etcd import node_body, node_ok  # noqa: E402

METRICS = ("iterations", "callbacks", "threadsafe", "tasks")


class CountedNodes(LocalNodes):
    """LocalNodes whose processes run under the loop counters."""

    def counts_path(self, node: str) -> Path:
        return self.dir / f"{node}.loop-counts"

    def start(self, node: str) -> None:
        self.start_with(node, [str(ROOT / "benchmarks" / "_countednode.py")],
                        {"RAFTCHAOS_LOOP_COUNTS": str(self.counts_path(node))})

    def snapshot(self, timeout_s: float = 5.0) -> dict[str, dict[str, int]]:
        """Every node's counters now (SIGUSR1, then wait for each node's new line)."""
        seen = {n: self._lines(n) for n in self.ids}
        for proc in self.procs.values():
            proc.send_signal(signal.SIGUSR1)
        deadline = time.monotonic() + timeout_s
        while any(self._lines(n) == seen[n] for n in self.ids):
            if time.monotonic() > deadline:
                raise RuntimeError(f"nodes did not write their counters; logs in {self.dir}")
            time.sleep(0.02)
        return {n: json.loads(self.counts_path(n).read_text().splitlines()[-1]) for n in self.ids}

    def _lines(self, node: str) -> int:
        path = self.counts_path(node)
        return len(path.read_text().splitlines()) if path.exists() else 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--duration", type=float, default=5.0, help="seconds per client count")
    ap.add_argument("--clients", type=int, nargs="+", default=[1, 16])
    args = ap.parse_args()
    console = Console(width=max(Console().width, 120))
    if args.duration <= 0 or any(c < 1 for c in args.clients):
        console.print("node_loop_turns: --duration and --clients must be positive")
        return 254
    load = os.getloadavg()
    console.print(f"load average {load[0]:.1f} {load[1]:.1f} {load[2]:.1f} on {os.cpu_count()} CPUs")
    nodes = CountedNodes(3)
    try:
        nodes.start_all()
        leader = nodes.wait_leader()
        asyncio.run(run_load(nodes.http[leader], "/kv/put", node_body, 4, 1.0, node_ok))  # warm-up
        table = Table(title="per acknowledged write (3 local nodes, fsync on, writes to the leader)")
        for col in ("clients", "node", "w/s", "iterations", "callbacks", "thread hand-backs",
                    "tasks", "CPU ms"):
            table.add_column(col, justify="right")
        for clients in args.clients:
            pids = {n: p.pid for n, p in nodes.procs.items()}
            before, cpu0 = nodes.snapshot(), {n: cpu_seconds([pid]) for n, pid in pids.items()}
            result = asyncio.run(run_load(nodes.http[leader], "/kv/put", node_body, clients,
                                          args.duration, node_ok))
            after, cpu1 = nodes.snapshot(), {n: cpu_seconds([pid]) for n, pid in pids.items()}
            writes = max(1, result.acked)
            for n in nodes.ids:
                role = "leader" if n == leader else "follower"
                table.add_row(str(clients), f"{n} ({role})", f"{result.writes_per_s:.0f}",
                              *(f"{(after[n][m] - before[n][m]) / writes:.2f}" for m in METRICS),
                              f"{(cpu1[n] - cpu0[n]) * 1000 / writes:.2f}")
        console.print(table)
    finally:
        nodes.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
