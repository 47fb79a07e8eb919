"""The node side by side with etcd (issue #14): 3 members on loopback each, fsync on, one driver.

Both clusters run for the whole benchmark; repetitions alternate node, etcd, node, etcd... so
the load the machine carries at any moment hits both alike. Every write goes to the leader over
a kept-alive HTTP connection from the same asyncio client (benchmarks/_kvdriver.py): the node's
``POST /kv/put`` and etcd's v3 gateway ``POST /v3/kv/put`` (base64 key and value). Cluster CPU
per write is the members' user+system time (/proc/<pid>/stat) over the acknowledged writes.

etcd is Debian's ``etcd-server`` (3.4.x, `make etcd-setup`); where it is absent the benchmark
says so and exits 3 (environment cannot run), measuring nothing. A measurement, not a test.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import random
import statistics
import sys
from collections.abc import Callable
from pathlib import Path

from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks._etcd import EtcdCluster, find_etcd  # noqa: E402
from benchmarks._kvdriver import LoadResult, measure, run_load  # noqa: E402
from benchmarks._localnodes import LocalNodes  # noqa: E402

EXIT_ENVIRONMENT = 3
KEYS = 10


def node_body(cid: int, seq: int) -> bytes:
    return json.dumps({"key": f"k{cid % KEYS}", "value": f"{cid}-{seq}"}).encode()


def etcd_body(cid: int, seq: int) -> bytes:
    key = base64.b64encode(f"k{cid % KEYS}".encode()).decode()
    value = base64.b64encode(f"{cid}-{seq}".encode()).decode()
    return json.dumps({"key": key, "value": value}).encode()


def node_ok(status: int, body: bytes) -> bool:
    return status == 200


def etcd_ok(status: int, body: bytes) -> bool:
    return status == 200 and b'"header"' in body


class Side:
    """One system under comparison: where its leader listens and which processes to charge."""

    def __init__(self, name: str, port: Callable[[], int], path: str,
                 body: Callable[[int, int], bytes], ok: Callable[[int, bytes], bool],
                 pids: Callable[[], list[int]]) -> None:
        self.name, self.port, self.path, self.body, self.ok, self.pids = name, port, path, body, ok, pids
        self.results: dict[int, list[LoadResult]] = {}

    def run(self, clients: int, duration_s: float) -> LoadResult:
        r = asyncio.run(measure(self.pids(), lambda: run_load(self.port(), self.path, self.body,
                                                              clients, duration_s, self.ok)))
        self.results.setdefault(clients, []).append(r)
        return r


def summary(results: list[LoadResult]) -> tuple[float, float, float, float]:
    """Median over repetitions of writes/s, p50 ms, p99 ms and CPU ms per write."""
    return (statistics.median(r.writes_per_s for r in results),
            statistics.median(r.quantile_ms(0.5) for r in results),
            statistics.median(r.quantile_ms(0.99) for r in results),
            statistics.median(r.cpu_ms_per_write for r in results))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--duration", type=float, default=8.0, help="seconds per measured run")
    ap.add_argument("--reps", type=int, default=6, help="alternating repetitions per client count")
    ap.add_argument("--clients", type=int, nargs="+", default=[1, 16])
    ap.add_argument("--seed", type=int, default=None, help="seeds which side goes first")
    args = ap.parse_args()
    console = Console(width=max(Console().width, 130))
    if args.duration <= 0 or args.reps < 1 or any(c < 1 for c in args.clients):
        console.print("node_vs_etcd: --duration, --reps and --clients must be positive")
        return 254
    binary = find_etcd()
    if binary is None:
        console.print("node_vs_etcd: SKIPPED: no etcd binary (install Debian's etcd-server: "
                      "`make etcd-setup`); nothing measured")
        return EXIT_ENVIRONMENT
    seed = args.seed if args.seed is not None else random.randrange(2**31)
    rng = random.Random(seed)
    load = os.getloadavg()
    console.print(f"seed {seed}; load average {load[0]:.1f} {load[1]:.1f} {load[2]:.1f} "
                  f"on {os.cpu_count()} CPUs; {binary}")
    nodes = LocalNodes(3)
    etcd = EtcdCluster(binary)
    try:
        nodes.start_all()
        etcd.start_all()
        node_leader = nodes.wait_leader()
        etcd_leader = etcd.wait_leader()
        sides = [
            Side("raftchaos node", lambda: nodes.http[node_leader], "/kv/put", node_body, node_ok,
                 lambda: [p.pid for p in nodes.procs.values()]),
            Side("etcd", lambda: etcd.client_port[etcd_leader], "/v3/kv/put", etcd_body, etcd_ok,
                 etcd.pids),
        ]
        for side in sides:  # warm-up, not counted: connections, caches, the first WAL segment
            side.run(4, 1.0)
            side.results.clear()
        order = sides[:] if rng.random() < 0.5 else sides[::-1]
        for rep in range(args.reps):
            for clients in args.clients:
                for side in order:
                    r = side.run(clients, args.duration)
                    console.print(f"rep {rep + 1} {side.name:>14} {clients:>2} clients: "
                                  f"{r.writes_per_s:7.0f} w/s p50 {r.quantile_ms(0.5):6.1f} ms "
                                  f"p99 {r.quantile_ms(0.99):6.1f} ms cpu/write "
                                  f"{r.cpu_ms_per_write:5.2f} ms errors {r.errors}")
            order.reverse()
        table = Table(title=f"median of {args.reps} alternating repetitions of {args.duration:.0f}s "
                            "(3 members on loopback, fsync on, writes to the leader)")
        for col in ("clients", "node w/s", "etcd w/s", "ratio", "node p50/p99 ms",
                    "etcd p50/p99 ms", "node cpu/write ms", "etcd cpu/write ms"):
            table.add_column(col, justify="right")
        node_side, etcd_side = sides
        for clients in args.clients:
            n = summary(node_side.results[clients])
            e = summary(etcd_side.results[clients])
            table.add_row(str(clients), f"{n[0]:.0f}", f"{e[0]:.0f}", f"{n[0] / e[0]:.2f}",
                          f"{n[1]:.1f} / {n[2]:.1f}", f"{e[1]:.1f} / {e[2]:.1f}",
                          f"{n[3]:.2f}", f"{e[3]:.2f}")
        console.print(table)
        load = os.getloadavg()
        console.print(f"load average at the end {load[0]:.1f} {load[1]:.1f} {load[2]:.1f}")
    finally:
        nodes.stop()
        etcd.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
