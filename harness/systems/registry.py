"""System name -> factory: the one module that imports the system packages (import-linter)."""

from __future__ import annotations

from collections.abc import Callable

from harness.errors import ConfigError
from harness.spec import ClusterSpec
from harness.systems.base import System
from harness.systems.etcd import EtcdSystem
from harness.systems.kuduraft import KuduraftSystem


def _etcd(spec: ClusterSpec) -> System:
    return EtcdSystem()


FACTORIES: dict[str, Callable[[ClusterSpec], System]] = {
    "kuduraft": KuduraftSystem,
    "etcd": _etcd,
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
