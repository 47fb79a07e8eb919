"""ClusterSpec: what cluster to build (nodes, flags, proxy topology, backend, seed), validated."""

from __future__ import annotations

import json
import random
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from types import MappingProxyType
from typing import Any

from harness.errors import ConfigError
from harness.timing import FLAG_NAMES, TimingProfile

__all__ = ["BackendName", "ClusterSpec", "FlagValue", "TimingProfile", "node_ids"]

FlagValue = bool | int | float | str
MAX_NODES = 7
_FLAG_NAME = re.compile(r"^[a-z][a-z0-9_]*$")
_TEST_NAME = re.compile(r"^[A-Za-z0-9_.\-\[\]]+$")
_SYSTEM_NAME = re.compile(r"^[a-z][a-z0-9_]*$")


class BackendName(StrEnum):
    LOCAL = "local"
    DOCKER = "docker"


def node_ids(count: int) -> tuple[str, ...]:
    """The ids of a cluster of ``count`` nodes: n1..nN."""
    return tuple(f"n{i}" for i in range(1, count + 1))


def _check_flags(where: str, flags: Mapping[str, Any]) -> dict[str, FlagValue]:
    # Only the shape is checked here: the node is the authority on names and ranges (it exits 2
    # naming the bad flag, and the harness surfaces that line in SetupError).
    if not isinstance(flags, Mapping):
        raise ConfigError(f"{where}: expected a mapping of flag name to value, got {flags!r}")
    out: dict[str, FlagValue] = {}
    for name, value in flags.items():
        if not isinstance(name, str) or not _FLAG_NAME.match(name):
            raise ConfigError(f"{where}: {name!r} is not a flag name")
        if not isinstance(value, bool | int | float | str):
            raise ConfigError(f"{where}: flag {name} has a non-scalar value {value!r}")
        out[name] = value
    return out


@dataclass(frozen=True)
class ClusterSpec:
    """Everything needed to build one cluster; immutable, validated on construction.

    ``flags`` go to every node, ``node_flags[id]`` on top for one node. Timing flags are not set
    through ``flags`` but through ``timing`` so the derived bounds always match what nodes run
    (a per-node override is allowed and deliberately leaves the cluster-wide bounds alone).
    ``topology`` maps a peer to the proxy node that feeds it (``{"n3": "n2"}``). ``run_dir`` is
    where the run's files go (``None``: a fresh directory under the run store's root). ``system``
    names the system under test (``harness.systems.registry``, which checks the name; default
    ``kuduraft``, the node of ``nodes/``): recorded with the spec, so a replay runs the same system.
    """

    node_count: int = 3
    flags: Mapping[str, FlagValue] = field(default_factory=dict)
    node_flags: Mapping[str, Mapping[str, FlagValue]] = field(default_factory=dict)
    topology: Mapping[str, str] = field(default_factory=dict)
    backend: BackendName = BackendName.LOCAL
    seed: int = 0
    run_dir: Path | None = None
    test_name: str = "adhoc"
    timing: TimingProfile = field(default_factory=TimingProfile.fast)
    system: str = "kuduraft"

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        if isinstance(self.node_count, bool) or not isinstance(self.node_count, int):
            raise ConfigError(f"node_count must be an int, got {self.node_count!r}")
        if not 1 <= self.node_count <= MAX_NODES:
            raise ConfigError(f"node_count must be 1..{MAX_NODES}, got {self.node_count}")
        ids = set(self.nodes)
        flags = _check_flags("flags", self.flags)
        timing_flags = sorted(set(flags) & set(FLAG_NAMES.values()))
        if timing_flags:
            raise ConfigError(
                f"flags: {', '.join(timing_flags)} set the timing profile; pass "
                "timing=TimingProfile(...) (or TimingProfile.from_flags) so derived bounds match")
        if not isinstance(self.node_flags, Mapping):
            raise ConfigError(f"node_flags must be a mapping of node id to flags, got {self.node_flags!r}")
        node_flags = {}
        for node_id, per_node in self.node_flags.items():
            if node_id not in ids:
                raise ConfigError(f"node_flags: unknown node {node_id!r} (nodes are {self._ids_text()})")
            node_flags[node_id] = MappingProxyType(_check_flags(f"node_flags[{node_id}]", per_node))
        set_(self, "flags", MappingProxyType(flags))
        set_(self, "node_flags", MappingProxyType(node_flags))
        set_(self, "topology", MappingProxyType(self._check_topology(ids)))
        try:
            set_(self, "backend", BackendName(self.backend))
        except ValueError:
            raise ConfigError(f"backend must be one of {[b.value for b in BackendName]}, "
                              f"got {self.backend!r}") from None
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or not 0 <= self.seed < 2**63:
            raise ConfigError(f"seed must be an int in [0, 2^63), got {self.seed!r}")
        if self.run_dir is not None:
            set_(self, "run_dir", Path(self.run_dir))
        if not isinstance(self.test_name, str) or not _TEST_NAME.match(self.test_name):
            raise ConfigError(f"test_name must match {_TEST_NAME.pattern}, got {self.test_name!r}")
        if not isinstance(self.system, str) or not _SYSTEM_NAME.match(self.system):
            raise ConfigError(f"system must be a system name such as 'kuduraft', got {self.system!r}")
        if not isinstance(self.timing, TimingProfile):
            raise ConfigError(f"timing must be a TimingProfile, got {self.timing!r}")

    def _ids_text(self) -> str:
        return ", ".join(self.nodes)

    def _check_topology(self, ids: set[str]) -> dict[str, str]:
        if not isinstance(self.topology, Mapping):
            raise ConfigError(f"topology must map peer -> proxy node, got {self.topology!r}")
        topo = dict(self.topology)
        for peer, proxy in topo.items():
            for role, node_id in (("peer", peer), ("proxy", proxy)):
                if node_id not in ids:
                    raise ConfigError(f"topology {peer!r}: {proxy!r}: unknown {role} {node_id!r} "
                                      f"(nodes are {self._ids_text()})")
            if peer == proxy:
                raise ConfigError(f"topology: {peer} cannot be fed by itself")
        for start in topo:  # one parent each by construction (a dict); reject cycles
            seen, cur = {start}, topo[start]
            while cur in topo:
                if cur in seen:
                    raise ConfigError(f"topology: proxy edges form a cycle through {cur}")
                seen.add(cur)
                cur = topo[cur]
        return topo

    @property
    def nodes(self) -> tuple[str, ...]:
        """Node ids n1..nN."""
        return node_ids(self.node_count)

    @property
    def majority(self) -> int:
        """How many nodes make a quorum."""
        return self.node_count // 2 + 1

    def node_flags_for(self, node_id: str) -> dict[str, FlagValue]:
        """Every flag ``node_id`` is started with: timing profile, then global, then per-node."""
        if node_id not in self.nodes:
            raise ConfigError(f"unknown node {node_id!r} (nodes are {self._ids_text()})")
        merged: dict[str, FlagValue] = dict(self.timing.flags())
        merged.update(self.flags)
        merged.update(self.node_flags.get(node_id, {}))
        return merged

    def node_seed(self, node_id: str, incarnation: int) -> int:
        """The ``--seed`` of one node process: fixed by the run seed, the node and its incarnation."""
        return random.Random(f"{self.seed}/{node_id}/{incarnation}").getrandbits(62)

    def to_dict(self) -> dict[str, Any]:
        return {
            "node_count": self.node_count,
            "flags": dict(self.flags),
            "node_flags": {k: dict(v) for k, v in self.node_flags.items()},
            "topology": dict(self.topology),
            "backend": self.backend.value,
            "seed": self.seed,
            "run_dir": str(self.run_dir) if self.run_dir is not None else None,
            "test_name": self.test_name,
            "timing": self.timing.to_dict(),
            "system": self.system,
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ClusterSpec:
        known = {"node_count", "flags", "node_flags", "topology", "backend", "seed", "run_dir",
                 "test_name", "timing", "system"}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"cluster spec: unknown field(s) {', '.join(unknown)}")
        kwargs = dict(data)
        if "timing" in kwargs:
            timing = kwargs["timing"]
            if not isinstance(timing, Mapping):
                raise ConfigError(f"cluster spec: timing must be an object, got {timing!r}")
            try:
                kwargs["timing"] = TimingProfile(**timing)
            except TypeError as exc:
                raise ConfigError(f"cluster spec: timing: {exc}") from None
        if kwargs.get("run_dir") is not None:
            kwargs["run_dir"] = Path(kwargs["run_dir"])
        return cls(**kwargs)

    @classmethod
    def from_json(cls, text: str) -> ClusterSpec:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"cluster spec: not JSON: {exc}") from None
        if not isinstance(data, dict):
            raise ConfigError("cluster spec: expected a JSON object")
        return cls.from_dict(data)

    def __str__(self) -> str:
        parts = [f"{self.node_count} nodes", f"backend={self.backend.value}", f"seed={self.seed}",
                 f"P={self.timing.heartbeat_interval_ms}ms", f"rpc_timeout={self.timing.rpc_timeout_ms}ms"]
        if self.system != "kuduraft":
            parts.insert(1, f"system={self.system}")
        if self.flags:
            parts.append("flags=" + ",".join(f"{k}={v}" for k, v in sorted(self.flags.items())))
        for node_id, per_node in sorted(self.node_flags.items()):
            parts.append(f"{node_id}:" + ",".join(f"{k}={v}" for k, v in sorted(per_node.items())))
        if self.topology:
            parts.append("topology=" + ",".join(f"{p}<-{x}" for p, x in sorted(self.topology.items())))
        return f"ClusterSpec({self.test_name}: {'; '.join(parts)})"
