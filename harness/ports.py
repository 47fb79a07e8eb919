"""Choosing listen ports on loopback that nothing else is about to take."""

from __future__ import annotations

import random
import socket
from pathlib import Path

HOST = "127.0.0.1"
PORT_FLOOR = 20000  # below it live well-known services; above the ephemeral range nothing is safe


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
    lo, _ = _ephemeral_range()
    pool = list(range(PORT_FLOOR, lo)) if lo - PORT_FLOOR >= 4 * count else []
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
