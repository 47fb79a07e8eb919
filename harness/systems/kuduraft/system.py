"""KuduraftSystem: our kuduraft-modelled node behind the System seam: its command line
(``node_args``), cluster file and ``NodeClient`` (``client``). Both backends start it from ``launch_spec``: a
local process with this interpreter and checkout, or the node image's ``python3`` in ``/app`` on
Docker, with the same arguments.

Contract: docs/node-api.md (command line, cluster file, ``/status``, exit codes).
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from harness.errors import HarnessError
from harness.spec import ClusterSpec
from harness.store import RunDir
from harness.systems.base import (
    Capability,
    Image,
    LaunchContext,
    LaunchSpec,
    NodeObservation,
    PeerEvidence,
    Role,
)
from harness.systems.kuduraft.client import NodeClient
from harness.systems.topology import ProxyShape
from harness.toxiproxy_server import REPO_ROOT

# Every capability of the node holds on both backends (local processes, Docker containers).
CAPABILITIES = frozenset({
    Capability.RUNTIME_FLAGS, Capability.FAULT_EXIT_STATUSES, Capability.TIMING_PROFILE,
    Capability.PER_PEER_EVIDENCE, Capability.NODE_TRACE, Capability.PER_DIRECTED_LINK_PROXIES,
    Capability.PAUSE, Capability.KILL, Capability.SYNC_LEDGER, Capability.STEP_DOWN, Capability.KV_APPEND,
})

# docs/node-api.md "Exit codes": the statuses that are the node's answer, not a crash.
EXIT_STATUSES: Mapping[int, str] = {
    2: "bad configuration or flags at start",
    3: "refused corrupt storage at start",
    70: "invariant violation (kuduraft CHECK / LOG(FATAL)), fatal record written",
    74: "fatal storage error (WAL or metadata IO)",
    85: "injected crash: a fault_crash_* flag fired",
}

_ROLES = {r.value: r for r in Role}
# Where the node image (nodes/Dockerfile) puts the package, and its interpreter.
IMAGE_WORKDIR = Path("/app")
IMAGE_PYTHON = "python3"


def node_args(spec: ClusterSpec, node_id: str, cluster_file: Path, data: Path, incarnation: int) -> list[str]:
    """The ``python -m nodes`` arguments for one incarnation of ``node_id``: cluster file, id, data
    directory, the incarnation's seed, the sync ledger (a test facility, always on in harness runs)
    and the node's flags."""
    argv = ["--config", str(cluster_file), "--id", node_id, "--data", str(data),
            "--seed", str(spec.node_seed(node_id, incarnation)),
            "--sync-ledger"]  # the record the power-loss fault needs (faults/ledger.py)
    for name, value in spec.node_flags_for(node_id).items():
        argv += ["--flag", f"{name}={_flag_text(value)}"]
    return argv


def _flag_text(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def cluster_document(spec: ClusterSpec, ctx: LaunchContext) -> dict[str, Any]:
    """The nodes' cluster file (docs/node-api.md) from the topology: the same document
    backends wrote before the seam (``rpc`` = peer address, ``http`` = api)."""
    return {
        "nodes": {n: {"rpc": ctx.listen[n].peer, "http": ctx.listen[n].api} for n in spec.nodes},
        "dial": {a: dict(ctx.topology.dial[a]) for a in spec.nodes},
        "topology": dict(spec.topology),
    }


class KuduraftSystem:
    """The node of ``nodes/`` for one ``ClusterSpec`` (its flags, seeds and proxy-node topology)."""

    name = "kuduraft"

    def __init__(self, spec: ClusterSpec, python: str = sys.executable, repo_root: Path = REPO_ROOT) -> None:
        self.spec = spec
        self.python = python
        self.repo_root = repo_root

    def capabilities(self, backend: str) -> frozenset[Capability]:
        return CAPABILITIES

    def proxy_shape(self, backend: str) -> ProxyShape:
        return ProxyShape.PER_DIRECTED_LINK

    def fault_exit_statuses(self) -> Mapping[int, str]:
        return EXIT_STATUSES

    def launch_spec(self, ctx: LaunchContext) -> LaunchSpec:
        """``python -m nodes`` with ``node_args``; the cluster file is written into the run
        directory at ``RunDir.cluster_file`` before the node starts. Locally: this interpreter on
        this checkout; on Docker: the node image's ``python3`` in ``/app`` (the run directory is
        mounted at its own path there, so the paths in the arguments are the same)."""
        cluster_file = RunDir(ctx.run_path).cluster_file
        args = node_args(self.spec, ctx.node_id, cluster_file, ctx.data_dir, ctx.incarnation)
        text = json.dumps(cluster_document(self.spec, ctx), indent=2)
        if ctx.backend == "docker":
            return LaunchSpec(argv=(IMAGE_PYTHON, "-m", "nodes", *args), env={"PYTHONUNBUFFERED": "1"},
                              data_dir=ctx.data_dir, listen=ctx.listen[ctx.node_id], cwd=IMAGE_WORKDIR,
                              files={cluster_file: text}, image=Image.NODE)
        pythonpath = os.pathsep.join(filter(None, [str(self.repo_root), os.environ.get("PYTHONPATH")]))
        return LaunchSpec(argv=(self.python, "-m", "nodes", *args), env={"PYTHONPATH": pythonpath, "PYTHONUNBUFFERED": "1"},
                          data_dir=ctx.data_dir, listen=ctx.listen[ctx.node_id], cwd=self.repo_root,
                          files={cluster_file: text})

    def observer(self, node_id: str, api_url: str, timeout_s: float = 2.0) -> KuduraftObserver:
        return KuduraftObserver(NodeClient(node_id, api_url, timeout_s=timeout_s), self.spec.nodes)

    def kv_client(self, node_id: str, url: str, timeout_s: float = 2.0) -> NodeClient:
        """The node's ``/kv/*`` through ``url`` (normally its ``client->n`` proxy)."""
        return NodeClient(node_id, url, kv_url=url, timeout_s=timeout_s)

    def node_client(self, node_id: str, api_url: str, client_url: str, timeout_s: float = 1.0) -> NodeClient:
        """The node's full client: control API (status, flags, ``/events``) at ``api_url``, KV
        through ``client_url``: what the Cluster handed out before the seam, unchanged."""
        return NodeClient(node_id, api_url, client_url, timeout_s=timeout_s)


class KuduraftObserver:
    """``GET /status`` of one node, mapped to a NodeObservation."""

    def __init__(self, client: NodeClient, members: tuple[str, ...]) -> None:
        self.client = client
        self.members = members

    def observe(self) -> NodeObservation:
        return observation(self.client.node_id, self.client.status(), self.members)


def observation(node_id: str, doc: Mapping[str, Any], members: tuple[str, ...]) -> NodeObservation:
    """Map a ``/status`` document (docs/node-api.md); HarnessError names a field it lacks."""
    try:
        term = int(doc["term"])
        role = _ROLES.get(str(doc.get("role")), Role.UNKNOWN)
        peers = {uuid: _evidence(p) for uuid, p in (doc.get("peers") or {}).items()}
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise HarnessError(f"{node_id} /status: unreadable ({type(exc).__name__}: {exc})") from None
    leader = doc.get("leader")
    return NodeObservation(
        node_id=node_id, role=role, term=term, leader=str(leader) if leader else None,
        commit_index=_int_or_none(doc.get("commit_index")), applied_index=_int_or_none(doc.get("applied_index")),
        members=members, raw=dict(doc), peers=peers if role is Role.LEADER else None)


def _evidence(peer: Mapping[str, Any]) -> PeerEvidence:
    counters = peer.get("counters") or {}
    return PeerEvidence(
        requests_sent=int(counters.get("requests_sent", 0)), responses_ok=int(counters.get("responses_ok", 0)),
        responses_error=int(counters.get("responses_error", 0)),
        failed_attempts=int(peer.get("failed_attempts", 0)), request_pending=bool(peer.get("request_pending")),
        raw=dict(peer))


def _int_or_none(value: Any) -> int | None:
    return int(value) if isinstance(value, int) and not isinstance(value, bool) else None
