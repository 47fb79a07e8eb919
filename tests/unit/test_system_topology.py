"""harness/systems/topology.py: which proxies exist, who dials what, which cuts a shape can express."""

from __future__ import annotations

import pytest

from harness.backend import LinkId, links_of
from harness.errors import ConfigError
from harness.spec import ClusterSpec
from harness.systems.topology import (
    MemberAddresses,
    ProxyShape,
    Topology,
    by_name_proxy_listen,
    plan_topology,
    proxy_names,
)
from harness.toxi import ProxyConfig

PER_LINK = ProxyShape.PER_DIRECTED_LINK
INGRESS = ProxyShape.INGRESS_PER_DESTINATION
BY_NAME = ProxyShape.PER_DIRECTED_LINK_BY_NAME


def _addresses(nodes: tuple[str, ...], shape: ProxyShape) -> tuple[dict[str, MemberAddresses], dict[str, str]]:
    """Ports handed out in the local backend's order: rpc, http per node, then one per proxy (by
    name: one host per source, one port per destination, as the Docker backend lays them out)."""
    ports = iter(range(21000, 22000))
    listen = {}
    for n in nodes:
        rpc, http = next(ports), next(ports)
        listen[n] = MemberAddresses(api=f"127.0.0.1:{http}", peer=f"127.0.0.1:{rpc}")
    if shape is BY_NAME:
        hosts = {n: f"10.9.{i}.2" for i, n in enumerate(nodes, 1)}
        return listen, by_name_proxy_listen(nodes, hosts, "10.9.0.2", 20001)
    proxies = {name: f"127.0.0.1:{next(ports)}" for name in proxy_names(nodes, shape)}
    return listen, proxies


def _plan(count: int, shape: ProxyShape) -> Topology:
    nodes = tuple(f"n{i}" for i in range(1, count + 1))
    listen, proxies = _addresses(nodes, shape)
    return plan_topology(nodes, shape, listen, proxies)


@pytest.mark.parametrize("count", [1, 2, 3, 5])
def test_per_directed_link_reproduces_what_the_backend_builds_today(count: int) -> None:
    """Same proxies (names, listen, upstream, order) as the backends built from ``links_of(spec)``
    before the seam, and the cluster file's ``dial`` map: a dials b through its ``a->b`` proxy."""
    spec = ClusterSpec(node_count=count)
    listen, proxy_listen = _addresses(spec.nodes, PER_LINK)
    topo = plan_topology(spec.nodes, PER_LINK, listen, proxy_listen)

    rpc = {n: listen[n].peer for n in spec.nodes}
    http = {n: listen[n].api for n in spec.nodes}
    today = [ProxyConfig(link.name, proxy_listen[link.name], http[link.dst] if link.is_client else rpc[link.dst])
             for link in links_of(spec)]
    assert topo.proxy_configs() == today
    by_name = {p.name: p.listen for p in today}
    dial = {a: {b: by_name[LinkId(a, b).name] for b in spec.nodes if b != a} for a in spec.nodes}
    assert {a: dict(d) for a, d in topo.dial.items()} == dial
    assert dict(topo.client) == {n: proxy_listen[f"client->{n}"] for n in spec.nodes}


def test_per_directed_link_every_cut_is_expressible_alone() -> None:
    topo = _plan(3, PER_LINK)
    plan = topo.cut([("n1", "n2")])
    assert plan.available and plan.proxies == ("n1->n2",)
    both = topo.cut([("n1", "n2"), ("n2", "n1")])
    assert both.available and both.proxies == ("n1->n2", "n2->n1")


def test_ingress_has_one_peer_proxy_per_destination_that_every_peer_dials() -> None:
    topo = _plan(3, INGRESS)
    assert [p.name for p in topo.proxies] == ["peers->n1", "peers->n2", "peers->n3",
                                              "client->n1", "client->n2", "client->n3"]
    ingress = {p.dst: p for p in topo.proxies if not p.is_client}
    for a in topo.nodes:
        for b, address in topo.dial[a].items():
            assert address == ingress[b].listen  # every source dials the destination's one proxy
    assert ingress["n2"].sources == ("n1", "n3")
    assert topo.carrier("n3", "n2").name == "peers->n2"


def test_ingress_upstreams_are_peer_ports_and_client_upstreams_api_ports() -> None:
    nodes = ("n1", "n2", "n3")
    listen, proxies = _addresses(nodes, INGRESS)
    topo = plan_topology(nodes, INGRESS, listen, proxies)
    for p in topo.proxies:
        assert p.upstream == (listen[p.dst].api if p.is_client else listen[p.dst].peer)
        assert p.listen == proxies[p.name]


def test_ingress_cannot_cut_one_link_without_the_others_into_its_destination() -> None:
    topo = _plan(3, INGRESS)
    plan = topo.cut([("n1", "n2")])
    assert not plan.available and plan.proxies == ()
    assert plan.reason is not None and "peers->n2" in plan.reason and "n3->n2" in plan.reason
    assert "\n" not in plan.reason


def test_ingress_can_cut_everything_into_a_node() -> None:
    """Isolating n2's inbound side is one proxy; a cut that also names n2's outbound links is not
    expressible (it would cut n3->n1 and n1->n3 too)."""
    topo = _plan(3, INGRESS)
    inbound = topo.cut([("n1", "n2"), ("n3", "n2")])
    assert inbound.available and inbound.proxies == ("peers->n2",)
    isolate = topo.cut([("n1", "n2"), ("n3", "n2"), ("n2", "n1"), ("n2", "n3")])
    assert not isolate.available and isolate.reason is not None and "n3->n1" in isolate.reason


def test_ingress_in_a_two_node_cluster_expresses_each_direction() -> None:
    topo = _plan(2, INGRESS)
    assert topo.cut([("n1", "n2")]).proxies == ("peers->n2",)


@pytest.mark.parametrize("shape", list(ProxyShape))
def test_bad_cuts_and_bad_inputs_are_one_line_config_errors(shape: ProxyShape) -> None:
    topo = _plan(3, shape)
    with pytest.raises(ConfigError, match="n9"):
        topo.cut([("n1", "n9")])
    with pytest.raises(ConfigError, match="two nodes"):
        topo.cut([("n1", "n1")])
    listen, proxies = _addresses(("n1", "n2"), shape)
    del proxies["client->n2"]
    with pytest.raises(ConfigError, match="client->n2"):
        plan_topology(("n1", "n2"), shape, listen, proxies)
    for bad in [(), ("n1", "n1"), ("client",), ("peers",), ("a->b",)]:
        with pytest.raises(ConfigError):
            proxy_names(bad, shape)


def test_topology_is_a_pure_value() -> None:
    assert _plan(3, INGRESS) == _plan(3, INGRESS)
    with pytest.raises(TypeError):
        _plan(3, PER_LINK).dial["n1"]["n2"] = "x"  # type: ignore[index]


@pytest.mark.parametrize("shape", list(ProxyShape))
def test_a_client_link_is_its_own_proxy_in_both_shapes(shape: ProxyShape) -> None:
    plan = _plan(3, shape).cut([("client", "n2")])
    assert plan.available and plan.proxies == ("client->n2",)


def test_by_name_each_node_resolves_every_peer_to_its_own_proxy() -> None:
    """The Docker layout for etcd: a's name for b is ``b:port`` like every other node's, and a's
    resolver turns it into the proxy ``a->b`` and no other (each source has its own host)."""
    topo = _plan(3, BY_NAME)
    assert [p.name for p in topo.proxies] == [p.name for p in _plan(3, PER_LINK).proxies]
    assert topo.peer_hosts is not None
    for a in topo.nodes:
        for b in topo.nodes:
            if a == b:
                continue
            name, port = topo.peer_address(b).split(":")
            assert name == b
            dialed = f"{topo.peer_hosts[a][name]}:{port}"
            assert topo.carrier(a, b).listen == dialed == topo.dial[a][b]
            assert [p.name for p in topo.proxies if p.listen == dialed] == [f"{a}->{b}"]
    assert topo.peer_hosts["n1"] == {"n2": "10.9.1.2", "n3": "10.9.1.2"}
    assert topo.client["n2"] == "10.9.0.2:20005"


def test_by_name_cuts_one_directed_link_alone() -> None:
    topo = _plan(3, BY_NAME)
    assert topo.cut([("n1", "n2")]).proxies == ("n1->n2",)
    leader_off = [(a, b) for a in topo.nodes for b in topo.nodes if a != b and "n1" in (a, b)]
    assert topo.cut(leader_off).proxies == ("n1->n2", "n1->n3", "n2->n1", "n3->n1")


def test_by_name_refuses_layouts_a_name_cannot_address() -> None:
    nodes = ("n1", "n2", "n3")
    listen, proxies = _addresses(nodes, BY_NAME)
    other_port = dict(proxies, **{"n3->n2": "10.9.3.2:29999"})
    with pytest.raises(ConfigError, match="into n2 listen on different ports"):
        plan_topology(nodes, BY_NAME, listen, other_port)
    two_hosts = dict(proxies, **{"n1->n3": "10.9.7.2:20003"})
    with pytest.raises(ConfigError, match="n1's proxies sit on several hosts"):
        plan_topology(nodes, BY_NAME, listen, two_hosts)
    shared = by_name_proxy_listen(nodes, {n: "10.9.0.2" for n in nodes}, "10.9.0.2", 20001)
    with pytest.raises(ConfigError, match="share the listen address"):
        plan_topology(nodes, BY_NAME, listen, shared)
    with pytest.raises(ConfigError, match="no proxy host.*n3"):
        by_name_proxy_listen(nodes, {"n1": "a", "n2": "b"}, "c", 1)
    with pytest.raises(ConfigError, match="not reach n1 by name"):
        _plan(3, PER_LINK).peer_address("n1")
    with pytest.raises(ConfigError, match="no peer dials"):
        plan_topology(("n1",), BY_NAME, {"n1": listen["n1"]}, {"client->n1": "10.9.0.2:1"}).peer_address("n1")
