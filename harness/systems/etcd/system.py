"""EtcdSystem: etcd 3.4 (Debian's etcd-server, ``/usr/bin/etcd``) behind the System seam.

etcd advertises one peer URL per member and every member dials it, so a local run proxies peers
with one ingress proxy per destination (``harness.systems.topology``): the advertised peer URL is
the member's ingress proxy, its listen peer URL its own port. Per-directed-link proxies need each
member to resolve peer names to its own outbound proxies, which only a per-container resolver
(Docker) can give; that is not built yet, so Docker is unavailable for now.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Mapping
from pathlib import Path

from harness.errors import ConfigError
from harness.systems.base import Capability, LaunchContext, LaunchSpec, SystemUnavailable
from harness.systems.etcd.gateway import EtcdKv, EtcdObserver, Gateway
from harness.systems.handle import NodeHandle
from harness.systems.topology import PEERS, ProxyShape

BINARY_CANDIDATES = ("/usr/bin/etcd", "/usr/local/bin/etcd")
INSTALL_HINT = "etcd not found: install Debian's etcd-server (3.4), which puts it at /usr/bin/etcd"
_TOKEN_UNSAFE = re.compile(r"[^A-Za-z0-9_.\-]")

# etcd's own request timeout is 5 s plus 2 x election timeout (v3.4 etcdserver/config.go ReqTimeout);
# ops carry the harness's client timeout anyway, this only bounds an op that gives none.
KV_TIMEOUT_S = 5.0

LOCAL_CAPABILITIES = frozenset({Capability.INGRESS_PROXIES, Capability.PAUSE, Capability.KILL, Capability.KV_APPEND})


def find_etcd() -> Path | None:
    """The etcd binary, or None."""
    for candidate in BINARY_CANDIDATES:
        if Path(candidate).is_file():
            return Path(candidate)
    found = shutil.which("etcd")
    return Path(found) if found else None


class EtcdSystem:
    """etcd members named after the harness's node ids, one data directory each.

    ``heartbeat_ms`` and ``election_ms`` are etcd's ``--heartbeat-interval`` and
    ``--election-timeout`` (its defaults: 100 and 1000); etcd requires election >= 5 x heartbeat.
    """

    name = "etcd"

    def __init__(self, heartbeat_ms: int = 100, election_ms: int = 1000, binary: Path | None = None,
                 log_level: str = "info") -> None:
        if heartbeat_ms <= 0 or election_ms < 5 * heartbeat_ms:
            raise ConfigError(f"etcd needs heartbeat_ms > 0 and election_ms >= 5 x heartbeat_ms, "
                             f"got {heartbeat_ms} and {election_ms}")
        self.heartbeat_ms = heartbeat_ms
        self.election_ms = election_ms
        self._binary = binary
        self.log_level = log_level

    @property
    def binary(self) -> Path:
        """The etcd binary; SystemUnavailable (one line) when it is not installed."""
        binary = self._binary or find_etcd()
        if binary is None or not binary.is_file():
            raise SystemUnavailable(INSTALL_HINT)
        return binary

    def capabilities(self, backend: str) -> frozenset[Capability]:
        """On local: ingress proxies, pause, kill, append. No runtime flags, no fault exit statuses, no
        kuduraft timing profile, no per-peer evidence; nothing on Docker yet."""
        return LOCAL_CAPABILITIES if backend == "local" else frozenset()

    def proxy_shape(self, backend: str) -> ProxyShape:
        if backend == "local":
            return ProxyShape.INGRESS_PER_DESTINATION
        raise SystemUnavailable(f"etcd on the {backend} backend needs per-container name resolution "
                                "for per-directed-link proxies; not built yet (issue #13)")

    def fault_exit_statuses(self) -> Mapping[int, str]:
        return {}  # Debian's etcd is built without gofail failpoints: every exit is a crash

    def launch_spec(self, ctx: LaunchContext) -> LaunchSpec:
        """The member's flags. Restarts reuse the data directory, where etcd ignores the
        ``--initial-*`` flags and rejoins with its stored membership.

        ``--pre-vote``: etcd 3.4 defaults it off (3.5 turns it on). Without it a restarted member
        whose election timer fires before the leader's first heartbeat reaches it campaigns in a
        higher term, and the leader steps down when that member answers its next heartbeat with
        the higher term (raft.go Step, ``m.Term < r.Term`` with check-quorum on); with it, like
        kuduraft's pre-elections, a member that cannot win changes no term."""
        if ctx.topology.shape is not ProxyShape.INGRESS_PER_DESTINATION:
            raise SystemUnavailable(f"etcd needs the ingress topology here, got {ctx.topology.shape.value}")
        ingress = {n: _proxy_listen(ctx, n) for n in ctx.topology.nodes}
        own = ctx.listen[ctx.node_id]
        initial = ",".join(f"{n}=http://{ingress[n]}" for n in ctx.topology.nodes)
        argv = (
            str(self.binary), "--name", ctx.node_id, "--data-dir", str(ctx.data_dir),
            "--listen-client-urls", f"http://{own.api}", "--advertise-client-urls", f"http://{own.api}",
            "--listen-peer-urls", f"http://{own.peer}",
            "--initial-advertise-peer-urls", f"http://{ingress[ctx.node_id]}",
            "--initial-cluster", initial, "--initial-cluster-state", "new",
            "--initial-cluster-token", cluster_token(ctx.run_id),
            "--heartbeat-interval", str(self.heartbeat_ms), "--election-timeout", str(self.election_ms),
            "--pre-vote",
            "--logger", "zap", "--log-outputs", "stderr", "--log-level", self.log_level,
        )
        return LaunchSpec(argv=argv, env={}, data_dir=ctx.data_dir, listen=own)

    def observer(self, node_id: str, api_url: str, timeout_s: float = 2.0) -> EtcdObserver:
        return EtcdObserver(Gateway(node_id, api_url, timeout_s))

    def kv_client(self, node_id: str, url: str, timeout_s: float = 2.0) -> EtcdKv:
        return EtcdKv(Gateway(node_id, url, timeout_s))

    def node_client(self, node_id: str, api_url: str, client_url: str, timeout_s: float = 1.0) -> NodeHandle:
        """Observation from the member's own client port, KV through its client proxy (the
        workload's KV ops may take etcd's request timeout, so its gateway waits
        ``KV_TIMEOUT_S`` unless an op gives its own)."""
        return NodeHandle(node_id, self.name, self.observer(node_id, api_url, timeout_s),
                          self.kv_client(node_id, client_url, max(timeout_s, KV_TIMEOUT_S)))


def cluster_token(run_id: str) -> str:
    """``--initial-cluster-token``: from the run id, so two runs' members never join each other."""
    return "raftchaos-" + _TOKEN_UNSAFE.sub("_", run_id)


def _proxy_listen(ctx: LaunchContext, node_id: str) -> str:
    name = f"{PEERS}->{node_id}"
    for proxy in ctx.topology.proxies:
        if proxy.name == name:
            return proxy.listen
    raise SystemUnavailable(f"topology has no ingress proxy {name}")
