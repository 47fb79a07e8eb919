"""Choosing listen ports on loopback that nothing else is about to take."""

from __future__ import annotations

import fcntl
import json
import os
import random
import socket
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

HOST = "127.0.0.1"
PORT_FLOOR = 20000  # below it live well-known services; above the ephemeral range nothing is safe
# Ports handed out are remembered machine-wide this long, so two runs starting at the same time
# (or one run's Toxiproxy API port and its proxies) never get the same port between choosing it
# and binding it: a probe bind says "free now", not "free until the process binds it".
RESERVATION_S = 300.0
RESERVATIONS = Path(tempfile.gettempdir()) / f"raftchaos-ports-{os.getuid()}.json"


@contextmanager
def _reservations() -> Iterator[dict[str, float]]:
    """The machine-wide reservation table (port -> time handed out), locked while in use."""
    with open(RESERVATIONS, "a+", encoding="utf-8") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        f.seek(0)
        try:
            table = {k: float(v) for k, v in json.loads(f.read() or "{}").items()}
        except (ValueError, AttributeError, TypeError):
            table = {}  # a torn or foreign file: start over, it is only a hint
        now = time.time()
        table = {k: v for k, v in table.items() if now - v < RESERVATION_S}
        yield table
        f.seek(0)
        f.truncate()
        f.write(json.dumps(table))


def _ephemeral_range() -> tuple[int, int]:
    try:
        lo, hi = (int(x) for x in Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split())
        return lo, hi
    except (OSError, ValueError):
        return 32768, 60999  # Linux's default


def free_ports(count: int, host: str = HOST) -> list[int]:
    """``count`` distinct ports free on ``host`` right now (all held open until all are chosen).

    Ports come from below the kernel's ephemeral range: an ephemeral port we pick and release
    can be taken by any outgoing connection's source port before the node binds it (seen as
    "address already in use" under load). The choice is not seeded on purpose: it has no effect
    on the system under test, and concurrent runs with the same seed must not pick alike.
    """
    try:
        with _reservations() as taken:
            ports = _probe(count, host, taken)
            now = time.time()
            taken.update({str(p): now for p in ports})
            return ports
    except OSError:
        return _probe(count, host, {})  # no usable reservation file: probing alone


def _probe(count: int, host: str, taken: dict[str, float]) -> list[int]:
    lo, _ = _ephemeral_range()
    pool = [p for p in range(PORT_FLOOR, lo) if str(p) not in taken] if lo - PORT_FLOOR >= 4 * count else []
    random.SystemRandom().shuffle(pool)
    socks: list[socket.socket] = []
    try:
        for port in pool:
            if len(socks) == count:
                break
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            try:
                sock.bind((host, port))
            except OSError:
                sock.close()
                continue
            socks.append(sock)
        while len(socks) < count:  # no usable range: let the kernel pick
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            socks.append(sock)
            sock.bind((host, 0))
        return [int(s.getsockname()[1]) for s in socks]
    finally:
        for sock in socks:
            sock.close()


def free_port(host: str = HOST) -> int:
    return free_ports(1, host)[0]
