"""Which Toxiproxy proxies a cluster has and which address each node dials for each peer: pure.

Two shapes. ``PER_DIRECTED_LINK`` (kuduraft, both backends): one proxy per ordered pair ``a->b``,
node a dials b only through it, so A->B can be cut while C->B flows. ``INGRESS_PER_DESTINATION``
(etcd on the local backend): etcd advertises one peer URL per member and every member dials that
URL, so on one loopback host there is one proxy per destination ``peers->b`` shared by all of b's
peers; a cut of A->B alone cannot be expressed and ``Topology.cut`` says so. The unit is the
connection a node dials, not the direction of its messages: etcd's rafthttp (v3.4
etcdserver/api/rafthttp/peer.go) receives a peer's messages on stream connections it dialed itself
and sends by pipeline on connections it dials to the peer, so a message cut for etcd is a cut of
both dial directions. Both shapes add one
``client->n`` proxy per node for the workload's traffic. Nothing here allocates ports or starts
anything: the backend passes the listen addresses in.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from types import MappingProxyType

from harness.errors import ConfigError
from harness.toxi import ProxyConfig

CLIENT = "client"  # the source of client links, as in harness.backend.LinkId
PEERS = "peers"  # the source named by an ingress proxy: every peer of its destination


class ProxyShape(StrEnum):
    PER_DIRECTED_LINK = "per_directed_link"
    INGRESS_PER_DESTINATION = "ingress_per_destination"


@dataclass(frozen=True)
class MemberAddresses:
    """Where one node listens (``host:port``): ``api`` for clients and the harness, ``peer`` for
    the other members' connections (the proxies' upstreams)."""

    api: str
    peer: str


@dataclass(frozen=True)
class ProxyPlan:
    """One proxy: ``sources`` are the nodes whose connections to ``dst`` cross it (``("client",)``
    for a client link); ``upstream`` is ``dst``'s peer or api address."""

    name: str
    dst: str
    sources: tuple[str, ...]
    listen: str
    upstream: str

    @property
    def is_client(self) -> bool:
        return self.sources == (CLIENT,)

    def config(self) -> ProxyConfig:
        return ProxyConfig(self.name, self.listen, self.upstream)


@dataclass(frozen=True)
class CutPlan:
    """The answer to "can these directed peer connections be cut alone?": the proxies to act on
    when ``available``, else ``reason`` (one line naming the traffic that would be cut too)."""

    available: bool
    proxies: tuple[str, ...] = ()
    reason: str | None = None


@dataclass(frozen=True)
class Topology:
    """The proxies of one cluster and each node's dial map (``dial[a][b]``: where a connects to
    reach b's peer port). ``client[n]`` is where the workload reaches n's api."""

    shape: ProxyShape
    nodes: tuple[str, ...]
    proxies: tuple[ProxyPlan, ...]
    dial: Mapping[str, Mapping[str, str]]
    client: Mapping[str, str]

    def proxy_configs(self) -> list[ProxyConfig]:
        """What to create on the Toxiproxy server, in allocation order."""
        return [p.config() for p in self.proxies]

    def carrier(self, src: str, dst: str) -> ProxyPlan:
        """The proxy that src's connections to dst cross (ConfigError for an unknown pair)."""
        for proxy in self.proxies:
            if proxy.dst == dst and src in proxy.sources:
                return proxy
        raise ConfigError(f"no proxy carries {src}->{dst} (nodes are {', '.join(self.nodes)})")

    def cut(self, pairs: Iterable[tuple[str, str]]) -> CutPlan:
        """Whether the connections ``src->dst`` in ``pairs`` can be cut without cutting any other
        node's connection: each proxy touched must carry only pairs in the set."""
        wanted = set()
        for src, dst in pairs:
            if src == dst:
                raise ConfigError(f"a cut needs two nodes, got {src}->{dst}")
            wanted.add((src, dst))
        touched: dict[str, ProxyPlan] = {}
        for src, dst in sorted(wanted):
            proxy = self.carrier(src, dst)
            touched[proxy.name] = proxy
        for proxy in touched.values():
            collateral = [f"{s}->{proxy.dst}" for s in proxy.sources if (s, proxy.dst) not in wanted]
            if collateral:
                asked = ", ".join(f"{s}->{d}" for s, d in sorted(wanted) if d == proxy.dst)
                return CutPlan(False, reason=(
                    f"{self.shape.value} topology: proxy {proxy.name} carries every peer's traffic to "
                    f"{proxy.dst}, so cutting {asked} would also cut {', '.join(collateral)}"))
        return CutPlan(True, proxies=tuple(sorted(touched)))


def proxy_names(nodes: Sequence[str], shape: ProxyShape) -> list[str]:
    """Every proxy's name in the order a backend allocates their listen addresses: the peer
    proxies (``a->b`` for every ordered pair, or ``peers->b`` per node), then ``client->n``."""
    _check_nodes(nodes)
    if shape is ProxyShape.PER_DIRECTED_LINK:
        peer = [f"{a}->{b}" for a in nodes for b in nodes if a != b]
    else:
        peer = [f"{PEERS}->{b}" for b in nodes]
    return peer + [f"{CLIENT}->{n}" for n in nodes]


def plan_topology(nodes: Sequence[str], shape: ProxyShape, listen: Mapping[str, MemberAddresses],
                  proxy_listen: Mapping[str, str]) -> Topology:
    """The topology of ``nodes`` in ``shape``, given each node's listen addresses and each proxy's
    (keyed by ``proxy_names``). ConfigError names a missing address or a bad node id."""
    names = proxy_names(nodes, shape)
    missing = [n for n in nodes if n not in listen] + [p for p in names if p not in proxy_listen]
    if missing:
        raise ConfigError(f"topology: no address for {', '.join(missing)}")
    plans: list[ProxyPlan] = []
    for name in names:
        src, _, dst = name.partition("->")
        if src == CLIENT:
            plans.append(ProxyPlan(name, dst, (CLIENT,), proxy_listen[name], listen[dst].api))
        elif src == PEERS:
            others = tuple(n for n in nodes if n != dst)
            plans.append(ProxyPlan(name, dst, others, proxy_listen[name], listen[dst].peer))
        else:
            plans.append(ProxyPlan(name, dst, (src,), proxy_listen[name], listen[dst].peer))
    if shape is ProxyShape.PER_DIRECTED_LINK:
        dial = {a: {b: proxy_listen[f"{a}->{b}"] for b in nodes if b != a} for a in nodes}
    else:
        dial = {a: {b: proxy_listen[f"{PEERS}->{b}"] for b in nodes if b != a} for a in nodes}
    return Topology(
        shape=shape, nodes=tuple(nodes), proxies=tuple(plans),
        dial=MappingProxyType({a: MappingProxyType(d) for a, d in dial.items()}),
        client=MappingProxyType({n: proxy_listen[f"{CLIENT}->{n}"] for n in nodes}))


def _check_nodes(nodes: Sequence[str]) -> None:
    if not nodes:
        raise ConfigError("topology: no nodes")
    if len(set(nodes)) != len(nodes):
        raise ConfigError(f"topology: duplicate node ids in {list(nodes)}")
    for node in nodes:
        if not node or "->" in node or node in (CLIENT, PEERS):
            raise ConfigError(f"topology: {node!r} cannot be a node id")
