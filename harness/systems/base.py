"""The System seam: what the harness needs from any Raft service it tests, as one protocol.

A backend decides where processes run and which addresses they get; a System says how to start one
of its nodes there (``LaunchSpec``), how to read its state (``NodeObservation``), how to talk to it
as a client (``KvClient``) and what it can do beyond that (``Capability``). Nothing here knows a
particular system: ``harness.systems.kuduraft`` and ``harness.systems.etcd`` implement it, and only
``harness.systems.registry`` imports them (import-linter enforces it).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from harness.nodeclient import KvResult, Outcome
from harness.systems.topology import MemberAddresses, ProxyShape, Topology

__all__ = [
    "AppendKvClient", "Capability", "Image", "KvClient", "KvResult", "LaunchContext", "LaunchSpec", "MemberAddresses",
    "NodeApi", "NodeObservation", "Observer", "Outcome", "PeerEvidence", "Role", "System", "SystemUnavailable",
    "missing_capabilities", "skip_reason",
]


class SystemUnavailable(Exception):
    """A system cannot run on this backend or machine (binary missing, shape not built yet).

    The message is one line naming what is missing; a suite turns it into a skip or an UNKNOWN
    verdict, never a failure of the system.
    """


class Capability(StrEnum):
    """Something beyond launch/observe/KV that a suite or fault may need from a system.

    A test asks for the capabilities it needs; a system lacking one makes the test skip with
    ``skip_reason``, so a weaker system never turns a test into a silently weaker one.
    """

    RUNTIME_FLAGS = "runtime_flags"  # flags read and changed over the node's API (kuduraft's names)
    FAULT_EXIT_STATUSES = "fault_exit_statuses"  # injected crashes exit with a known status (85)
    TIMING_PROFILE = "timing_profile"  # node timing set from harness.timing.TimingProfile
    PER_PEER_EVIDENCE = "per_peer_evidence"  # a leader reports per-peer request counters
    NODE_TRACE = "node_trace"  # the node's own event trace on its own clock (GET /events)
    PER_DIRECTED_LINK_PROXIES = "per_directed_link_proxies"  # A->B cut without touching C->B
    INGRESS_PROXIES = "ingress_proxies"  # one proxy per destination (all peers dial it)
    PAUSE = "pause"  # SIGSTOP/SIGCONT leave the node consistent
    KILL = "kill"  # SIGKILL and restart from the same data directory
    SYNC_LEDGER = "sync_ledger"  # the node records its fsyncs (power-loss fault)
    STEP_DOWN = "step_down"  # the leader can be asked to step down
    KV_APPEND = "kv_append"  # the KV client has append (the list-append workload)


class Role(StrEnum):
    """A node's Raft role as the node reports it; UNKNOWN when the system does not say."""

    LEADER = "LEADER"
    FOLLOWER = "FOLLOWER"
    CANDIDATE = "CANDIDATE"
    UNKNOWN = "UNKNOWN"


class Image(StrEnum):
    """What a container backend runs a node in (the local backend runs ``argv`` as it is).

    ``NODE``: the raftchaos node image (``nodes/`` in ``/app`` on the base image's python3).
    ``HOST_BINARY``: the base image plus this machine's file ``argv[0]`` at the same path (a
    dynamically linked binary from a Debian package runs there: the base image is the same
    Debian release), built locally so no registry is needed.
    """

    NODE = "node"
    HOST_BINARY = "host_binary"


@dataclass(frozen=True)
class LaunchContext:
    """What a backend hands a system to start one incarnation of one node.

    ``data_dir`` survives restarts; ``run_path`` is the run directory (files a system needs beside
    its nodes, such as kuduraft's cluster file, go there); ``topology`` says which address this
    node dials for each peer; ``backend`` is where it runs (``local`` or ``docker``: paths in a
    container are the host's for the run directory only).
    """

    run_id: str
    node_id: str
    incarnation: int
    data_dir: Path
    run_path: Path
    listen: Mapping[str, MemberAddresses]
    topology: Topology
    backend: str = "local"


@dataclass(frozen=True)
class LaunchSpec:
    """How to start one node: the process's argv, the environment it needs on top of the
    backend's (the backend adds the run labels), its working directory, the files to write before
    it starts (path -> text, written by the backend; on Docker inside the run directory), the
    addresses it will listen on and the image a container backend runs it in."""

    argv: tuple[str, ...]
    env: Mapping[str, str]
    data_dir: Path
    listen: MemberAddresses
    cwd: Path | None = None
    files: Mapping[Path, str] = field(default_factory=dict)
    image: Image = Image.NODE


@dataclass(frozen=True)
class PeerEvidence:
    """What a leader says about its traffic to one peer (only systems with PER_PEER_EVIDENCE)."""

    requests_sent: int
    responses_ok: int
    responses_error: int
    failed_attempts: int
    request_pending: bool
    raw: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class NodeObservation:
    """One node's state as it reports it, in the harness's terms.

    ``leader`` and ``members`` are harness node ids (a system maps its own member ids);
    ``None`` means the node did not say. ``raw`` is the document as read, kept for the history.
    """

    node_id: str
    role: Role
    term: int
    leader: str | None
    commit_index: int | None
    applied_index: int | None
    members: tuple[str, ...]
    raw: Mapping[str, Any]
    peers: Mapping[str, PeerEvidence] | None = None

    @property
    def is_leader(self) -> bool:
        return self.role is Role.LEADER

    def status_document(self) -> dict[str, Any]:
        """The observation in the vocabulary of the history's samples and the waits (the fields
        docs/node-api.md gives ``/status``: ``role``, ``term``, ``leader``, ``commit_index``,
        ``applied_index``), over the system's own document: kuduraft's ``/status``
        already is that document, and an etcd sample keeps etcd's fields beside them. A value the
        node did not report is left out rather than written as null, so a wait reads "not yet"."""
        doc = dict(self.raw)
        doc.update({"role": self.role.value, "term": self.term, "leader": self.leader})
        for name, value in (("commit_index", self.commit_index), ("applied_index", self.applied_index)):
            if value is None:
                doc.pop(name, None)
            else:
                doc[name] = value
        return doc


@runtime_checkable
class Observer(Protocol):
    """Reads one node's state; raises ``harness.errors.NodeUnreachable`` when it does not answer
    and ``harness.errors.HarnessError`` when it answers something unreadable."""

    def observe(self) -> NodeObservation: ...


@runtime_checkable
class KvClient(Protocol):
    """The workload's view of one node: register operations with the harness's outcomes.

    Never raises for node or network trouble: ``Outcome.OK`` took effect (``body`` holds
    ``value``; a cas also ``swapped``), ``FAIL`` definitely did not, ``INFO`` may have (a timeout
    is INFO, never FAIL).
    """

    def get(self, key: str, timeout_s: float | None = None) -> KvResult: ...

    def put(self, key: str, value: Any, timeout_s: float | None = None) -> KvResult: ...

    def cas(self, key: str, expected: Any, new: Any, timeout_s: float | None = None) -> KvResult: ...


@runtime_checkable
class AppendKvClient(KvClient, Protocol):
    """A KV client with append (systems with ``Capability.KV_APPEND``): string concatenation,
    an absent key counting as empty; a non-string value is FAIL."""

    def append(self, key: str, value: str, timeout_s: float | None = None) -> KvResult: ...


@runtime_checkable
class NodeApi(AppendKvClient, Protocol):
    """What ``Cluster.node(n)`` hands out: one object for everything suites, faults and the
    harness's helpers ask of "a node", whichever system runs it.

    Every system answers the KV calls (``AppendKvClient``; append is FAIL where the system has
    none), ``status()`` (the observation as a status document, ``NodeObservation.status_document``)
    and ``health()`` (True once it serves; ``NodeUnreachable`` while it does not answer). The
    optional calls raise ``harness.errors.FaultUnavailable`` where the system lacks the
    capability, so a test reaching one is skipped with the reason, never failed:
    ``events`` (``Capability.NODE_TRACE``), ``set_flag`` (``RUNTIME_FLAGS``; ``flags()`` is then
    empty: nothing to read, nothing for the final heal to restore) and ``step_down``
    (``STEP_DOWN``). kuduraft's client (``harness.systems.kuduraft.client.NodeClient``) has them
    all; any other system gets ``harness.systems.handle.NodeHandle``."""

    node_id: str

    def status(self) -> dict[str, Any]: ...

    def health(self) -> bool: ...

    def events(self, since: int = 0) -> dict[str, Any]:
        """One page of the node's own trace after ``since``, in the page format of kuduraft's
        ``GET /events`` (docs/node-api.md: ``events``, ``boot``, ``next_since``, ``complete``,
        ``truncated``), which ``harness.observer`` copies: the format of ``NODE_TRACE``."""
        ...

    def flags(self) -> dict[str, Any]: ...

    def set_flag(self, name: str, value: Any) -> Any: ...

    def step_down(self) -> bool: ...


@runtime_checkable
class System(Protocol):
    """One Raft service under test. Implementations are pure planners plus thin clients: they
    start nothing themselves, so every backend can run them."""

    name: str

    def capabilities(self, backend: str) -> frozenset[Capability]:
        """What this system can do on ``backend`` (``local`` or ``docker``)."""
        ...

    def proxy_shape(self, backend: str) -> ProxyShape:
        """How its peers can be proxied on ``backend``; SystemUnavailable if not at all (yet)."""
        ...

    def fault_exit_statuses(self) -> Mapping[int, str]:
        """Exit statuses that mean something other than a crash (status -> meaning)."""
        ...

    def launch_spec(self, ctx: LaunchContext) -> LaunchSpec: ...

    def observer(self, node_id: str, api_url: str, timeout_s: float = 2.0) -> Observer: ...

    def kv_client(self, node_id: str, url: str, timeout_s: float = 2.0) -> KvClient: ...

    def node_client(self, node_id: str, api_url: str, client_url: str, timeout_s: float = 1.0) -> NodeApi:
        """The one client a Cluster hands out for a node (``Cluster.node``): KV through
        ``client_url`` (its ``client->n`` proxy), ``status()``/``health()`` from ``api_url``
        directly, and whatever else the system offers (kuduraft: flags, ``/events``, step-down).
        Systems without more return ``harness.systems.handle.NodeHandle``."""
        ...


def missing_capabilities(system: System, backend: str, needed: Iterable[Capability]) -> list[Capability]:
    """The capabilities in ``needed`` that ``system`` lacks on ``backend``, in the order asked."""
    have = system.capabilities(backend)
    return [cap for cap in dict.fromkeys(needed) if cap not in have]


def skip_reason(system: System, backend: str, needed: Iterable[Capability]) -> str | None:
    """The one-line reason a test needing ``needed`` must skip on ``system``/``backend``, or None
    when it can run. The reason names the system, the backend and every missing capability."""
    missing = missing_capabilities(system, backend, needed)
    if not missing:
        return None
    names = ", ".join(cap.value for cap in missing)
    noun = "capability" if len(missing) == 1 else "capabilities"
    return f"{system.name} on the {backend} backend lacks the {noun} this test needs: {names}"
