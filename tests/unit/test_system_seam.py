"""harness/systems/base.py and registry.py: capability checks that become skip reasons, the registry."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.errors import ConfigError
from harness.spec import ClusterSpec
from harness.systems.base import Capability, missing_capabilities, skip_reason
from harness.systems.etcd import EtcdSystem
from harness.systems.kuduraft import KuduraftSystem
from harness.systems.registry import names, system_for


def test_no_reason_when_every_capability_is_there() -> None:
    system = KuduraftSystem(ClusterSpec())
    assert skip_reason(system, "local", [Capability.RUNTIME_FLAGS, Capability.PER_PEER_EVIDENCE]) is None
    assert skip_reason(system, "docker", []) is None


def test_reason_names_the_system_backend_and_every_missing_capability_once() -> None:
    system = EtcdSystem(binary=Path("/bin/true"))
    needed = [Capability.RUNTIME_FLAGS, Capability.KILL, Capability.TIMING_PROFILE, Capability.RUNTIME_FLAGS]
    assert missing_capabilities(system, "local", needed) == [Capability.RUNTIME_FLAGS, Capability.TIMING_PROFILE]
    reason = skip_reason(system, "local", needed)
    assert reason == ("etcd on the local backend lacks the capabilities this test needs: "
                      "runtime_flags, timing_profile")
    one = skip_reason(system, "local", [Capability.PER_PEER_EVIDENCE])
    assert one == "etcd on the local backend lacks the capability this test needs: per_peer_evidence"


def test_a_backend_the_system_does_not_run_on_lacks_everything() -> None:
    reason = skip_reason(EtcdSystem(binary=Path("/bin/true")), "k8s", [Capability.KILL])
    assert reason is not None and "k8s" in reason and "kill" in reason


def test_registry_builds_each_system_and_names_the_choices_for_an_unknown_one() -> None:
    assert names() == ["etcd", "kuduraft"]
    spec = ClusterSpec(seed=5)
    kudu = system_for("kuduraft", spec)
    assert isinstance(kudu, KuduraftSystem) and kudu.spec is spec
    assert system_for("etcd", spec).name == "etcd"
    with pytest.raises(ConfigError, match="unknown system 'zookeeper' \\(choose from etcd, kuduraft\\)"):
        system_for("zookeeper", spec)
