"""A run's private Docker network: an internal bridge with a fixed subnet, so every container keeps its IP across restarts."""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import docker
from docker.errors import APIError
from docker.models.networks import Network
from docker.types import IPAMConfig, IPAMPool

from harness.docker.resources import Role, RunResources
from harness.errors import SetupError
from harness.systems.topology import ProxyShape, by_name_proxy_listen, proxy_names

__all__ = ["AddressPlan", "create_run_network", "create_source_network", "proxy_layout"]

TOXIPROXY_HOST = 2  # .1 is the gateway (the host's end of the bridge)
FIRST_NODE_HOST = 10
ATTEMPTS = 5
CLEAN_HINT = ("remove leftover networks with `raftchaos clean` (`python -m harness.docker clean --all` also "
              "removes live runs'), or give dockerd more address pools (--default-address-pool)")


@dataclass(frozen=True)
class AddressPlan:
    """Fixed addresses in the run's subnet: Toxiproxy at host number 2, node i (0-based) at 10 + i."""

    subnet: ipaddress.IPv4Network

    @property
    def toxiproxy_ip(self) -> str:
        return str(self.subnet.network_address + TOXIPROXY_HOST)

    def node_ip(self, index: int) -> str:
        return str(self.subnet.network_address + FIRST_NODE_HOST + index)


def create_run_network(client: docker.DockerClient, run: RunResources) -> tuple[Network, AddressPlan]:
    """Create the run's ``internal`` bridge (no route off the host) on a subnet no other network uses.

    Docker hands out static container IPs only on networks created with an explicit subnet, so we
    let Docker pick a free pool first (a probe network, removed at once) and then create the real
    network on that pool; a concurrent run that grabs the same pool makes us retry. Raises
    SetupError after ``ATTEMPTS`` collisions or when Docker has no free pool.
    """
    last_error: Exception | None = None
    for _ in range(ATTEMPTS):
        subnet = _free_subnet(client, run)
        try:
            network = client.networks.create(
                run.name(Role.NETWORK),
                driver="bridge",
                internal=True,
                labels=run.labels(Role.NETWORK),
                ipam=IPAMConfig(pool_configs=[IPAMPool(subnet=str(subnet))]),
                check_duplicate=True,
            )
        except APIError as exc:  # most likely "Pool overlaps" from a concurrent run
            last_error = exc
            continue
        return network, AddressPlan(subnet)
    raise SetupError(
        f"could not create the run network {run.name(Role.NETWORK)} ({last_error}); {CLEAN_HINT}"
    )


def _free_subnet(client: docker.DockerClient, run: RunResources) -> ipaddress.IPv4Network:
    probe_name = run.name(Role.NETWORK) + "-probe"
    try:
        probe = client.networks.create(
            probe_name, driver="bridge", internal=True, labels=run.labels(Role.NETWORK)
        )
    except APIError as exc:
        raise SetupError(f"Docker has no free subnet for {probe_name} ({exc}); {CLEAN_HINT}") from None
    try:
        probe.reload()
        configs = (probe.attrs.get("IPAM") or {}).get("Config") or []
        subnets = [ipaddress.ip_network(c["Subnet"]) for c in configs if "Subnet" in c]
    finally:
        probe.remove()
    v4 = [s for s in subnets if isinstance(s, ipaddress.IPv4Network)]
    if not v4:
        raise SetupError(f"Docker gave {probe_name} no IPv4 subnet ({configs})")
    return v4[0]


def create_source_network(client: docker.DockerClient, run: RunResources, node_id: str) -> str:
    """Create the internal bridge that carries ``node_id``'s connections to Toxiproxy (the by-name
    proxy shape: Toxiproxy has one address per source node, one such network each); returns its
    name. Docker picks the subnet: only Toxiproxy's address on it matters, read once it runs."""
    name = run.name(Role.NETWORK, node_id)
    try:
        client.networks.create(name, driver="bridge", internal=True, labels=run.labels(Role.NETWORK, node_id),
                               check_duplicate=True)
    except APIError as exc:
        raise SetupError(f"could not create the source network {name} ({exc}); {CLEAN_HINT}") from None
    return name


def proxy_layout(nodes: Sequence[str], shape: ProxyShape, toxiproxy_ip: str, source_hosts: Mapping[str, str],
                 first_port: int) -> dict[str, str]:
    """Every proxy's listen address on the Toxiproxy container. Per directed link: its run-network
    IP, one port per proxy in allocation order (the layout from before the seam). By name: a->b on
    its IP on a's source network (``source_hosts``) at b's port, client proxies on the run network."""
    if shape is ProxyShape.PER_DIRECTED_LINK_BY_NAME:
        return by_name_proxy_listen(nodes, source_hosts, toxiproxy_ip, first_port)
    return {name: f"{toxiproxy_ip}:{first_port + offset}" for offset, name in enumerate(proxy_names(nodes, shape))}
