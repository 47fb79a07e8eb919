"""One asyncio HTTP/1.1 load driver for both sides of a comparison, plus per-process CPU accounting.

The same client code drives the raftchaos node and etcd's gateway, so the difference in the
figures is the servers', not the drivers'. Keep-alive connections, one request in flight per
client, Content-Length bodies only (both servers answer that way to these requests).
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field

CLK_TCK = os.sysconf("SC_CLK_TCK")


class HttpConn:
    """One kept-alive connection; ``post`` sends a request and reads its whole answer."""

    def __init__(self, port: int, host: str = "127.0.0.1") -> None:
        self.host = host
        self.port = port
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def post(self, path: str, body: bytes, timeout_s: float) -> tuple[int, bytes]:
        """(status, body); OSError/TimeoutError/IncompleteReadError drop the connection."""
        try:
            async with asyncio.timeout(timeout_s):
                if self._writer is None:
                    self._reader, self._writer = await asyncio.open_connection(self.host, self.port)
                assert self._reader is not None
                self._writer.write(b"POST %s HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\n"
                                   b"Content-Length: %d\r\n\r\n%s"
                                   % (path.encode(), self.host.encode(), len(body), body))
                head = await self._reader.readuntil(b"\r\n\r\n")
                status = int(head.split(b" ", 2)[1])
                length = 0
                for line in head.split(b"\r\n")[1:]:
                    name, _, value = line.partition(b":")
                    if name.strip().lower() == b"content-length":
                        length = int(value)
                return status, await self._reader.readexactly(length)
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
        self._reader = self._writer = None


@dataclass
class LoadResult:
    clients: int
    elapsed_s: float
    latencies_s: list[float] = field(default_factory=list)
    errors: int = 0
    cpu_s: float = 0.0

    @property
    def acked(self) -> int:
        return len(self.latencies_s)

    @property
    def writes_per_s(self) -> float:
        return self.acked / self.elapsed_s if self.elapsed_s > 0 else 0.0

    def quantile_ms(self, q: float) -> float:
        if not self.latencies_s:
            return float("nan")
        ordered = sorted(self.latencies_s)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000

    @property
    def cpu_ms_per_write(self) -> float:
        return self.cpu_s * 1000 / self.acked if self.acked else float("nan")


BodyFn = Callable[[int, int], bytes]
"""``body(client_id, sequence) -> request body`` of one write."""


async def run_load(port: int, path: str, body: BodyFn, clients: int, duration_s: float,
                   ok: Callable[[int, bytes], bool], timeout_s: float = 5.0) -> LoadResult:
    """``clients`` closed-loop writers for ``duration_s``; a write counts when ``ok(status, body)``."""
    result = LoadResult(clients=clients, elapsed_s=0.0)
    stop_at = time.monotonic() + duration_s

    async def client(cid: int) -> None:
        conn = HttpConn(port)
        seq = 0
        try:
            while time.monotonic() < stop_at:
                seq += 1
                t0 = time.monotonic()
                try:
                    status, payload = await conn.post(path, body(cid, seq), timeout_s)
                except (TimeoutError, OSError, asyncio.IncompleteReadError, ValueError):
                    result.errors += 1
                    continue
                if ok(status, payload):
                    result.latencies_s.append(time.monotonic() - t0)
                else:
                    result.errors += 1
        finally:
            conn.close()

    t0 = time.monotonic()
    await asyncio.gather(*(client(c) for c in range(clients)))
    result.elapsed_s = time.monotonic() - t0
    return result


def cpu_seconds(pids: Iterable[int]) -> float:
    """User + system CPU of the given processes (all their threads), from /proc/<pid>/stat."""
    total = 0
    for pid in pids:
        try:
            stat = open(f"/proc/{pid}/stat").read()  # noqa: SIM115 - tiny read
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2:].split()
        total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15 of stat)
    return total / CLK_TCK


async def measure(pids: Iterable[int], load: Callable[[], Awaitable[LoadResult]]) -> LoadResult:
    """Run ``load`` and charge it the CPU the ``pids`` used meanwhile."""
    pids = list(pids)
    before = cpu_seconds(pids)
    result = await load()
    result.cpu_s = cpu_seconds(pids) - before
    return result
