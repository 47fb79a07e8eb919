"""Which Toxiproxy proxies a cluster has and which address each node dials for each peer: pure.

Three shapes. ``PER_DIRECTED_LINK`` (kuduraft, both backends): one proxy per ordered pair ``a->b``,
node a dials b only through it, so A->B can be cut while C->B flows. ``INGRESS_PER_DESTINATION``
(etcd on the local backend): etcd advertises one peer URL per member and every member dials that
URL, so on one loopback host there is one proxy per destination ``peers->b`` shared by all of b's
peers; a cut of A->B alone cannot be expressed and ``Topology.cut`` says so. The unit is the
connection a node dials, not the direction of its messages: etcd's rafthttp (v3.4
etcdserver/api/rafthttp/peer.go) receives a peer's messages on stream connections it dialed itself
and sends by pipeline on connections it dials to the peer, so a message cut for etcd is a cut of
both dial directions. ``PER_DIRECTED_LINK_BY_NAME`` (etcd on Docker) has the proxies of
``PER_DIRECTED_LINK`` for a system that names each peer by one URL shared by all its peers: every
proxy into b listens on the same port, each source's proxies on that source's own host, and each
node's resolver maps every peer's node id to its own proxies' host (``Topology.peer_hosts``), so
``b:port`` reaches a different proxy from each node. All shapes add one
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
    PER_DIRECTED_LINK_BY_NAME = "per_directed_link_by_name"

    @property
    def per_link(self) -> bool:
        """One proxy per ordered pair (any directed cut is expressible alone)."""
        return self is not ProxyShape.INGRESS_PER_DESTINATION


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
    peer_hosts: Mapping[str, Mapping[str, str]] | None = None

    def peer_address(self, node: str) -> str:
        """``node:port``: how every peer names ``node`` in the by-name shape (the node id, which each
        node's resolver maps to its own proxy's host, and the port all proxies into ``node`` share);
        ConfigError in the other shapes, where no such shared name exists, and for a node no peer
        dials (a one-node cluster)."""
        if self.peer_hosts is None:
            raise ConfigError(f"{self.shape.value} topology: peers do not reach {node} by name")
        if node not in self.nodes:
            raise ConfigError(f"no node {node!r} (nodes are {', '.join(self.nodes)})")
        dialers = [d[node] for a, d in self.dial.items() if a != node]
        if not dialers:
            raise ConfigError(f"no peer dials {node}")
        return f"{node}:{_port(dialers[0])}"

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
    if shape.per_link:
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
    if shape.per_link:
        dial = {a: {b: proxy_listen[f"{a}->{b}"] for b in nodes if b != a} for a in nodes}
    else:
        dial = {a: {b: proxy_listen[f"{PEERS}->{b}"] for b in nodes if b != a} for a in nodes}
    hosts = _peer_hosts(nodes, dial, [proxy_listen[n] for n in names]) \
        if shape is ProxyShape.PER_DIRECTED_LINK_BY_NAME else None
    return Topology(
        shape=shape, nodes=tuple(nodes), proxies=tuple(plans),
        dial=_frozen(dial), client=MappingProxyType({n: proxy_listen[f"{CLIENT}->{n}"] for n in nodes}),
        peer_hosts=_frozen(hosts) if hosts is not None else None)


def by_name_proxy_listen(nodes: Sequence[str], source_host: Mapping[str, str], client_host: str,
                         first_port: int) -> dict[str, str]:
    """Listen addresses for ``PER_DIRECTED_LINK_BY_NAME``: ``a->b`` on ``source_host[a]`` at b's port
    (``first_port`` + b's index), ``client->n`` on ``client_host`` at the ports after those. One
    port per destination is what lets every peer name b by one URL; one host per source is what
    keeps a's connections to b on a proxy of their own."""
    _check_nodes(nodes)
    missing = [n for n in nodes if n not in source_host]
    if missing:
        raise ConfigError(f"topology: no proxy host for the connections of {', '.join(missing)}")
    port = {n: first_port + i for i, n in enumerate(nodes)}
    listen = {f"{a}->{b}": f"{source_host[a]}:{port[b]}" for a in nodes for b in nodes if a != b}
    listen.update({f"{CLIENT}->{n}": f"{client_host}:{first_port + len(nodes) + i}" for i, n in enumerate(nodes)})
    return listen


def _peer_hosts(nodes: Sequence[str], dial: Mapping[str, Mapping[str, str]],
                listens: Sequence[str]) -> dict[str, dict[str, str]]:
    """Each node's name resolution for the by-name shape: ``hosts[a][b]`` = the host of a's proxy
    to b. ConfigError (one line) when a destination's proxies do not share one port (one name
    cannot then reach them all), when one source's proxies sit on several hosts, or when two
    proxies share a listen address."""
    duplicates = sorted({x for x in listens if listens.count(x) > 1})
    if duplicates:
        raise ConfigError(f"topology: proxies share the listen address {', '.join(duplicates)}")
    for b in nodes:
        ports = {_port(dial[a][b]) for a in nodes if a != b}
        if len(ports) > 1:
            raise ConfigError(f"topology by name: the proxies into {b} listen on different ports "
                              f"({', '.join(sorted(ports))}); a peer URL names one")
    hosts = {a: {b: _host(address) for b, address in dial[a].items()} for a in nodes}
    for a, own in hosts.items():
        if len(set(own.values())) > 1:
            raise ConfigError(f"topology by name: {a}'s proxies sit on several hosts "
                              f"({', '.join(sorted(set(own.values())))})")
    return hosts


def _host(address: str) -> str:
    host, sep, port = address.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise ConfigError(f"topology: {address!r} is not host:port")
    return host


def _port(address: str) -> str:
    _host(address)
    return address.rpartition(":")[2]


def _frozen(maps: Mapping[str, Mapping[str, str]]) -> Mapping[str, Mapping[str, str]]:
    return MappingProxyType({k: MappingProxyType(dict(v)) for k, v in maps.items()})


def _check_nodes(nodes: Sequence[str]) -> None:
    if not nodes:
        raise ConfigError("topology: no nodes")
    if len(set(nodes)) != len(nodes):
        raise ConfigError(f"topology: duplicate node ids in {list(nodes)}")
    for node in nodes:
        if not node or "->" in node or node in (CLIENT, PEERS):
            raise ConfigError(f"topology: {node!r} cannot be a node id")
