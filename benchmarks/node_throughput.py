"""Node throughput and failover: 3 local nodes (fsync on, kuduraft default timing flags).

Prints acknowledged writes/s and p50/p99 latency for 1 and 16 clients, and the leader failover
time (SIGKILL of the leader to the next acknowledged write, seen by overlapping probes with
short timeouts) over several repetitions. A measurement, not a test: nothing here asserts.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import sys
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks._localnodes import LocalNodes  # noqa: E402


async def http_post(port: int, path: str, body: dict, timeout_s: float,
                    conn: list | None = None) -> tuple[int, dict]:
    """One POST over a kept-alive connection (``conn`` caches [reader, writer])."""
    data = json.dumps(body).encode()
    if conn is not None and conn:
        reader, writer = conn
    else:
        reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), timeout_s)
        if conn is not None:
            conn[:] = [reader, writer]
    try:
        writer.write(f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: {len(data)}\r\n\r\n".encode()
                     + data)
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout_s)
        status = int(head.split(b" ", 2)[1])
        length = 0
        for line in head.split(b"\r\n"):
            if line.lower().startswith(b"content-length:"):
                length = int(line.split(b":")[1])
        payload = await asyncio.wait_for(reader.readexactly(length), timeout_s)
        if conn is None:
            writer.close()
        return status, json.loads(payload)
    except BaseException:
        writer.close()
        if conn is not None:
            conn.clear()
        raise


async def drive(nodes: LocalNodes, leader: str, clients: int, duration_s: float) -> dict:
    port = nodes.http[leader]
    latencies: list[float] = []
    errors = 0
    stop_at = time.monotonic() + duration_s

    async def client(cid: int) -> None:
        nonlocal errors
        conn: list = []
        i = 0
        while time.monotonic() < stop_at:
            i += 1
            t0 = time.monotonic()
            try:
                status, _ = await http_post(port, "/kv/put", {"key": f"k{cid % 10}",
                                                              "value": f"{cid}-{i}"}, 5.0, conn)
            except (TimeoutError, OSError, asyncio.IncompleteReadError):
                errors += 1
                continue
            if status == 200:
                latencies.append(time.monotonic() - t0)
            else:
                errors += 1

    t0 = time.monotonic()
    await asyncio.gather(*(client(c) for c in range(clients)))
    elapsed = time.monotonic() - t0
    latencies.sort()

    def q(p: float) -> float:
        if not latencies:
            return float("nan")
        return latencies[min(len(latencies) - 1, int(p * len(latencies)))] * 1000

    return {"clients": clients, "acked": len(latencies), "errors": errors,
            "writes_per_s": len(latencies) / elapsed, "p50_ms": q(0.50), "p99_ms": q(0.99)}


async def failover_once(nodes: LocalNodes, rng: random.Random, probes: int = 8,
                        probe_timeout_s: float = 0.2) -> float:
    """Kill the leader; overlapping probes on every live node measure the outage."""
    old = nodes.wait_leader()
    alive = [n for n in nodes.ids if n != old]
    # Warm up: the cluster must be serving before the kill.
    status, _ = await http_post(nodes.http[old], "/kv/put", {"key": "warm", "value": "x"}, 5.0)
    assert status == 200, status
    killed_at = time.monotonic()
    nodes.kill(old)
    done = asyncio.Event()
    acked_at: list[float] = []

    async def probe(pid: int) -> None:
        i = 0
        while not done.is_set():
            i += 1
            node = alive[(pid + i) % len(alive)]
            try:
                status, _ = await http_post(nodes.http[node], "/kv/put",
                                            {"key": "probe", "value": f"{pid}-{i}"}, probe_timeout_s)
            except (TimeoutError, OSError, asyncio.IncompleteReadError):
                continue
            if status == 200:
                acked_at.append(time.monotonic())
                done.set()
            else:
                await asyncio.sleep(0.005)  # a not-leader answer: next probe on another node

    tasks = [asyncio.create_task(probe(p)) for p in range(probes)]
    await asyncio.wait_for(done.wait(), timeout=60)
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    outage = min(acked_at) - killed_at
    nodes.start(old)
    return outage


def wait_all_following(nodes: LocalNodes, timeout_s: float = 30.0) -> str:
    """Every node answers and names the same leader, so the next failover starts from a whole
    cluster (a restarted victim still starting up would make the next outage its start-up time)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        leader = nodes.leader()
        statuses = [nodes.status(n) for n in nodes.ids]
        if leader is not None and all(s is not None and s.get("leader") == leader
                                      and s.get("last_leader_contact_age_ms") is not None
                                      or (s is not None and s.get("role") == "LEADER")
                                      for s in statuses):
            return leader
        time.sleep(0.05)  # polling a benchmark's own cluster; nothing is asserted
    raise RuntimeError(f"the cluster did not settle within {timeout_s}s; logs in {nodes.dir}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--duration", type=float, default=10.0, help="seconds per throughput run")
    ap.add_argument("--failovers", type=int, default=5)
    ap.add_argument("--seed", type=int, default=None)
    ap.add_argument("--flag", action="append", default=[], help="extra node flag name=value")
    args = ap.parse_args()
    seed = args.seed if args.seed is not None else random.randrange(2**31)
    console = Console()
    console.print(f"seed {seed}")
    rng = random.Random(seed)
    flags = dict(f.split("=", 1) for f in args.flag)
    nodes = LocalNodes(3, flags)
    try:
        nodes.start_all()
        leader = nodes.wait_leader()
        table = Table(title="acknowledged writes (3 nodes, fsync on, default flags)")
        for col in ("clients", "acked", "errors", "writes/s", "p50 ms", "p99 ms"):
            table.add_column(col, justify="right")
        for clients in (1, 16):
            r = asyncio.run(drive(nodes, leader, clients, args.duration))
            table.add_row(str(r["clients"]), str(r["acked"]), str(r["errors"]),
                          f"{r['writes_per_s']:.0f}", f"{r['p50_ms']:.1f}", f"{r['p99_ms']:.1f}")
        console.print(table)
        outages = []
        for _ in range(args.failovers):
            outages.append(asyncio.run(failover_once(nodes, rng)))
            console.print(f"failover: {outages[-1] * 1000:.0f} ms")
            wait_all_following(nodes)
        met_s = 1.5  # default raft_heartbeat_interval_ms x leader_failure_max_missed_heartbeat_periods
        console.print(f"failover median {statistics.median(outages) * 1000:.0f} ms over "
                      f"{len(outages)} (target <= {1.5 * met_s * 1000 + 100:.0f} ms); all: "
                      + ", ".join(f"{o * 1000:.0f}" for o in outages))
    finally:
        nodes.stop()


if __name__ == "__main__":
    main()
