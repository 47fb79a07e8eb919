"""System name -> factory: the one module that imports the system packages (import-linter)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from harness.errors import ConfigError
from harness.spec import ClusterSpec
from harness.systems.base import System
from harness.systems.etcd import EtcdSystem
from harness.systems.kuduraft import KuduraftSystem
from harness.systems.kuduraft.flags import flag_problem as kuduraft_flag_problem

# etcd's default election timeout is 10 heartbeat intervals (--heartbeat-interval 100,
# --election-timeout 1000; it requires at least 5): the cluster's heartbeat from its timing profile
# (100 ms under the fast profile: etcd's own defaults), the election timeout at etcd's ratio.
ETCD_ELECTION_HEARTBEATS = 10


def _etcd(spec: ClusterSpec) -> System:
    heartbeat_ms = spec.timing.heartbeat_interval_ms
    return EtcdSystem(heartbeat_ms=heartbeat_ms, election_ms=ETCD_ELECTION_HEARTBEATS * heartbeat_ms)


FACTORIES: dict[str, Callable[[ClusterSpec], System]] = {
    "kuduraft": KuduraftSystem,
    "etcd": _etcd,
}


# Systems with runtime flags: name -> why a flag (name, value) would be refused at start.
FLAG_TABLES: dict[str, Callable[[str, Any], str | None]] = {
    "kuduraft": kuduraft_flag_problem,
}


def names() -> list[str]:
    return sorted(FACTORIES)


def system_for(name: str, spec: ClusterSpec) -> System:
    """The System called ``name`` for ``spec``; ConfigError naming the choices for an unknown one."""
    try:
        factory = FACTORIES[name]
    except KeyError:
        raise ConfigError(f"unknown system {name!r} (choose from {', '.join(names())})") from None
    return factory(spec)


def flag_problem(system: str, name: str, value: Any) -> str | None:
    """Why ``system`` would refuse runtime flag ``name`` = ``value`` at start (None when it takes it):
    checked where a scenario or `raftchaos up` names flags, before any cluster starts."""
    if system not in FACTORIES:
        return f"unknown system {system!r} (choose from {', '.join(names())})"
    table = FLAG_TABLES.get(system)
    if table is None:
        return f"node flags are not available for system {system} (got {name!r})"
    return table(name, value)
