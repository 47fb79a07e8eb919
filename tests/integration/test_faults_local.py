"""Faults on a real 3-node local cluster: what the leader's per-peer status shows, that heal restores
it, and that the heal event says whether the fault bit (Toxiproxy's byte counters, the leader's
per-peer counters)."""

from __future__ import annotations

import re
from typing import Any

import pytest

from faults.flags import flag_fault, follower_reject_updates
from faults.network import link_latency, partition
from faults.process import paused, stopped
from harness.cluster import Cluster
from harness.workload import Workload, WorkloadSpec

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


def _last_heal(cluster: Cluster, fault: str) -> dict[str, Any]:
    heals = [e for e in _fault_events(cluster) if e["kind"] == "heal" and e["fault"] == fault]
    assert heals, f"no heal event of {fault}"
    return heals[-1]


def test_refused_isolate_of_a_follower_under_load_is_recorded_as_bitten(cluster: Cluster) -> None:
    leader, victim = _victim(cluster)
    timing = cluster.timing
    with Workload(cluster, WorkloadSpec(clients=2, rate_per_s=40)) as workload:
        # Replicating to the victim first (a fresh leader may still count failures from the start).
        _healthy_again(cluster, leader, victim)
        cluster.wait_until(lambda: workload.stats.ok >= 5, what="acknowledged operations",
                           timeout_s=timing.client_timeout_s + 2.0)
        with partition(cluster, isolate=victim, mode="refused"):
            cluster.wait_until(lambda: _peer(cluster, leader, victim)["failed_attempts"] > 0,
                               what="the leader to count failures",
                               timeout_s=timing.peer_failed_within_s + timing.heartbeat_s)
    heal = _last_heal(cluster, "isolate")
    print(f"heal: {heal}")
    assert heal["vacuous"] is False, heal
    # Either piece of evidence proves the bite, depending on when the leader's next request left:
    # requests sent across the cut while it was in place, or one that failed as it went in.
    assert re.search(rf"{leader}( \(leader, term \d+\) sent {victim} \d+ UpdateConsensus request\(s\)"
                     rf"|'s request\(s\) to {victim} failed as the cut went in \(\d+ error\(s\)\)) "
                     rf"\({leader}->{victim} disabled\)", heal["evidence"]), heal["evidence"]
    _healthy_again(cluster, leader, victim)


def test_latency_on_a_follower_to_follower_link_is_recorded_cannot_tell(cluster: Cluster) -> None:
    """A follower's outbound link to the other follower only carries votes: with a stable leader
    nothing goes through the toxic, but the harness cannot prove it: Toxiproxy counts bytes
    only when a connection closes (and shows no connections), and a follower keeps no per-peer
    counters. So the heal says "cannot tell" (``vacuous: null``), not "vacuous"."""
    leader, quiet_src = _victim(cluster)
    quiet_dst = next(n for n in cluster.nodes if n not in (leader, quiet_src))
    term = cluster.status(leader)["term"]
    window_s = 4 * cluster.timing.heartbeat_s
    with link_latency(cluster, quiet_src, quiet_dst, latency_ms=50):
        until = cluster.history.now() + window_s
        cluster.wait_until(lambda: cluster.history.now() >= until, what=f"a {window_s:.2f} s window",
                           timeout_s=window_s + 5.0, poll_s=0.02)
    assert cluster.status(leader)["term"] == term, "an election ran meanwhile: the link was used for votes"
    heal = _last_heal(cluster, "latency")
    print(f"heal: {heal}")
    assert heal["vacuous"] is None, heal
    assert heal["evidence"].startswith("cannot tell: Toxiproxy counts bytes when a connection closes and "
                                       f"{quiet_src} keeps no per-peer counters"), heal["evidence"]
    assert f"{quiet_src}->{quiet_dst} upstream: 0 B in" in heal["evidence"], heal["evidence"]


def test_latency_on_the_leader_to_follower_link_under_load_is_recorded_as_bitten(cluster: Cluster) -> None:
    """The leader's connection to the follower stays open for the whole run, so Toxiproxy counts
    no bytes for it; the leader's per-peer counters show the requests that went through."""
    leader, victim = _victim(cluster)
    timing = cluster.timing
    with Workload(cluster, WorkloadSpec(clients=2, rate_per_s=20)) as workload:
        _healthy_again(cluster, leader, victim)
        cluster.wait_until(lambda: workload.stats.ok >= 5, what="acknowledged operations",
                           timeout_s=timing.client_timeout_s + 2.0)
        term = cluster.status(leader)["term"]
        with link_latency(cluster, leader, victim, latency_ms=20):
            sent = _peer(cluster, leader, victim)["counters"]["requests_sent"]
            cluster.wait_until(lambda: _peer(cluster, leader, victim)["counters"]["requests_sent"] >= sent + 3,
                               what=f"{leader} to send {victim} requests through the latency",
                               timeout_s=6 * timing.heartbeat_s + 2.0)
    assert cluster.status(leader)["term"] == term, "an election ran meanwhile: the leader's counters restarted"
    heal = _last_heal(cluster, "latency")
    print(f"heal: {heal}")
    assert heal["vacuous"] is False, heal
    assert re.search(rf"{leader} sent \d+ UpdateConsensus requests to {victim} across the toxic",
                     heal["evidence"]), heal["evidence"]
    _healthy_again(cluster, leader, victim)
