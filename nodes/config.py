"""The cluster file: who the members are, where they listen, how each one dials the others."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nodes.listen import check_listen_host


class ConfigError(ValueError):
    """The cluster file or command line is unusable; the message names the problem."""


@dataclass(frozen=True)
class Address:
    host: str
    port: int

    def __str__(self) -> str:
        return f"{self.host}:{self.port}"


def parse_address(raw: Any, where: str, *, listen: bool = False) -> Address:
    """Parse ``host:port``; listen addresses must be loopback or private, never all interfaces."""
    if not isinstance(raw, str) or ":" not in raw:
        raise ConfigError(f"{where}: expected 'host:port', got {raw!r}")
    host, _, port_s = raw.rpartition(":")
    host = host.strip("[]")
    try:
        port = int(port_s)
    except ValueError:
        raise ConfigError(f"{where}: port {port_s!r} is not a number") from None
    if not 0 <= port <= 65535:
        raise ConfigError(f"{where}: port {port} out of range")
    if not host:
        raise ConfigError(f"{where}: empty host in {raw!r}")
    if listen:
        try:
            check_listen_host(host)
        except ValueError as e:
            raise ConfigError(f"{where}: {e}") from None
    return Address(host, port)


@dataclass(frozen=True)
class NodeInfo:
    uuid: str
    rpc: Address
    http: Address
    region: str = "default"


@dataclass(frozen=True)
class ClusterConfig:
    nodes: dict[str, NodeInfo]
    dial: dict[str, dict[str, Address]] = field(default_factory=dict)
    topology: dict[str, str] = field(default_factory=dict)

    @property
    def voters(self) -> list[str]:
        return sorted(self.nodes)

    def dial_address(self, src: str, dst: str) -> Address:
        """Where ``src`` connects to reach ``dst``: a Toxiproxy proxy when the harness set one."""
        return self.dial.get(src, {}).get(dst, self.nodes[dst].rpc)


def _obj(raw: Any, where: str) -> dict[str, Any]:
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: expected an object, got {type(raw).__name__}")
    return raw


def parse_cluster(raw: Any) -> ClusterConfig:
    top = _obj(raw, "cluster file")
    unknown = set(top) - {"nodes", "dial", "topology"}
    if unknown:
        raise ConfigError(f"cluster file: unknown keys {sorted(unknown)}")
    nodes_raw = _obj(top.get("nodes"), "cluster file 'nodes'")
    if not nodes_raw:
        raise ConfigError("cluster file: 'nodes' is empty")
    nodes: dict[str, NodeInfo] = {}
    for uuid, info in nodes_raw.items():
        where = f"nodes.{uuid}"
        if not uuid or not isinstance(uuid, str):
            raise ConfigError(f"cluster file: bad node uuid {uuid!r}")
        info = _obj(info, where)
        extra = set(info) - {"rpc", "http", "region"}
        if extra:
            raise ConfigError(f"{where}: unknown keys {sorted(extra)}")
        region = info.get("region", "default")
        if not isinstance(region, str):
            raise ConfigError(f"{where}.region: expected a string")
        nodes[uuid] = NodeInfo(uuid, parse_address(info.get("rpc"), f"{where}.rpc", listen=True),
                               parse_address(info.get("http"), f"{where}.http", listen=True), region)
    dial: dict[str, dict[str, Address]] = {}
    for src, targets in _obj(top.get("dial", {}), "cluster file 'dial'").items():
        if src not in nodes:
            raise ConfigError(f"dial: unknown source node {src!r}")
        dial[src] = {}
        for dst, addr in _obj(targets, f"dial.{src}").items():
            if dst not in nodes:
                raise ConfigError(f"dial.{src}: unknown destination node {dst!r}")
            dial[src][dst] = parse_address(addr, f"dial.{src}.{dst}")
    topology: dict[str, str] = {}
    for peer, proxy in _obj(top.get("topology", {}), "cluster file 'topology'").items():
        if peer not in nodes or not isinstance(proxy, str) or proxy not in nodes:
            raise ConfigError(f"topology: edge {peer!r} <- {proxy!r} names an unknown node")
        if peer == proxy:
            raise ConfigError(f"topology: node {peer!r} cannot proxy for itself")
        topology[peer] = proxy
    _check_acyclic(topology)
    return ClusterConfig(nodes, dial, topology)


def _check_acyclic(topology: dict[str, str]) -> None:
    for start in topology:
        seen = {start}
        node = start
        while node in topology:
            node = topology[node]
            if node in seen:
                raise ConfigError(f"topology: proxy edges form a cycle through {node!r}")
            seen.add(node)


def load_cluster(path: Path) -> ClusterConfig:
    try:
        text = path.read_text()
    except OSError as e:
        raise ConfigError(f"cannot read cluster file {path}: {e.strerror}") from None
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as e:
        raise ConfigError(f"cluster file {path} is not JSON: {e}") from None
    return parse_cluster(raw)
