"""Heartbeat degradation: how a leader's traffic to one peer degrades and recovers (peer-spec §1).

Covers B1-B8, B17, B18 and B20 on a live 3-node cluster, with the fast timing profile. Every
bound comes from the cluster's own flags (``cluster.timing``): P = raft_heartbeat_interval_ms,
jittered to [0.75P, 1.25P]; the RPC timeout is consensus_rpc_timeout_ms. Windows are measured
between two ``/status`` snapshots of the leader (see ``_helpers.measure``) and checked against
the peer counters documented in docs/node-api.md.
"""

from __future__ import annotations

from contextlib import ExitStack
from typing import Any

import pytest

from faults.network import link_latency, partition
from faults.process import kill
from harness.checkers.degradation import check_degradation
from harness.checkers.recovery import MIN_OK_BEFORE
from harness.checkers.verdict import guarded
from harness.cluster import Cluster
from suites._helpers import (
    Markers,
    Window,
    heartbeat_count_bounds,
    heartbeats,
    measure,
    peer_counter,
    peer_view,
    snap,
    wait_failed_attempt,
    wait_ok_ops,
    wait_sampled,
)

pytestmark = [pytest.mark.chaos, pytest.mark.heartbeat_degradation]

# Load: every KV op (reads too) appends to the Raft log, so this is the rate of write signals.
LOAD_CLIENTS = 4
LOAD_RATE_HZ = 80.0
MIN_APPENDS_PER_S = 50.0
# Window lengths, in heartbeat periods P or RPC timeouts (so they scale with the profile).
DEGRADED_WINDOW_P = 15
IDLE_WINDOW_P = 20
LOADED_WINDOW_P = 10
BLACKHOLE_WINDOW_RPC_TIMEOUTS = 3
# Latency put on one link for B1, in heartbeat periods (stays below the RPC timeout).
LATENCY_P = 2
# Slack for sends the window edges can cut in half (one request may straddle each edge).
EDGE_SLACK = 1


def _leader_and_follower(cluster: Cluster) -> tuple[str, str]:
    leader = cluster.wait_for_leader()
    rng = cluster.rng("suite/victim")
    follower = rng.choice(sorted(n for n in cluster.nodes if n != leader))
    print(f"leader={leader} victim={follower}")
    return leader, follower


def _warm_up(cluster: Cluster, leader: str, follower: str) -> None:
    """The load runs and the follower is replicating normally (its last exchange was OK)."""
    wait_ok_ops(cluster, MIN_OK_BEFORE, since_t=0.0, what="acknowledged writes before the fault")
    start = cluster.status(leader)["commit_index"]
    cluster.wait_until(lambda: cluster.status(leader)["commit_index"] >= start + MIN_APPENDS_PER_S / 5
                       and peer_view(cluster, leader, follower).get("status") == "OK",
                       what="the load to commit and the follower to replicate",
                       timeout_s=cluster.timing.new_leader_within_s())


def _replicating(cluster: Cluster, leader: str, follower: str) -> None:
    """The follower's last exchange with the leader was OK (a healthy starting point)."""
    cluster.wait_until(lambda: peer_view(cluster, leader, follower).get("status") == "OK",
                       what=f"{follower} replicating from {leader}", timeout_s=heartbeats(cluster, 4))


def _idle(cluster: Cluster, leader: str, peers: list[str]) -> None:
    """The leader only heartbeats ``peers`` now (so the counters of earlier writes are settled
    before a fault starts, and the checkers' "before" window holds them)."""
    cluster.wait_until(lambda: all(peer_view(cluster, leader, p).get("last_request_kind") == "heartbeat"
                                   for p in peers),
                       what=f"{leader} to go idle towards {', '.join(peers)} (heartbeats only)",
                       timeout_s=heartbeats(cluster, 4))


def _assert_load(window: Window) -> None:
    """The test exercised the system: the leader appended at the promised write rate."""
    appended = window.field_delta("last_index")
    rate = appended / window.outer_s
    assert rate >= MIN_APPENDS_PER_S, (
        f"the harness could not exercise the system: only {rate:.1f} appends/s "
        f"(need >= {MIN_APPENDS_PER_S}) during the window")


def _assert_one_in_flight(window: Window, peers: list[str]) -> None:
    for peer in peers:
        assert window.after.counter(peer, "max_in_flight") == 1, (
            f"more than one UpdateConsensus in flight to {peer} (B1): "
            f"{window.after.peer(peer)['counters']}")


@pytest.mark.docker_subset
def test_refused_follower_gets_status_only_heartbeats_then_recovers(make_cluster: Any, workload: Any,
                                                                    record_verdict: Any) -> None:
    """B6, B7, B17, B18 while cut off (refused) under load; B8, B18 and catch-up after healing.

    The load stops before the heal, so nothing but the peer's own retry rule can make ops flow
    again: the reply to the first heartbeat is an LMP mismatch (the follower is behind), which
    resets ``failed_attempts`` and must be followed at once by a request with ops (B8).
    """
    cluster = make_cluster(nodes=3)
    leader, victim = _leader_and_follower(cluster)
    timing = cluster.timing
    _replicating(cluster, leader, victim)
    markers = Markers(cluster, "refused")
    markers.write(MIN_OK_BEFORE)
    _idle(cluster, leader, [victim])
    with partition(cluster, isolate=victim, mode="refused"):
        with workload(cluster, clients=LOAD_CLIENTS, rate_hz=LOAD_RATE_HZ):
            wait_failed_attempt(cluster, leader, victim, timing.peer_failed_within_s + heartbeats(cluster, 1))
            window = measure(cluster, leader, DEGRADED_WINDOW_P * timing.heartbeat_s,
                             f"{victim} cut off (refused)")
        ops_at_heal = peer_counter(cluster, leader, victim, "requests_with_ops")
        target = cluster.status(leader)["commit_index"]
    _assert_degraded_to_heartbeats(cluster, window, victim)
    _assert_recovers_at_once(cluster, leader, victim, ops_at_heal, target)
    markers.write(1)
    markers.assert_all_durable()
    _record_degradation_verdict(cluster, leader, victim, record_verdict)


def _assert_degraded_to_heartbeats(cluster: Cluster, window: Window, victim: str) -> None:
    """B6, B7, B17, B18 over a window in which ``victim`` refused every connection."""
    timing = cluster.timing
    window.assert_same_leadership()
    _assert_load(window)
    d = window.deltas(victim)
    lo, hi = heartbeat_count_bounds(cluster, window)
    print(f"window {window.inner_s:.3f}-{window.outer_s:.3f}s: {d} (heartbeat bounds {lo:.1f}..{hi:.1f})")
    # B6: about one RPC per heartbeat, however many writes arrive.
    assert d["requests_sent"] <= hi, (
        f"{victim} got {d['requests_sent']} requests in {window.outer_s:.2f}s while failing; "
        f"one per heartbeat allows at most {hi:.1f} (B6)")
    assert d["requests_sent"] >= lo, (
        f"{victim} got only {d['requests_sent']} requests in {window.inner_s:.2f}s; the heartbeat "
        f"should still send one per 0.75P-1.25P (at least {lo:.1f})")
    assert d["signals_suppressed_failed"] > d["requests_sent"], (
        f"write signals were not suppressed for the failed peer (B6): {d}")
    # B7: every one of them is status-only: no ops read, none sent.
    assert d["status_only_requests"] == d["requests_sent"], f"not all requests status-only (B7): {d}"
    assert d["requests_with_ops"] == 0 and d["ops_read"] == 0, f"ops sent to a failed peer (B7): {d}"
    before, after = window.before.peer(victim), window.after.peer(victim)
    assert after["failed_attempts"] >= before["failed_attempts"] + d["requests_sent"] - EDGE_SLACK, (
        f"failed_attempts did not grow with the failed sends: {before['failed_attempts']} -> "
        f"{after['failed_attempts']} over {d['requests_sent']} sends")
    assert after["status"] == "RPC_LAYER_ERROR", after
    # B17: connection failures do not refresh the last-contact time.
    grown_ms = after["last_contact_age_ms"] - before["last_contact_age_ms"]
    assert grown_ms >= 1000 * (window.inner_s - timing.heartbeat_s), (
        f"last contact refreshed by failed connects (B17): age grew by {grown_ms} ms only")
    # B18: health drops to UNKNOWN (FAILED only after follower_unavailable_considered_failed_sec).
    assert after["health"] == "UNKNOWN", after
    # The majority keeps committing.
    assert window.field_delta("commit_index") >= 0.8 * MIN_APPENDS_PER_S * window.inner_s, (
        f"the majority stopped committing: commit index +{window.field_delta('commit_index')}")


def _assert_recovers_at_once(cluster: Cluster, leader: str, victim: str, ops_at_heal: int,
                             target: int) -> None:
    """B8, B18: healed and idle, the next heartbeat is answered (an LMP mismatch: the follower is
    behind), the failure count resets and a request with ops follows at once; it catches up."""
    timing = cluster.timing
    reset_bound = heartbeats(cluster, 2) + timing.rpc_timeout_s
    cluster.wait_until(lambda: peer_view(cluster, leader, victim).get("failed_attempts") == 0,
                       what=f"failed_attempts for {victim} back to 0", timeout_s=reset_bound, poll_s=0.005)
    reset_at = cluster.history.now()
    cluster.wait_until(lambda: peer_counter(cluster, leader, victim, "requests_with_ops") > ops_at_heal,
                       what=f"requests with ops to {victim} again", timeout_s=reset_bound, poll_s=0.005)
    resumed_s = cluster.history.now() - reset_at
    # "At once": before any heartbeat could have fired (0.75P is the earliest).
    assert resumed_s < timing.jitter_window_s[0], (
        f"ops resumed {resumed_s:.3f}s after the failure count reset, not immediately (B8)")
    cluster.wait_caught_up(nodes=[victim], target_index=target, timeout_s=heartbeats(cluster, 4))
    cluster.wait_until(lambda: peer_view(cluster, leader, victim).get("health") == "HEALTHY",
                       what=f"{victim} HEALTHY again (B18)", timeout_s=heartbeats(cluster, 1))


def _record_degradation_verdict(cluster: Cluster, leader: str, victim: str, record_verdict: Any) -> None:
    """Judge the run from its saved history alone, too (lands in verdicts.json and the report):
    once the victim has caught up and the observer sampled the leader afterwards, so the
    checker's "after" window holds the resumed ops."""
    cluster.wait_caught_up(nodes=[victim], timeout_s=heartbeats(cluster, 4))
    wait_sampled(cluster, leader)
    record_verdict(guarded("degradation", check_degradation, cluster.history.events()))


def _pending_episode(cluster: Cluster, leader: str, peer: str, bound_s: float) -> tuple[float, float]:
    """Poll the leader through one whole episode of ``request_pending`` for ``peer`` (not pending,
    pending, not pending again) and return (shortest, longest) lengths it can have had."""
    seen: dict[str, float] = {}

    def step() -> bool:
        t0 = cluster.history.now()
        pending = peer_view(cluster, leader, peer).get("request_pending") is True
        t1 = cluster.history.now()
        if "rise_hi" not in seen:
            if not pending:
                seen["rise_lo"] = t0  # still idle when asked: the episode starts after t0
            elif "rise_lo" in seen:
                seen["rise_hi"] = seen["last_true"] = t1
            return False
        if pending:
            seen["last_true"] = t0
            return False
        seen["fall_hi"] = t1
        return True

    cluster.wait_until(step, what=f"one complete pending episode of {peer}", timeout_s=bound_s,
                       poll_s=0.005)
    return seen["last_true"] - seen["rise_hi"], seen["fall_hi"] - seen["rise_lo"]


def test_blackholed_follower_stays_pending_until_rpc_timeout(make_cluster: Any, workload: Any,
                                                            record_verdict: Any) -> None:
    """B20: a black-holed request keeps the peer pending for the whole RPC timeout; no heartbeat
    reaches the follower, which starts pre-elections without raising its term."""
    cluster = make_cluster(nodes=3)
    leader, victim = _leader_and_follower(cluster)
    timing = cluster.timing
    markers = Markers(cluster, "blackhole")
    markers.write(MIN_OK_BEFORE)
    _idle(cluster, leader, [victim])
    with partition(cluster, isolate=victim, mode="blackhole"):
        with workload(cluster, clients=LOAD_CLIENTS, rate_hz=LOAD_RATE_HZ):
            wait_failed_attempt(cluster, leader, victim, timing.peer_failed_within_s + heartbeats(cluster, 1),
                                what=f"{leader} to time out a request to {victim}")
            # Bound: a few episodes (timeout + next heartbeat each), as a gap between two episodes
            # shorter than one poll can go unseen.
            _, longest_s = _pending_episode(cluster, leader, victim,
                                            4 * (timing.rpc_timeout_s + heartbeats(cluster, 1)))
            follower_before = snap(cluster, victim)
            window = measure(cluster, leader, BLACKHOLE_WINDOW_RPC_TIMEOUTS * timing.rpc_timeout_s,
                             f"{victim} black-holed")
            follower_after = snap(cluster, victim)
    window.assert_same_leadership()
    _assert_load(window)
    print(f"pending episode at most {longest_s:.3f}s long (rpc timeout {timing.rpc_timeout_s}s)")
    assert longest_s >= timing.rpc_timeout_s, (
        f"{victim} stopped being pending after at most {longest_s:.3f}s, before the RPC timeout "
        f"{timing.rpc_timeout_s}s (B20)")
    d = window.deltas(victim)
    allowed = window.outer_s / timing.rpc_timeout_s + EDGE_SLACK
    print(f"window {window.outer_s:.3f}s: {d} (at most {allowed:.1f} sends)")
    assert d["requests_sent"] <= allowed, (
        f"{d['requests_sent']} requests to a black-holed peer in {window.outer_s:.2f}s; each "
        f"should stay pending for the {timing.rpc_timeout_s}s RPC timeout (B20)")
    # ... and no longer: each times out and the next heartbeat (within 1.25P) sends another.
    at_least = window.inner_s / (timing.rpc_timeout_s + heartbeats(cluster, 1)) - EDGE_SLACK
    assert d["requests_sent"] >= at_least, (
        f"only {d['requests_sent']} requests in {window.inner_s:.2f}s: requests should time out after "
        f"{timing.rpc_timeout_s}s and be retried at the next heartbeat (at least {at_least:.1f})")
    assert d["requests_with_ops"] == 0, d
    assert d["responses_ok"] == 0, f"a reply came back through a black hole: {d}"
    _assert_one_in_flight(window, [victim])
    # Nothing reached the follower; it tried pre-elections and kept its term.
    f0, f1 = follower_before.status, follower_after.status
    assert f1["updates_received"] == f0["updates_received"], "an update reached the black-holed follower"
    assert f1["pre_elections_started"] > f0["pre_elections_started"], (
        f"{victim} started no pre-election while cut off: {f0['pre_elections_started']} -> "
        f"{f1['pre_elections_started']}")
    assert f1["term"] == f0["term"] == window.after.status["term"], (
        f"the isolated follower raised its term: {f0['term']} -> {f1['term']}")
    assert f1["elections_started"] == f0["elections_started"], "a real election was started"
    cluster.wait_caught_up(nodes=[victim], timeout_s=timing.rpc_timeout_s + heartbeats(cluster, 4))
    cluster.wait_until(lambda: peer_view(cluster, leader, victim).get("failed_attempts") == 0,
                       what=f"{victim} recovered", timeout_s=heartbeats(cluster, 2))
    markers.write(1)
    markers.assert_all_durable()
    _record_degradation_verdict(cluster, leader, victim, record_verdict)


def test_one_request_in_flight_per_peer_with_latency(make_cluster: Any, workload: Any) -> None:
    """B1: with latency on one link, signals arriving while a request is pending are dropped;
    never more than one request in flight, so at most one send per round trip."""
    cluster = make_cluster(nodes=3)
    leader, slow = _leader_and_follower(cluster)
    timing = cluster.timing
    latency_s = LATENCY_P * timing.heartbeat_s
    others = [n for n in cluster.nodes if n != leader]
    with workload(cluster, clients=LOAD_CLIENTS, rate_hz=LOAD_RATE_HZ):
        _warm_up(cluster, leader, slow)
        with link_latency(cluster, leader, slow, latency_ms=round(latency_s * 1000), direction="requests"):
            window = measure(cluster, leader, LOADED_WINDOW_P * timing.heartbeat_s, f"latency to {slow}")
        wait_ok_ops(cluster, what="acknowledged writes after healing")
    window.assert_same_leadership()
    _assert_load(window)
    d = window.deltas(slow)
    allowed = window.outer_s / latency_s + EDGE_SLACK
    print(f"{slow}: {d} (at most {allowed:.1f} sends)")
    _assert_one_in_flight(window, others)
    assert d["signals_dropped_pending"] > 0, f"no signal arrived while a request was pending: {d}"
    assert d["requests_sent"] <= allowed, (
        f"{d['requests_sent']} requests in {window.outer_s:.2f}s with {latency_s}s latency: more "
        f"than one round trip at a time (B1)")
    assert d["requests_with_ops"] > 0, f"nothing replicated to {slow} through the latency: {d}"


def test_heartbeats_stop_while_a_peer_gets_ops(make_cluster: Any, workload: Any) -> None:
    """B3: every send with ops (or a new commit index) snoozes the heartbeater, so under steady
    writes heartbeat-triggered sends drop to (about) zero."""
    cluster = make_cluster(nodes=3)
    leader, follower = _leader_and_follower(cluster)
    timing = cluster.timing
    followers = [n for n in cluster.nodes if n != leader]
    with workload(cluster, clients=LOAD_CLIENTS, rate_hz=LOAD_RATE_HZ):
        _warm_up(cluster, leader, follower)
        window = measure(cluster, leader, LOADED_WINDOW_P * timing.heartbeat_s, "steady writes")
    window.assert_same_leadership()
    _assert_load(window)
    lo, _ = heartbeat_count_bounds(cluster, window)
    for peer in followers:
        d = window.deltas(peer)
        print(f"{peer}: {d}")
        assert d["requests_with_ops"] > 0 and d["heartbeater_snoozes"] >= d["requests_with_ops"], d
        # An idle peer would get at least lo heartbeats here; allow a stray one per gap in the load.
        assert d["heartbeat_sends"] <= max(1.0, lo / 4), (
            f"{peer} got {d['heartbeat_sends']} heartbeat sends under steady writes; an idle peer "
            f"gets >= {lo:.1f} in this window, a snoozed one about none (B3)")
    _assert_one_in_flight(window, followers)


def test_idle_leader_heartbeat_rate(make_cluster: Any) -> None:
    """B2: an idle leader sends each follower one heartbeat every 0.75P-1.25P."""
    cluster = make_cluster(nodes=3)
    leader = cluster.wait_for_leader()
    timing = cluster.timing
    followers = [n for n in cluster.nodes if n != leader]
    Markers(cluster, "idle").write(1)  # something for the durability checker; then the leader idles
    _idle(cluster, leader, followers)
    window = measure(cluster, leader, IDLE_WINDOW_P * timing.heartbeat_s, "idle leader")
    window.assert_same_leadership()
    lo, hi = heartbeat_count_bounds(cluster, window)
    for peer in followers:
        d = window.deltas(peer)
        print(f"{peer}: {d} (bounds {lo:.1f}..{hi:.1f})")
        assert lo <= d["requests_sent"] <= hi, (
            f"idle heartbeat count to {peer}: {d['requests_sent']} in {window.inner_s:.2f}-"
            f"{window.outer_s:.2f}s, expected {lo:.1f}..{hi:.1f} (B2)")
        assert d["heartbeat_sends"] == d["requests_sent"], f"idle sends not from the heartbeater: {d}"
        assert d["requests_with_ops"] == 0, d
    _assert_one_in_flight(window, followers)


def test_first_request_after_election_has_no_ops(make_cluster: Any, workload: Any) -> None:
    """B4, B5: a new leader rebuilds its peers; the first request to each follower carries no ops.

    Observable: replies between the survivors are delayed by 2P (a latency toxic on the reply
    direction), so the new leader's first request stays in flight long enough to be seen with
    ``requests_sent == 1``; at that moment ``requests_with_ops`` and ``ops_read`` must be 0.
    """
    cluster = make_cluster(nodes=3)
    old = cluster.wait_for_leader()
    timing = cluster.timing
    survivors = [n for n in cluster.nodes if n != old]
    delay_ms = round(LATENCY_P * timing.heartbeat_s * 1000)
    with workload(cluster, clients=LOAD_CLIENTS, rate_hz=LOAD_RATE_HZ):
        _warm_up(cluster, old, survivors[0])
        term = cluster.status(old)["term"]
        with ExitStack() as delays:
            for a in survivors:
                for b in survivors:
                    if a != b:
                        delays.enter_context(link_latency(cluster, a, b, latency_ms=delay_ms,
                                                          direction="replies"))
            killed = kill(cluster, old)
            first = _first_sighting(cluster, survivors, term,
                                    timing.new_leader_within_s() + 4 * delay_ms / 1000)
        new, peer, entry = first
        print(f"new leader {new}, first sighting of its peer {peer}: {entry}")
        c = entry["counters"]
        assert c["requests_sent"] == 1, (
            f"first sighting already shows {c['requests_sent']} requests to {peer} (the reply delay "
            f"of {delay_ms} ms should keep the first one in flight)")
        assert c["requests_with_ops"] == 0 and c["ops_read"] == 0, (
            f"the new leader's first request to {peer} carried ops (B5): {entry}")
        assert entry["last_request_kind"] != "ops" and entry["request_pending"] is True, entry
        cluster.wait_until(lambda: peer_counter(cluster, new, peer, "requests_with_ops") > 0,
                           what=f"{new} to replicate to {peer} after the first exchange",
                           timeout_s=heartbeats(cluster, 2) + timing.rpc_timeout_s)
        dead = peer_view(cluster, new, old)
        assert dead["counters"]["requests_with_ops"] == 0, f"ops sent to the dead old leader: {dead}"
        killed.heal(cluster)  # start the old leader again; it rejoins as a follower
        wait_ok_ops(cluster, what="acknowledged writes after the restart")
    cluster.wait_caught_up(timeout_s=timing.new_leader_within_s())


def _first_sighting(cluster: Cluster, survivors: list[str], old_term: int,
                    bound_s: float) -> tuple[str, str, dict[str, Any]]:
    """Poll the survivors until one leads a newer term and tracks the other; return its entry."""
    found: dict[str, Any] = {}

    def check() -> bool:
        for node in survivors:
            st = cluster.status(node)
            other = next(n for n in survivors if n != node)
            entry = (st.get("peers") or {}).get(other)
            if st["role"] == "LEADER" and st["term"] > old_term and entry \
                    and entry["counters"]["requests_sent"] >= 1:
                found["v"] = (node, other, entry)
                return True
        return False

    cluster.wait_until(check, what="a new leader with a first request out", timeout_s=bound_s,
                       poll_s=0.005)
    return found["v"]
