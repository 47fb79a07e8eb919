"""The etcd adapter end to end: 3 real etcd members started from its LaunchSpecs behind real
Toxiproxy ingress proxies; a leader observed, a write read back through the client proxies, the
leader killed and a new leader observed in a higher term. Skipped when etcd is not installed.
The kuduraft adapter gets the same smoke test (test_system_kuduraft_live.py).

The leader is killed, not cut off: disabling only its ingress proxy does not depose an etcd leader
(measured: still leader 20 s later with a 3 s election timeout), because etcd's rafthttp carries a
member's messages over connections either side dialed (stream readers dial the sender, pipelines
dial the receiver), so they keep flowing through the followers' ingress proxies. Isolating one
member needs per-directed-link proxies, which the ingress topology reports as unavailable."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from seamrun import NODES, SeamRun, smoke

from harness.systems.etcd import EtcdSystem, find_etcd

SEED = int(os.environ.get("RAFTCHAOS_TEST_SEED", "20240607"))
# etcd's timing, slowed 3x from its defaults for a loaded 2-core machine (benchmarks share it).
ETCD_HEARTBEAT_MS, ETCD_ELECTION_MS = 300, 3000


@pytest.mark.skipif(find_etcd() is None, reason="etcd not installed (Debian's etcd-server puts it at /usr/bin/etcd)")
def test_etcd_elects_serves_and_fails_over_through_ingress_proxies(tmp_path: Path) -> None:
    print(f"raftchaos seed={SEED}")
    system = EtcdSystem(heartbeat_ms=ETCD_HEARTBEAT_MS, election_ms=ETCD_ELECTION_MS)
    with SeamRun(system, NODES, tmp_path / f"etcd-seam-{SEED}", SEED) as run:
        assert {p.name for p in run.topology.proxies} >= {"peers->n1", "peers->n2", "peers->n3"}
        # Cannot isolate one member with ingress proxies alone: the topology says so.
        assert not run.topology.cut([("n1", "n2"), ("n3", "n2"), ("n2", "n1"), ("n2", "n3")]).available
        smoke(run, leader_timeout_s=30.0)
    for proc in run.procs.values():
        assert proc.poll() is not None
    assert run.server.process is None


@pytest.mark.skipif(find_etcd() is None, reason="etcd not installed (Debian's etcd-server puts it at /usr/bin/etcd)")
def test_a_failing_test_still_stops_every_member_and_the_proxies(tmp_path: Path) -> None:
    system = EtcdSystem(heartbeat_ms=ETCD_HEARTBEAT_MS, election_ms=ETCD_ELECTION_MS)
    run = SeamRun(system, NODES, tmp_path / f"etcd-fail-{SEED}", SEED)
    with pytest.raises(RuntimeError, match="planted"), run:
        assert all(p.poll() is None for p in run.procs.values())
        raise RuntimeError("planted failure")
    assert all(p.poll() is not None for p in run.procs.values()) and run.server.process is None
