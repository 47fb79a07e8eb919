"""harness/systems/topology.py: which proxies exist, who dials what, which cuts a shape can express."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness.backend import links_of, write_cluster_file
from harness.errors import ConfigError
from harness.spec import ClusterSpec
from harness.systems.topology import (
    MemberAddresses,
    ProxyShape,
    Topology,
    plan_topology,
    proxy_names,
)
from harness.toxi import ProxyConfig

PER_LINK = ProxyShape.PER_DIRECTED_LINK
INGRESS = ProxyShape.INGRESS_PER_DESTINATION


def _addresses(nodes: tuple[str, ...], shape: ProxyShape) -> tuple[dict[str, MemberAddresses], dict[str, str]]:
    """Ports handed out in the local backend's order: rpc, http per node, then one per proxy."""
    ports = iter(range(21000, 22000))
    listen = {}
    for n in nodes:
        rpc, http = next(ports), next(ports)
        listen[n] = MemberAddresses(api=f"127.0.0.1:{http}", peer=f"127.0.0.1:{rpc}")
    proxies = {name: f"127.0.0.1:{next(ports)}" for name in proxy_names(nodes, shape)}
    return listen, proxies


def _plan(count: int, shape: ProxyShape) -> Topology:
    nodes = tuple(f"n{i}" for i in range(1, count + 1))
    listen, proxies = _addresses(nodes, shape)
    return plan_topology(nodes, shape, listen, proxies)


@pytest.mark.parametrize("count", [1, 2, 3, 5])
def test_per_directed_link_reproduces_what_the_backend_builds_today(count: int, tmp_path: Path) -> None:
    """Same proxies (names, listen, upstream, order) as LocalBackend.prepare builds from
    ``links_of(spec)``, and the same ``dial`` map as the cluster file write_cluster_file writes."""
    spec = ClusterSpec(node_count=count)
    listen, proxy_listen = _addresses(spec.nodes, PER_LINK)
    topo = plan_topology(spec.nodes, PER_LINK, listen, proxy_listen)

    rpc = {n: listen[n].peer for n in spec.nodes}
    http = {n: listen[n].api for n in spec.nodes}
    today = [ProxyConfig(link.name, proxy_listen[link.name], http[link.dst] if link.is_client else rpc[link.dst])
             for link in links_of(spec)]
    assert topo.proxy_configs() == today
    write_cluster_file(tmp_path / "cluster.json", spec, rpc, http, today)
    written = json.loads((tmp_path / "cluster.json").read_text())
    assert {a: dict(d) for a, d in topo.dial.items()} == written["dial"]
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
