"""The Backend protocol: where nodes and the Toxiproxy server run and how their processes are driven.

A backend owns addresses and processes; the Cluster owns proxies, waits, history and faults.
Links: one proxy per directed node link ``a->b`` (node a's outbound RPC connection to b;
upstream = a's requests, downstream = b's replies) and one per client link ``client->nX``
(clients' KV traffic to node X's HTTP port). Nodes dial peers only through their proxies (the
cluster file's ``dial`` map); status polling and flag changes go to the node directly.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from harness.errors import SetupError
from harness.spec import ClusterSpec
from harness.store import RunDir
from harness.toxi import ProxyConfig

if TYPE_CHECKING:
    from harness.systems.base import System
    from harness.systems.topology import Topology

CLIENT = "client"


@dataclass(frozen=True)
class LinkId:
    """A directed link: ``src->dst`` (``src`` is a node id, or ``client`` for a client link)."""

    src: str
    dst: str

    @property
    def name(self) -> str:
        """The proxy's name, exactly ``n1->n2`` / ``client->n1``."""
        return f"{self.src}->{self.dst}"

    @property
    def is_client(self) -> bool:
        return self.src == CLIENT

    @classmethod
    def parse(cls, name: str) -> LinkId:
        src, sep, dst = name.partition("->")
        if not sep or not src or not dst:
            raise ValueError(f"not a link name: {name!r}")
        return cls(src, dst)

    def __str__(self) -> str:
        return self.name


def links_of(spec: ClusterSpec) -> list[LinkId]:
    """Every link of a cluster: all ordered node pairs, then one client link per node."""
    nodes = spec.nodes
    pairs = [LinkId(a, b) for a in nodes for b in nodes if a != b]
    return pairs + [LinkId(CLIENT, n) for n in nodes]


@dataclass(frozen=True)
class Capabilities:
    """What process control a backend can do; faults ask before they inject."""

    can_kill: bool = True
    can_terminate: bool = True
    can_pause: bool = True
    can_restart: bool = True


class SeamState:
    """What the System seam adds to every backend: the system it runs (the one given, else the
    spec's once prepared) and the topology it planned in ``prepare``."""

    name: str

    def __init__(self, system: System | None) -> None:
        self._system = system
        self._topology: Topology | None = None

    @property
    def system(self) -> System | None:
        return self._system

    @property
    def topology(self) -> Topology:
        if self._topology is None:
            raise SetupError(f"{self.name} backend not prepared")
        return self._topology


@runtime_checkable
class Backend(Protocol):
    """Runs one cluster's nodes and Toxiproxy server.

    Lifecycle: ``prepare`` (allocate addresses, start Toxiproxy, write the nodes' cluster file),
    then ``start``/``kill``/... per node, then ``close`` (stops every node process and the
    server; idempotent, safe after a failed ``prepare``). Node ids are ``spec.nodes``.
    """

    name: str
    capabilities: Capabilities

    def prepare(self, spec: ClusterSpec, run: RunDir) -> None: ...

    def proxy_configs(self) -> list[ProxyConfig]:
        """One proxy per link (``links_of(spec)``), named by ``LinkId.name``."""
        ...

    @property
    def toxiproxy_api_url(self) -> str:
        """Where the harness reaches this cluster's Toxiproxy API."""
        ...

    def node_http_url(self, node_id: str) -> str:
        """The node's HTTP API, directly (status, flags, health)."""
        ...

    def client_url(self, node_id: str) -> str:
        """The node's HTTP API through its ``client->nX`` proxy (KV operations)."""
        ...

    def start(self, node_id: str) -> None:
        """Start the node process (its data directory is kept across starts)."""
        ...

    def kill(self, node_id: str) -> int | None:
        """SIGKILL; returns the exit code once reaped."""
        ...

    def terminate(self, node_id: str, timeout_s: float) -> int | None:
        """SIGTERM, then SIGKILL after ``timeout_s``; returns the exit code."""
        ...

    def pause(self, node_id: str) -> None:
        """SIGSTOP (the process stays, its sockets stay open, it answers nothing)."""
        ...

    def resume(self, node_id: str) -> None:
        """SIGCONT."""
        ...

    def is_running(self, node_id: str) -> bool:
        """The process exists and has not exited (paused counts as running)."""
        ...

    def is_paused(self, node_id: str) -> bool: ...

    def exit_code(self, node_id: str) -> int | None:
        """The exit code if the process has exited (polled, never blocks), else None."""
        ...

    def log_path(self, node_id: str) -> Path: ...

    def close(self) -> None: ...


def log_tail(path: Path, lines: int = 20) -> list[str]:
    """The last ``lines`` lines of a log file ([] when missing)."""
    try:
        with path.open("rb") as fh:
            fh.seek(0, 2)
            size = fh.tell()
            fh.seek(max(0, size - 64 * 1024))
            text = fh.read().decode(errors="replace")
    except OSError:
        return []
    return text.splitlines()[-lines:]


# ---- what every backend writes ----------------------------------------------------------------


def start_banner(node_id: str, incarnation: int, note: str = "") -> bytes:
    """The line appended to a node's log before each start (``note``, e.g. ``" (docker)"``, at its end)."""
    stamp = datetime.now(UTC).isoformat(timespec="milliseconds")
    return f"=== raftchaos: start {node_id} incarnation {incarnation} at {stamp}{note}\n".encode()
