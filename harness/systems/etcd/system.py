"""EtcdSystem: etcd 3.4 (Debian's etcd-server, ``/usr/bin/etcd``) behind the System seam.

etcd advertises one peer URL per member and every member dials it, so a local run proxies peers
with one ingress proxy per destination (``harness.systems.topology``): the advertised peer URL is
the member's ingress proxy, its listen peer URL its own port. On Docker each member has its own
name resolution (``PER_DIRECTED_LINK_BY_NAME``): the advertised peer URL is ``http://<node id>:<port>``,
and inside member a's container that name resolves to the host of a's own proxy ``a->b``, so every
directed link has its proxy and partitions cut exactly the links they name. The binary runs there
from an image built from this machine's file (``Image.HOST_BINARY``).
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Mapping
from pathlib import Path

from harness.errors import ConfigError
from harness.systems.base import Capability, Image, LaunchContext, LaunchSpec, SystemUnavailable
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
DOCKER_CAPABILITIES = frozenset({Capability.PER_DIRECTED_LINK_PROXIES, Capability.PAUSE, Capability.KILL,
                                 Capability.KV_APPEND})
SHAPES = {"local": ProxyShape.INGRESS_PER_DESTINATION, "docker": ProxyShape.PER_DIRECTED_LINK_BY_NAME}


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
        """Pause, kill, append everywhere; ingress proxies on local, per-directed-link proxies on
        Docker (per-container name resolution). No runtime flags, no fault exit statuses, no
        kuduraft timing profile, no per-peer evidence, no node trace."""
        return {"local": LOCAL_CAPABILITIES, "docker": DOCKER_CAPABILITIES}.get(backend, frozenset())

    def proxy_shape(self, backend: str) -> ProxyShape:
        try:
            return SHAPES[backend]
        except KeyError:
            raise SystemUnavailable(f"etcd has no proxy layout for the {backend} backend") from None

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
        shape = ctx.topology.shape
        if shape not in (ProxyShape.INGRESS_PER_DESTINATION, ProxyShape.PER_DIRECTED_LINK_BY_NAME):
            raise SystemUnavailable(f"etcd needs the ingress or by-name topology (one peer URL per member), "
                                    f"got {shape.value}")
        own = ctx.listen[ctx.node_id]
        advertised = {n: _peer_url(ctx, n) for n in ctx.topology.nodes}
        initial = ",".join(f"{n}={advertised[n]}" for n in ctx.topology.nodes)
        argv = (
            str(self.binary), "--name", ctx.node_id, "--data-dir", str(ctx.data_dir),
            "--listen-client-urls", f"http://{own.api}", "--advertise-client-urls", f"http://{own.api}",
            "--listen-peer-urls", f"http://{own.peer}",
            "--initial-advertise-peer-urls", advertised[ctx.node_id],
            "--initial-cluster", initial, "--initial-cluster-state", "new",
            "--initial-cluster-token", cluster_token(ctx.run_id),
            "--heartbeat-interval", str(self.heartbeat_ms), "--election-timeout", str(self.election_ms),
            "--pre-vote",
            "--logger", "zap", "--log-outputs", "stderr", "--log-level", self.log_level,
        )
        return LaunchSpec(argv=argv, env={}, data_dir=ctx.data_dir, listen=own, image=Image.HOST_BINARY)

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


def _peer_url(ctx: LaunchContext, node_id: str) -> str:
    """The URL ``node_id``'s peers dial: its ingress proxy, or by name (every member's resolver
    maps the name to its own proxy into ``node_id``); a member no peer dials (one-node cluster)
    advertises its own peer address."""
    if ctx.topology.shape is ProxyShape.PER_DIRECTED_LINK_BY_NAME:
        if len(ctx.topology.nodes) == 1:
            return f"http://{ctx.listen[node_id].peer}"
        return f"http://{ctx.topology.peer_address(node_id)}"
    return f"http://{_proxy_listen(ctx, node_id)}"


def _proxy_listen(ctx: LaunchContext, node_id: str) -> str:
    name = f"{PEERS}->{node_id}"
    for proxy in ctx.topology.proxies:
        if proxy.name == name:
            return proxy.listen
    raise SystemUnavailable(f"topology has no ingress proxy {name}")
