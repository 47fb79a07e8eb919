"""Faults on a real 3-node local cluster: what the leader's per-peer status shows, and that heal restores it."""

from __future__ import annotations

from typing import Any

import pytest

from faults.flags import flag_fault, follower_reject_updates
from faults.network import link_latency, partition
from faults.process import paused, stopped
from harness.cluster import Cluster

pytestmark = pytest.mark.integration


def _peer(cluster: Cluster, leader: str, peer: str) -> dict[str, Any]:
    return dict(cluster.status(leader)["peers"][peer])


def _victim(cluster: Cluster) -> tuple[str, str]:
    leader = cluster.wait_for_leader()
    return leader, sorted(n for n in cluster.nodes if n != leader)[0]


def _healthy_again(cluster: Cluster, leader: str, victim: str) -> None:
    timing = cluster.timing
    cluster.wait_until(lambda: (p := _peer(cluster, leader, victim))["status"] == "OK"
                       and p["failed_attempts"] == 0, what=f"{leader} to reach {victim} again",
                       timeout_s=timing.peer_failed_within_s + 4 * timing.heartbeat_s)


def _fault_events(cluster: Cluster) -> list[dict[str, Any]]:
    return [e for e in cluster.history.events() if e["kind"] in ("fault", "heal")]


def test_refused_isolate_shows_rpc_layer_errors_and_heals(cluster: Cluster) -> None:
    leader, victim = _victim(cluster)
    timing = cluster.timing
    with partition(cluster, isolate=victim, mode="refused") as record:
        assert record.targets == (victim,)
        cluster.wait_until(lambda: (p := _peer(cluster, leader, victim))["failed_attempts"] > 0
                           and p["status"] == "RPC_LAYER_ERROR", what="the leader to count failures",
                           timeout_s=timing.peer_failed_within_s + timing.heartbeat_s)
        assert not cluster.link(leader, victim).enabled and not cluster.link(victim, leader).enabled
    assert all(link.enabled for link in cluster.links())
    _healthy_again(cluster, leader, victim)
    fault, heal = _fault_events(cluster)
    assert fault["fault"] == "isolate" and fault["targets"] == [victim]
    assert fault["term"] == cluster.status(leader)["term"] and heal["targets"] == [victim]


def test_blackhole_isolate_keeps_the_request_pending_and_heals(cluster: Cluster) -> None:
    leader, victim = _victim(cluster)
    with partition(cluster, isolate=victim, mode="blackhole"):
        cluster.wait_until(lambda: _peer(cluster, leader, victim)["request_pending"],
                           what="a request to hang", timeout_s=2 * cluster.timing.heartbeat_s + 1)
        toxics = cluster.link(leader, victim).toxics()
        assert {(t.type, t.attributes.get("timeout")) for t in toxics} == {("timeout", 0)}
        # A hung request only ends with the RPC timeout (B20): then it counts as a failure.
        cluster.wait_until(lambda: _peer(cluster, leader, victim)["failed_attempts"] > 0,
                           what="the RPC timeout", timeout_s=cluster.timing.peer_failed_within_s + 1)
    assert all(not link.toxics() for link in cluster.links())
    _healthy_again(cluster, leader, victim)


def test_latency_and_follower_flag_fault_heal(cluster: Cluster) -> None:
    leader, victim = _victim(cluster)
    with link_latency(cluster, leader, victim, latency_ms=30, jitter_ms=10) as record:
        drawn = set(record.params["drawn_ms"].values())
        assert {t.attributes["latency"] for t in cluster.link(leader, victim).toxics()} == drawn
    assert cluster.link(leader, victim).toxics() == []
    with flag_fault(cluster, follower_reject_updates(victim)):
        assert cluster.flags(victim)["follower_reject_update_consensus_requests"] is True
        cluster.wait_until(lambda: _peer(cluster, leader, victim)["status"] == "REMOTE_ERROR",
                           what="REMOTE_ERROR from the rejecting follower", timeout_s=3)
    assert cluster.flags(victim)["follower_reject_update_consensus_requests"] is False
    _healthy_again(cluster, leader, victim)


def test_kill_leader_and_pause_follower_are_recorded_and_healed(cluster: Cluster) -> None:
    leader, _ = _victim(cluster)
    term = cluster.status(leader)["term"]
    with stopped(cluster, "leader") as record:
        assert record.targets == (leader,) and record.term == term
        assert not cluster.is_running(leader)
        cluster.wait_for_new_leader(leader, term)
    assert cluster.is_running(leader)
    new_leader = cluster.wait_for_leader()
    with paused(cluster, "followers") as record:
        assert new_leader not in record.targets and all(cluster.is_paused(n) for n in record.targets)
    assert not any(cluster.is_paused(n) for n in cluster.nodes)
    kinds = [(e["kind"], e["fault"]) for e in _fault_events(cluster)]
    assert kinds == [("fault", "kill"), ("heal", "kill"), ("fault", "pause"), ("heal", "pause")]
