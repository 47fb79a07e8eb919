"""Raw sockets to a live node's own HTTP and RPC listeners, for sending what no well-behaved client
would: the bad-input integration tests share these."""

from __future__ import annotations

import json
import socket
import time
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class NodeAddrs:
    http: tuple[str, int]
    rpc: tuple[str, int]


def _split(addr: str) -> tuple[str, int]:
    host, _, port = addr.rpartition(":")
    return host, int(port)


def node_addresses(cluster_file: Path) -> dict[str, NodeAddrs]:
    """Each node's listen addresses, from the cluster file the harness wrote (no proxy in the way)."""
    doc = json.loads(cluster_file.read_text())
    return {n: NodeAddrs(_split(v["http"]), _split(v["rpc"])) for n, v in doc["nodes"].items()}


def exchange(addr: tuple[str, int], data: bytes, timeout_s: float = 10.0) -> bytes:
    """Send ``data``, half-close, and return everything the server sends until it closes.

    The half-close is what makes every exchange end: a server waiting for the rest of a truncated
    request sees EOF. TimeoutError when the server neither answers nor closes within ``timeout_s``
    (a hang is a finding, not a pass).
    """
    deadline = time.monotonic() + timeout_s
    with socket.create_connection(addr, timeout=timeout_s) as s:
        try:
            s.sendall(data)
            s.shutdown(socket.SHUT_WR)
        except OSError:
            pass  # the server closed early (e.g. rejected an oversized head): read what it said
        chunks: list[bytes] = []
        while True:
            s.settimeout(max(0.01, deadline - time.monotonic()))
            try:
                chunk = s.recv(65536)
            except TimeoutError:
                raise TimeoutError(f"{addr} neither answered nor closed within {timeout_s}s") from None
            except ConnectionResetError:
                break
            if not chunk:
                break
            chunks.append(chunk)
        return b"".join(chunks)


def http_statuses(raw: bytes, first_only: bool = False) -> list[int]:
    """The status codes of the HTTP responses in ``raw`` (a server's whole output on one connection);
    ``first_only`` for a HEAD request, whose response announces a body it does not carry."""
    out: list[int] = []
    pos = 0
    while pos < len(raw):
        end = raw.find(b"\r\n\r\n", pos)
        if end < 0:
            break
        lines = raw[pos:end].decode("latin-1").split("\r\n")
        out.append(int(lines[0].split(" ")[1]))
        if first_only:
            break
        length = 0
        for line in lines[1:]:
            name, _, value = line.partition(":")
            if name.lower() == "content-length":
                length = int(value)
        pos = end + 4 + (0 if out[-1] == 100 else length)
    return out


def http_request(method: str, target: str, body: bytes = b"", eol: bytes = b"\r\n") -> bytes:
    return (f"{method} {target} HTTP/1.1".encode() + eol + b"Host: fuzz" + eol
            + f"Content-Length: {len(body)}".encode() + eol + b"Connection: close" + eol + eol + body)
