"""Fuzz a 3-node local cluster with generated HTTP requests and RPC frames while a client writes.

Sends ``--count`` (default 10^6) inputs from a seeded generator (benchmarks/_fuzzgen.py: mutations of
valid requests and frames) straight to every node's HTTP and RPC listeners over many concurrent
connections, interleaved with real writes from one client through the leader. At the end it reads
every acknowledged write back from the leader and prints: node exits (must be 0), acknowledged
writes, lost writes (must be 0), inputs/s, and how the nodes answered. A measurement: the exit
status says valid (0), invalid (1: a node exited, a write was lost or a connection hung) or
unknown (2: no write was acknowledged, so serving cannot be judged).

"answers: rpc responses" is below "inputs: rpc kept" by design: a node closes a connection at its
first bad frame without waiting for the requests still in flight on it (nodes/rpc_server.py), so
their responses are dropped with the connection.

    nice .venv/bin/python benchmarks/fuzz_node.py [--count N] [--seed S] [--workers W]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks._fuzzgen import Gen  # noqa: E402
from benchmarks._localnodes import LocalNodes  # noqa: E402

EXCHANGE_TIMEOUT_S = 30.0
"""A connection that neither answers nor closes within this is counted as a hang (a finding)."""


def _rpc_addrs(nodes: LocalNodes) -> dict[str, int]:
    doc = json.loads(nodes.config.read_text())
    return {n: int(v["rpc"].rsplit(":", 1)[1]) for n, v in doc["nodes"].items()}


async def _exchange(port: int, data: bytes) -> bytes | None:
    """Send, half-close, read to EOF; None on a hang. A reset or refused connect reads as b""."""
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), EXCHANGE_TIMEOUT_S)
    except (OSError, TimeoutError):
        return b""
    try:
        writer.write(data)
        if writer.can_write_eof():
            writer.write_eof()
        return await asyncio.wait_for(reader.read(), EXCHANGE_TIMEOUT_S)
    except TimeoutError:
        return None
    except OSError:
        return b""
    finally:
        writer.close()


class Stats:
    def __init__(self) -> None:
        self.inputs = Counter[str]()
        self.answers = Counter[str]()
        self.hangs = 0
        self.connections = 0


async def fuzzer(wid: int, gen: Gen, nodes: LocalNodes, rpc_ports: dict[str, int], budget: list[int],
                 stats: Stats, progress: Progress, task: Any) -> None:
    rng = gen.rng
    rid = wid * 10**9
    while budget[0] > 0:
        batch = min(budget[0], rng.randint(1, 48))
        budget[0] -= batch
        node = rng.choice(nodes.ids)
        closing = rng.random() < 0.5
        if rng.random() < 0.5:
            parts = [gen.http_kept() for _ in range(batch - closing)] + ([gen.http_closing()] if closing else [])
            stats.inputs["http kept"] += batch - closing
            stats.inputs["http closing"] += closing
            out = await _exchange(nodes.http[node], b"".join(parts))
            if out is not None:
                for code in _http_codes(out):
                    stats.answers[f"http {code}"] += 1
        else:
            parts = []
            for _ in range(batch - closing):
                rid += 1
                parts.append(gen.rpc_kept(rid))
            if closing:
                parts.append(gen.rpc_closing(rid + 1))
            stats.inputs["rpc kept"] += batch - closing
            stats.inputs["rpc closing"] += closing
            out = await _exchange(rpc_ports[node], b"".join(parts))
            if out is not None:
                stats.answers["rpc responses"] += _count_frames(out)
        stats.connections += 1
        if out is None:
            stats.hangs += 1
        progress.advance(task, batch)


def _http_codes(raw: bytes) -> list[str]:
    """Status codes of the responses (HEAD is never sent, so Content-Length always follows)."""
    codes: list[str] = []
    pos = 0
    while True:
        end = raw.find(b"\r\n\r\n", pos)
        if end < 0 or not raw.startswith(b"HTTP/1.1 ", pos):
            return codes
        head = raw[pos:end].split(b"\r\n")
        codes.append(head[0][9:12].decode())
        length = next((int(h.split(b":")[1]) for h in head[1:] if h.lower().startswith(b"content-length:")), 0)
        pos = end + 4 + (0 if codes[-1] == "100" else length)


def _count_frames(raw: bytes) -> int:
    n, pos = 0, 0
    while pos + 4 <= len(raw):
        pos += 4 + int.from_bytes(raw[pos:pos + 4], "big")
        n += pos <= len(raw)
    return n


class Writer:
    """One client writing new keys through whichever node is leader; remembers what was acknowledged."""

    def __init__(self, nodes: LocalNodes, seed: int) -> None:
        self.nodes = nodes
        self.prefix = f"ack-{seed}"
        self.acked: dict[str, str] = {}
        self.attempts = 0
        self.leader: str | None = None

    async def post(self, node: str, path: str, body: dict[str, Any], timeout_s: float = 5.0) -> tuple[int, dict]:
        data = json.dumps(body).encode()
        req = (f"POST {path} HTTP/1.1\r\nHost: w\r\nContent-Length: {len(data)}\r\nConnection: close\r\n\r\n"
               .encode() + data)
        reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", self.nodes.http[node]),
                                                timeout_s)
        try:
            writer.write(req)
            raw = await asyncio.wait_for(reader.read(), timeout_s)
        finally:
            writer.close()
        head, _, payload = raw.partition(b"\r\n\r\n")
        return int(head.split(b" ", 2)[1]), json.loads(payload or b"{}")

    async def find_leader(self) -> str:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            leader = await asyncio.to_thread(self.nodes.leader)
            if leader:
                self.leader = leader
                return leader
            await asyncio.sleep(0.05)  # poll interval only: the deadline bounds the wait
        raise RuntimeError("no leader for 60 s")

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            key = f"{self.prefix}-{self.attempts}"
            self.attempts += 1
            try:
                node = self.leader or await self.find_leader()
                status, doc = await self.post(node, "/kv/put", {"key": key, "value": key})
                if status == 200:
                    self.acked[key] = key
                else:
                    self.leader = None
            except (OSError, TimeoutError, ValueError, IndexError):
                self.leader = None
            try:
                await asyncio.wait_for(stop.wait(), 0.02)  # pacing between writes, not synchronisation
            except TimeoutError:
                pass

    async def lost(self) -> dict[str, Any]:
        leader = await self.find_leader()
        sem = asyncio.Semaphore(16)
        lost: dict[str, Any] = {}

        async def check(key: str) -> None:
            async with sem:
                for _ in range(3):
                    try:
                        status, doc = await self.post(leader, "/kv/get", {"key": key}, 10.0)
                        break
                    except (OSError, TimeoutError):
                        status, doc = 0, {}
                if status != 200 or doc.get("value") != self.acked[key]:
                    lost[key] = (status, doc.get("value"))

        await asyncio.gather(*(check(k) for k in self.acked))
        return lost


async def run(args: argparse.Namespace, console: Console) -> int:
    nodes = LocalNodes(3)
    nodes.start_all()
    try:
        nodes.wait_leader(60)
        rpc_ports = _rpc_addrs(nodes)
        gen = Gen(random.Random(args.seed))
        stats = Stats()
        writer = Writer(nodes, args.seed)
        stop = asyncio.Event()
        budget = [args.count]
        with Progress(TextColumn("fuzz"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[info]}"),
                      TimeElapsedColumn(), console=console) as progress:
            task = progress.add_task("fuzz", total=args.count, info="")
            wtask = asyncio.create_task(writer.run(stop))
            t0 = time.monotonic()

            async def ticker() -> None:
                while not stop.is_set():
                    done = args.count - budget[0]
                    alive = sum(p.poll() is None for p in nodes.procs.values())
                    progress.update(task, info=f"{done / max(1e-9, time.monotonic() - t0):,.0f}/s  acked "
                                    f"{len(writer.acked)}  nodes up {alive}/3  hangs {stats.hangs}")
                    try:
                        await asyncio.wait_for(stop.wait(), 1.0)
                    except TimeoutError:
                        pass

            ttask = asyncio.create_task(ticker())
            await asyncio.gather(*(fuzzer(w, gen, nodes, rpc_ports, budget, stats, progress, task)
                                   for w in range(args.workers)))
            elapsed = time.monotonic() - t0
            stop.set()
            await asyncio.gather(wtask, ttask)
        exits = {n: p.poll() for n, p in nodes.procs.items() if p.poll() is not None}
        lost = await writer.lost() if not exits or len(exits) < 2 else {"?": "no quorum"}
    finally:
        nodes.stop()

    sent = sum(stats.inputs.values())
    table = Table(title=f"fuzz_node: seed {args.seed}, {sent:,} inputs, {args.workers} workers")
    table.add_column("measure")
    table.add_column("value", justify="right")
    for name, value in [("node exits", f"{len(exits)} {exits or ''}"),
                        ("acknowledged writes", f"{len(writer.acked):,} of {writer.attempts:,}"),
                        ("lost writes", f"{len(lost)}"),
                        ("hung connections", f"{stats.hangs}"),
                        ("inputs/s", f"{sent / elapsed:,.0f} ({elapsed:.0f} s)"),
                        ("connections", f"{stats.connections:,}"),
                        ("valid fuzz puts generated", f"{gen.fuzz_writes:,}")]:
        table.add_row(name, value)
    for name, n in sorted(stats.inputs.items()):
        table.add_row(f"inputs: {name}", f"{n:,}")
    for name, n in sorted(stats.answers.items()):
        table.add_row(f"answers: {name}", f"{n:,}")
    console.print(table)
    if lost:
        console.print(f"lost, e.g.: {dict(list(lost.items())[:5])}")
    console.print(f"node logs: {nodes.dir}")
    if exits or lost or stats.hangs:
        return 1
    return 0 if writer.acked else 2


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--count", type=int, default=1_000_000, help="inputs to send (default 10^6)")
    ap.add_argument("--seed", type=int, default=None, help="generator seed (default: random, printed)")
    ap.add_argument("--workers", type=int, default=24, help="concurrent fuzzing connections")
    args = ap.parse_args()
    if args.count < 1 or args.workers < 1:
        print("fuzz_node: --count and --workers must be positive", file=sys.stderr)
        sys.exit(254)
    if args.seed is None:
        args.seed = random.SystemRandom().randrange(2**31)
    console = Console()
    console.print(f"fuzz_node seed={args.seed} count={args.count:,}")
    try:
        sys.exit(asyncio.run(run(args, console)))
    except KeyboardInterrupt:
        sys.exit(130)


if __name__ == "__main__":
    main()
