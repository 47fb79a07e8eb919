"""Heartbeat degradation: how a leader's traffic to one peer degrades and recovers (peer-spec §1).

Covers B1-B8, B17, B18 and B20 on a live 3-node cluster, with the fast timing profile. Every
bound comes from the cluster's own flags (``cluster.timing``): P = raft_heartbeat_interval_ms,
jittered to [0.75P, 1.25P]; the RPC timeout is consensus_rpc_timeout_ms. Windows are measured
between two ``/status`` snapshots of the leader (see ``_helpers.measure``) and checked against
the peer counters documented in docs/node-api.md. Bounds on *when* the leader acted (B8's "at
once", B20's pending-for-the-RPC-timeout, B4/B5's first request) come from the leader's own
trace, two timestamps on its clock; harness polling only decides when to look.
"""

from __future__ import annotations

from typing import Any

import pytest

from faults.network import link_latency, partition
from faults.process import kill
from harness.checkers.degradation import check_degradation
from harness.checkers.recovery import MIN_OK_BEFORE
from harness.checkers.verdict import Validity, Verdict, guarded
from harness.cluster import Cluster
from suites._helpers import (
    TRACE_RESOLUTION_S,
    Markers,
    Window,
    exchanges,
    heartbeat_count_bounds,
    heartbeats,
    measure,
    peer_counter,
    peer_view,
    snap,
    traces,
    wait_failed_attempt,
    wait_ok_ops,
    wait_sampled,
    wait_trace,
)

pytestmark = [pytest.mark.chaos, pytest.mark.heartbeat_degradation,
              pytest.mark.kuduraft_only(reason="B1-B8, B17, B18, B20: kuduraft's per-peer heartbeat degradation, from its per-peer evidence and trace")]

# Load: every KV op (reads too) appends to the Raft log, so this is the rate of write signals.
# Each client waits for its answer, so the rate is capped at clients / latency: 8 clients reach
# 80/s with answers up to 100 ms (a loaded machine's p50 was ~85 ms; 4 clients then fell short).
LOAD_CLIENTS = 8
LOAD_RATE_HZ = 80.0
MIN_APPENDS_PER_S = 50.0
# Window lengths, in heartbeat periods P or RPC timeouts (so they scale with the profile).
DEGRADED_WINDOW_P = 15
IDLE_WINDOW_P = 20
LOADED_WINDOW_P = 10
# Two RPC timeouts (12 s with fast(): RPC timeout = 20 MET as in kuduraft) hold at least one whole
# pending request and its retry; a third would only add time.
BLACKHOLE_WINDOW_RPC_TIMEOUTS = 2
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


def _load_exercised(window: Window, record_verdict: Any, test: str) -> bool:
    """Did the harness exercise the system: the leader appended at the promised write rate during
    the window? If not (a loaded machine starved the workload), the test cannot judge the node:
    it records an UNKNOWN verdict saying why and the caller returns without failing."""
    appended = window.field_delta("last_index")
    rate = appended / window.outer_s
    if rate >= MIN_APPENDS_PER_S:
        return True
    summary = (f"the harness could not exercise the system: only {rate:.1f} appends/s "
               f"(need >= {MIN_APPENDS_PER_S}) during the {window.outer_s:.2f} s window")
    print(f"UNKNOWN: {summary}")
    record_verdict(Verdict(checker=f"load/{test}", validity=Validity.UNKNOWN, summary=summary,
                           details={"appended": appended, "window_s": round(window.outer_s, 3),
                                    "rate_per_s": round(rate, 1), "min_rate_per_s": MIN_APPENDS_PER_S}))
    return False


def _assert_one_in_flight(window: Window, peers: list[str]) -> None:
    for peer in peers:
        assert window.after.counter(peer, "max_in_flight") == 1, (
            f"more than one UpdateConsensus in flight to {peer} (B1): "
            f"{window.after.peer(peer)['counters']}")


@pytest.mark.docker_subset
@pytest.mark.kuduraft_timing
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
    if not _load_exercised(window, record_verdict, "refused-follower"):
        return
    _assert_degraded_to_heartbeats(cluster, window, victim)
    _assert_recovers_at_once(cluster, leader, victim, ops_at_heal, target)
    markers.write(1)
    markers.assert_all_durable()
    _record_degradation_verdict(cluster, leader, victim, record_verdict)


def _assert_degraded_to_heartbeats(cluster: Cluster, window: Window, victim: str) -> None:
    """B6, B7, B17, B18 over a window in which ``victim`` refused every connection."""
    timing = cluster.timing
    window.assert_same_leadership()
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
    behind), the failure count resets and a request with ops follows at once; it catches up.

    "At once" is judged on the leader's own clock (its trace): the request with ops is sent by
    the reply's processing itself (trigger ``send_more``), before any heartbeat could have fired
    (0.75P after the reply is the earliest). Polling only decides when to look."""
    timing = cluster.timing
    reset_bound = heartbeats(cluster, 2) + timing.rpc_timeout_s
    cluster.wait_until(lambda: peer_counter(cluster, leader, victim, "requests_with_ops") > ops_at_heal,
                       what=f"requests with ops to {victim} again", timeout_s=reset_bound)
    term = cluster.status(leader)["term"]

    def resumed(events: list[dict[str, Any]]) -> tuple[dict[str, Any], dict[str, Any]] | None:
        pairs = exchanges(events, victim, term)
        degraded = [i for i, (req, _) in enumerate(pairs) if req["request_kind"] == "status_only"]
        if not degraded:
            return None
        first_ops = next((req for req, _ in pairs[degraded[-1] + 1:] if req["ops"] > 0), None)
        if first_ops is None:
            return None
        prev_reply = pairs[[r["req"] for r, _ in pairs].index(first_ops["req"]) - 1][1]
        return (prev_reply, first_ops) if prev_reply is not None else None

    reply, first_ops = wait_trace(cluster, leader, resumed,
                                  f"the first request with ops to {victim} after the cut",
                                  heartbeats(cluster, 4))
    gap_s = first_ops["node_t"] - reply["node_t"]
    print(f"{leader}: reply {reply['outcome']} to request #{reply['req']}, then request "
          f"#{first_ops['req']} with {first_ops['ops']} ops ({first_ops['trigger']}) {gap_s * 1000:.3f} ms "
          f"later on its clock")
    assert reply["outcome"] in ("ok", "preceding_entry_didnt_match"), (
        f"ops resumed after a failed exchange, not after the answered one (B8): {reply}")
    assert first_ops["trigger"] == "send_more", (
        f"ops resumed on a {first_ops['trigger']}, not at once on the reply (B8): {first_ops}")
    assert gap_s < timing.jitter_window_s[0], (
        f"ops resumed {gap_s:.3f}s (node clock) after the failure count reset, not immediately (B8)")
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


def _assert_follower_fd_fired_while_pending(cluster: Cluster, leader: str, victim: str, term: int,
                                            exchanged: list[tuple[dict[str, Any], dict[str, Any] | None]]) -> None:
    """B20 in kuduraft's shape (RPC timeout = 20 MET): the follower's failure detector fires, its
    pre-election fails, it backs off and fires again, all while the leader's first black-holed
    request to it is still pending. (With the old 1.7 MET timeout the request timed out before the
    second firing: the second pre-election comes at least 2 MET after the last update.)

    Two clocks, so only durations cross nodes (both monotonic, same rate): on the leader's clock the
    follower's last accepted update lies between request k's send and its ``ok`` reply (k + 1 = the
    first request that timed out, k = the one before it, which succeeded). A pre-election at ``leader_contact_age_s`` = a (the follower's clock)
    therefore falls inside the pending interval [q, r] of request k+1 if
    q - q_k <= a and r_k + a <= r. (Should request k+1 itself have reached the follower just as the
    black hole went up, its reply lost, the silence starts milliseconds after q instead: the first
    inequality still holds and the second is off by at most q - r_k <= 1.25 P, far inside the
    ~19 MET between the first pre-election and r.) (kuduraft: RaftConsensus's failure detector runs on
    MinimumElectionTimeout while Peer::SendNextRequest keeps request_pending_ until the RPC's
    consensus_rpc_timeout_ms deadline set on its RpcController, consensus_peers.cc)."""
    by_req = {q["req"]: (q, r) for q, r in exchanged}
    first_timeout = min((q["req"] for q, r in exchanged if r is not None and r["outcome"] == "timeout"),
                        default=None)
    before = by_req.get(first_timeout - 1) if first_timeout is not None else None
    assert first_timeout is not None and before is not None and before[1] is not None \
        and before[1]["outcome"] == "ok", (
            f"no ok exchange right before the first timed-out request to {victim}: "
            f"{[(q['req'], r and r['outcome']) for q, r in exchanged]}")
    (q_k, r_k), (q, r) = before, by_req[first_timeout]
    assert r_k is not None and r is not None

    def fired(evs: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [e for e in evs if e["event"] == "pre_election_started" and e["term"] == term
                and e.get("leader_contact_age_s") is not None]

    pre = wait_trace(cluster, victim, fired, "a pre-election after losing the leader", heartbeats(cluster, 4))
    ages = [float(e["leader_contact_age_s"]) for e in pre]
    lo, hi = q["node_t"] - q_k["node_t"], r["node_t"] - r_k["node_t"]
    inside = [a for a in ages if lo <= a <= hi]
    need = 2  # fired, lost its pre-election, backed off, fired again: all within one pending request
    print(f"{victim} pre-elections at leader-contact ages {[round(a, 3) for a in ages]}s; {leader}'s "
          f"request {q['req']} pending {r['node_t'] - q['node_t']:.3f}s covers ages [{lo:.3f}, {hi:.3f}]s")
    assert len(inside) >= need, (
        f"{victim} started {len(inside)} pre-election(s) while {leader}'s request {q['req']} was pending "
        f"(ages {ages}, pending window [{lo:.3f}, {hi:.3f}]s): with the RPC timeout at "
        f"{cluster.timing.rpc_timeout_s / cluster.timing.failure_timeout_s:g} MET its failure detector "
        f"must fire, and fire again after the back-off, before the request times out (B20)")


@pytest.mark.kuduraft_timing
def test_blackholed_follower_stays_pending_until_rpc_timeout(make_cluster: Any, workload: Any,
                                                            record_verdict: Any) -> None:
    """B20: a black-holed request keeps the peer pending for the whole RPC timeout; no heartbeat
    reaches the follower, which starts pre-elections without raising its term.

    Exercised in kuduraft's shape: the profile's RPC timeout is 20 MET (fast() keeps kuduraft's
    ratio), so the follower's failure detector fires while the leader's request is pending.
    """
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
            follower_before = snap(cluster, victim)
            window = measure(cluster, leader, BLACKHOLE_WINDOW_RPC_TIMEOUTS * timing.rpc_timeout_s,
                             f"{victim} black-holed")
            follower_after = snap(cluster, victim)
    window.assert_same_leadership()
    if not _load_exercised(window, record_verdict, "blackholed-follower"):
        return
    # Each black-holed request stayed pending for the whole RPC timeout, on the leader's clock.
    term = window.after.status["term"]
    timed_out = wait_trace(cluster, leader,
                           lambda evs: [(q, r) for q, r in exchanges(evs, victim, term)
                                        if r is not None and r["outcome"] == "timeout"],
                           f"timed-out requests to {victim}", heartbeats(cluster, 4))
    pending_s = [r["node_t"] - q["node_t"] for q, r in timed_out]
    print(f"{len(pending_s)} timed-out requests, pending {min(pending_s):.3f}-{max(pending_s):.3f}s "
          f"on {leader}'s clock (rpc timeout {timing.rpc_timeout_s}s)")
    assert min(pending_s) >= timing.rpc_timeout_s - TRACE_RESOLUTION_S, (
        f"a black-holed request to {victim} stopped being pending after {min(pending_s):.3f}s, before "
        f"the RPC timeout {timing.rpc_timeout_s}s (B20)")
    _assert_follower_fd_fired_while_pending(cluster, leader, victim, term,
                                            exchanges(traces(cluster, leader), victim, term))
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


def test_one_request_in_flight_per_peer_with_latency(make_cluster: Any, workload: Any,
                                                     record_verdict: Any) -> None:
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
    if not _load_exercised(window, record_verdict, "latency"):
        return
    d = window.deltas(slow)
    allowed = window.outer_s / latency_s + EDGE_SLACK
    print(f"{slow}: {d} (at most {allowed:.1f} sends)")
    _assert_one_in_flight(window, others)
    assert d["signals_dropped_pending"] > 0, f"no signal arrived while a request was pending: {d}"
    assert d["requests_sent"] <= allowed, (
        f"{d['requests_sent']} requests in {window.outer_s:.2f}s with {latency_s}s latency: more "
        f"than one round trip at a time (B1)")
    assert d["requests_with_ops"] > 0, f"nothing replicated to {slow} through the latency: {d}"


def test_heartbeats_stop_while_a_peer_gets_ops(make_cluster: Any, workload: Any,
                                               record_verdict: Any) -> None:
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
    if not _load_exercised(window, record_verdict, "steady-writes"):
        return
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


@pytest.mark.kuduraft_timing
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

    Observed in the new leader's own trace: its ``became_leader`` event and, for each peer, the
    request that Peer sent first in the new term (``first``), with its kind and ops count. (This
    used to be caught by polling ``/status`` while a reply delay kept the first request in flight.)
    """
    cluster = make_cluster(nodes=3)
    old = cluster.wait_for_leader()
    timing = cluster.timing
    survivors = [n for n in cluster.nodes if n != old]
    with workload(cluster, clients=LOAD_CLIENTS, rate_hz=LOAD_RATE_HZ):
        _warm_up(cluster, old, survivors[0])
        term = cluster.status(old)["term"]
        killed = kill(cluster, old)
        new = cluster.wait_for_new_leader(old, term)
        new_term = cluster.status(new)["term"]
        peer = next(n for n in survivors if n != new)

        def first_requests(events: list[dict[str, Any]]) -> dict[str, dict[str, Any]] | None:
            won = [e for e in events if e["event"] == "became_leader" and e["term"] == new_term]
            firsts = {e["peer"]: e for e in events if e["event"] == "request"
                      and e["term"] == new_term and e["first"]}
            return {"won": won[0], **firsts} if won and peer in firsts and old in firsts else None

        found = wait_trace(cluster, new, first_requests, f"its first requests in term {new_term}",
                           heartbeats(cluster, 4) + timing.rpc_timeout_s)
        won = found["won"]
        for dest in (peer, old):
            first = found[dest]
            print(f"{new} leads term {new_term}; its first request to {dest}: {first} "
                  f"({(first['node_t'] - won['node_t']) * 1000:.1f} ms after winning, node clock)")
            assert first["req"] == 1 and first["seq"] > won["seq"], first
            assert first["ops"] == 0 and first["request_kind"] != "ops", (
                f"the new leader's first request to {dest} carried ops (B5): {first}")
        cluster.wait_until(lambda: peer_counter(cluster, new, peer, "requests_with_ops") > 0,
                           what=f"{new} to replicate to {peer} after the first exchange",
                           timeout_s=heartbeats(cluster, 2) + timing.rpc_timeout_s)
        dead = peer_view(cluster, new, old)
        assert dead["counters"]["requests_with_ops"] == 0, f"ops sent to the dead old leader: {dead}"
        killed.heal(cluster)  # start the old leader again; it rejoins as a follower
        wait_ok_ops(cluster, what="acknowledged writes after the restart")
    cluster.wait_caught_up(timeout_s=timing.new_leader_within_s())
