"""Proxy hops: one follower fed through a proxy peer (kuduraft DURABLE_ROUTING_POLICY, §3).

Topology ``{"n3": "n2"}`` ("n3 is fed by n2"). The cluster file is fixed at start, and in a
3-node tree the route depends on who leads: only a leader that is neither the proxy nor the fed
node routes through the proxy (n1 -> n3 via n2); with n2 or n3 leading every peer is fed
directly (the other trees hang under the leader). So the leader must be n1, and these tests make
that deterministic by starting n2 and n3 with ``enable_leader_failure_detection=false``: only
n1 ever starts an election. Nothing here kills n1, and the proxy/destination behaviour under
test (routing, relaying, degradation at the leader) does not involve their failure detectors.
The *proxy* is n2, the *destination* n3.

Bounds come from the flags: P, the RPC timeout, and ``raft_proxy_failure_threshold_ms`` (the
profile's value, raised at runtime on the leader where a test changes it).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest

from faults.flags import runtime_flags
from faults.network import partition
from harness.checkers.recovery import MIN_OK_BEFORE
from harness.cluster import Cluster
from suites._helpers import (
    TRACE_RESOLUTION_S,
    Markers,
    Window,
    heartbeat_count_bounds,
    heartbeats,
    measure,
    peer_counter,
    peer_view,
    snap,
    traces,
    wait_failed_attempt,
    wait_ok_ops,
    wait_trace,
)

pytestmark = [pytest.mark.chaos, pytest.mark.proxy_hops,
              pytest.mark.kuduraft_only(reason="B43-B48: kuduraft's proxy-peer routing (DURABLE_ROUTING_POLICY)")]

LEADER, PROXY, DEST = "n1", "n2", "n3"
TOPOLOGY = {DEST: PROXY}
NO_ELECTIONS = {"enable_leader_failure_detection": False}
LOAD_CLIENTS = 4
LOAD_RATE_HZ = 40.0
WINDOW_P = 10
PROXY_THRESHOLD_FACTOR = 2  # B45 test: the leader's threshold is raised to this x the profile's
# The node's own event-loop lateness allowed on top of a flag-derived bound (a timer runs late on
# a loaded machine, never early): half a heartbeat period of the fast profile.
LOOP_LATENESS_S = 0.05
LAG_OPS = 20  # B45 lag test: the leader's raft_proxy_failure_lag_ops (default 1000), set at runtime


def _destination_view(window: Window, dest: str, proxy_before: dict[str, int],
                      proxy_after: dict[str, int]) -> tuple[dict[str, int], Mapping[str, Any]]:
    """The leader's counter deltas and final entry for ``dest`` over ``window`` (printed, with the
    proxy node's counters), after checking the leader led one term throughout."""
    window.assert_same_leadership()
    d = window.deltas(dest)
    entry = window.after.peer(dest)
    print(f"to {dest}: {d}\nentry: {entry}\nproxy node: {proxy_before} -> {proxy_after}")
    return d, entry


def _proxied_cluster(make_cluster: Any) -> tuple[Cluster, str, str]:
    """A started cluster with the topology, led by n1, replicating to n3 through n2:
    (cluster, leader, destination)."""
    cluster = make_cluster(nodes=3, topology=TOPOLOGY,
                           node_flags={PROXY: NO_ELECTIONS, DEST: NO_ELECTIONS})
    leader = cluster.wait_for_leader()
    assert leader == LEADER, f"{leader} leads although only {LEADER} runs elections"
    print(f"leader={leader} proxy={PROXY} destination={DEST}")
    cluster.wait_until(lambda: peer_view(cluster, leader, DEST).get("next_hop") == PROXY
                       and peer_view(cluster, leader, DEST).get("status") == "OK",
                       what=f"{leader} to replicate to {DEST} through {PROXY}",
                       timeout_s=heartbeats(cluster, 4) + cluster.timing.rpc_timeout_s)
    return cluster, leader, DEST


def _proxy_counters(cluster: Cluster) -> dict[str, int]:
    return dict(cluster.status(PROXY)["proxy"])


def _warmed_up(cluster: Cluster) -> None:
    """Enough acknowledged operations before the first fault for the checkers to judge the run."""
    wait_ok_ops(cluster, MIN_OK_BEFORE, since_t=0.0, what="acknowledged writes before the fault")


@pytest.mark.docker_subset
def test_replication_reaches_destination_through_proxy(make_cluster: Any, workload: Any) -> None:
    """B43, B44: the destination's requests go to the proxy, which relays them with the ops read
    from its own log; the proxy itself and nobody else is fed directly."""
    cluster, leader, dest = _proxied_cluster(make_cluster)
    with workload(cluster, clients=LOAD_CLIENTS, rate_hz=LOAD_RATE_HZ):
        _warmed_up(cluster)
        proxy_before, dest_before = _proxy_counters(cluster), snap(cluster, dest)
        window = measure(cluster, leader, WINDOW_P * cluster.timing.heartbeat_s, "proxied replication")
        proxy_after, dest_after = _proxy_counters(cluster), snap(cluster, dest)
        target = window.after.status["commit_index"]
    window.assert_same_leadership()
    d, p = window.deltas(dest), window.deltas(PROXY)
    print(f"to {dest}: {d}\nto {PROXY}: {p}\nproxy node: {proxy_before} -> {proxy_after}")
    assert window.after.peer(dest)["next_hop"] == PROXY
    assert d["proxied_sends"] == d["requests_sent"] > 0, f"requests to {dest} not all proxied: {d}"
    assert d["requests_with_ops"] > 0 and d["responses_ok"] > 0, d
    assert p["proxied_sends"] == 0 and window.after.peer(PROXY)["next_hop"] == PROXY, (
        f"the proxy node itself should be fed directly: {p}")
    received = proxy_after["received"] - proxy_before["received"]
    success = proxy_after["success"] - proxy_before["success"]
    assert received >= d["requests_sent"] - 1 and success > 0, (
        f"the proxy node relayed {received} requests ({success} successes) of the "
        f"{d['requests_sent']} proxied to {dest}")
    assert dest_after.status["updates_received"] > dest_before.status["updates_received"]
    cluster.wait_caught_up(nodes=[dest], target_index=target, timeout_s=heartbeats(cluster, 4))


PROXY_ANSWERS = ("server_error", "remote_error")
"""Trace outcomes of a reply the proxy itself gave (not a leader-side timeout or RPC error)."""


@pytest.mark.parametrize(("mode", "expected_status"), [("refused", "REMOTE_ERROR"),
                                                       ("blackhole", "RPC_LAYER_ERROR")])
def test_destination_cut_behind_proxy(make_cluster: Any, workload: Any, mode: str,
                                      expected_status: str) -> None:
    """B48: the leg proxy->destination cut. Refused: the proxy answers an error, which the leader
    counts as REMOTE_ERROR for the destination (and which refreshes its last contact, so it never
    reaches FAILED by the contact timeout). Black-holed: the leader's own RPC times out first,
    RPC_LAYER_ERROR. Either way failed_attempts grows and the destination is degraded to one
    status-only request per heartbeat (refused) or per RPC timeout (black hole)."""
    cluster, leader, dest = _proxied_cluster(make_cluster)
    timing = cluster.timing
    with workload(cluster, clients=LOAD_CLIENTS, rate_hz=LOAD_RATE_HZ):
        _warmed_up(cluster)
        with partition(cluster, link=(PROXY, dest), mode=mode):
            wait_failed_attempt(cluster, leader, dest, 2 * timing.rpc_timeout_s + heartbeats(cluster, 1))
            proxy_before = _proxy_counters(cluster)
            # A black-holed leg needs two whole RPC timeouts (6 s each: 20 MET, kuduraft's ratio) in
            # the window; a refused one answers at once, so heartbeats alone fill it.
            hang_s = 2 * timing.rpc_timeout_s if mode == "blackhole" else 0.0
            window = measure(cluster, leader, hang_s + WINDOW_P * timing.heartbeat_s,
                             f"{PROXY}->{dest} {mode}")
            proxy_after = _proxy_counters(cluster)
        wait_ok_ops(cluster, what="acknowledged writes after healing")
        target = cluster.status(leader)["commit_index"]
    d, entry = _destination_view(window, dest, proxy_before, proxy_after)
    proxy_answered_first: list[dict[str, Any]] = []
    if mode == "blackhole":
        # Leader and proxy time out after the same consensus_rpc_timeout_ms, the proxy a little
        # later; when the leader's loop runs late the proxy's own error answers first (a server
        # error from the proxy, peer status REMOTE_ERROR) and that answer does refresh the
        # contact (kuduraft has the same race); a request that reaches the proxy just as its
        # previous relay times out is answered at once. B17 is about the leader-side timeouts,
        # so it is asserted when no proxy answer came in the window, and such answers neither
        # count as hanging requests nor forbid the REMOTE_ERROR status. The window's requests
        # are known by number: a reply carries the number of the request it answers.
        replies = traces(cluster, leader, "reply", peer=dest)
        first_timeout = next((e["seq"] for e in replies if e["outcome"] == "timeout"), None)
        assert first_timeout is not None, f"no leader-side timeout to {dest} behind the black hole (B48)"
        before, after = window.before.peer(dest), window.after.peer(dest)
        # answered inside the window: from the request pending at its start (else the next one)
        # to the last one sent in it (less the one still pending at its end)
        lo = before["counters"]["requests_sent"] + (0 if before["request_pending"] else 1)
        hi_req = after["counters"]["requests_sent"] - (1 if after["request_pending"] else 0)
        proxy_answered_first = [e for e in replies if lo <= e["req"] <= hi_req
                                and e["outcome"] in PROXY_ANSWERS]
        if proxy_answered_first:
            print(f"the proxy's own timeout answered {len(proxy_answered_first)} request(s) first: "
                  f"{proxy_answered_first[:2]}")
    allowed = {expected_status} | ({"REMOTE_ERROR"} if proxy_answered_first else set())
    assert entry["status"] in allowed, f"{mode} destination behind a proxy (B48): {entry}"
    assert entry["failed_attempts"] > window.before.peer(dest)["failed_attempts"], entry
    assert entry["next_hop"] == PROXY and d["proxied_sends"] == d["requests_sent"] > 0, d
    assert d["requests_with_ops"] == 0 and d["status_only_requests"] == d["requests_sent"], d
    assert entry["health"] == "UNKNOWN", entry
    _, hi = heartbeat_count_bounds(cluster, window)
    if mode == "refused":
        assert d["requests_sent"] <= hi, f"more than one request per heartbeat to {dest}: {d}"
        # REMOTE_ERROR refreshes the destination's last contact (why it never turns FAILED).
        assert entry["last_contact_age_ms"] <= 1000 * (heartbeats(cluster, 2) + timing.rpc_timeout_s), entry
        assert proxy_after["received"] > proxy_before["received"], proxy_after
        assert proxy_after["success"] == proxy_before["success"], (
            f"the proxy reported success relaying to an unreachable destination: {proxy_after}")
    else:
        hanging = d["requests_sent"] - len(proxy_answered_first)
        assert hanging <= window.outer_s / timing.rpc_timeout_s + 1, (
            f"requests to {dest} should each hang for the RPC timeout unless the proxy answered "
            f"({len(proxy_answered_first)} did): {d}")
        if not proxy_answered_first:
            assert entry["last_contact_age_ms"] >= 1000 * (window.inner_s - timing.rpc_timeout_s), (
                f"leader-side timeouts must not refresh the last contact (B17): {entry}")
    cluster.wait_caught_up(nodes=[dest], target_index=target,
                           timeout_s=timing.rpc_timeout_s + heartbeats(cluster, 4))
    cluster.wait_until(lambda: peer_view(cluster, leader, dest).get("failed_attempts") == 0,
                       what=f"{dest} recovered", timeout_s=heartbeats(cluster, 2))


def test_stale_proxy_makes_leader_go_direct(make_cluster: Any, workload: Any) -> None:
    """B45: once the leader has not heard from the proxy for raft_proxy_failure_threshold_ms,
    requests to the destination go direct (with ops), and go back through the proxy after it
    recovers. The threshold is raised at runtime on the leader to show it is what decides."""
    cluster, leader, dest = _proxied_cluster(make_cluster)
    timing = cluster.timing
    threshold_ms = PROXY_THRESHOLD_FACTOR * timing.proxy_failure_threshold_ms
    threshold_s = threshold_ms / 1000
    with workload(cluster, clients=LOAD_CLIENTS, rate_hz=LOAD_RATE_HZ):
        _warmed_up(cluster)
        with runtime_flags(cluster, {"raft_proxy_failure_threshold_ms": threshold_ms}, target=leader), \
                partition(cluster, isolate=PROXY, mode="refused"):
            cluster.wait_until(lambda: peer_view(cluster, leader, dest).get("next_hop") == dest,
                               what=f"{leader} to send to {dest} directly",
                               timeout_s=threshold_s + heartbeats(cluster, 2) + timing.rpc_timeout_s)
            contact, direct = _went_direct(cluster, leader, dest)
            direct_ops = peer_counter(cluster, leader, dest, "requests_with_ops")
            proxied = peer_counter(cluster, leader, dest, "proxied_sends")
            cluster.wait_until(lambda: peer_counter(cluster, leader, dest, "requests_with_ops") > direct_ops,
                               what=f"ops to {dest} directly", timeout_s=heartbeats(cluster, 2))
            target = cluster.status(leader)["commit_index"]
            cluster.wait_caught_up(nodes=[dest], target_index=target, timeout_s=heartbeats(cluster, 4))
            still = peer_view(cluster, leader, dest)
            assert still["counters"]["proxied_sends"] == proxied and still["next_hop"] == dest, (
                f"requests to {dest} went back to the unreachable proxy: {still}")
        switched_s = direct["node_t"] - contact["node_t"]
        print(f"direct {switched_s:.3f}s after the last answer from {PROXY} ({contact['outcome']}), "
              f"on {leader}'s clock (threshold {threshold_s:.3f}s): {direct}")
        # B45, judged on the leader's clock: the route changes only once the proxy has been
        # silent for longer than the threshold, and then with the next request to the destination
        # (after at most a jittered heartbeat, or a request in flight timing out first).
        assert switched_s > threshold_s - TRACE_RESOLUTION_S, (
            f"went direct {switched_s:.3f}s after the last contact with {PROXY}, before the "
            f"{threshold_s:.3f}s proxy threshold (B45)")
        late_s = threshold_s + heartbeats(cluster, 1) + timing.rpc_timeout_s + LOOP_LATENESS_S
        assert switched_s <= late_s, (
            f"still proxied {switched_s:.3f}s after the last contact with {PROXY} (threshold "
            f"{threshold_s:.3f}s; at most {late_s:.3f}s with the next heartbeat)")
        # The proxy is back: once the leader hears from it, the destination is proxied again.
        cluster.wait_until(lambda: peer_counter(cluster, leader, dest, "proxied_sends") > proxied
                           and peer_view(cluster, leader, dest).get("next_hop") == PROXY,
                           what=f"{dest} proxied through {PROXY} again",
                           timeout_s=heartbeats(cluster, 4) + timing.rpc_timeout_s)
        wait_ok_ops(cluster, what="acknowledged writes after healing")


def _went_direct(cluster: Cluster, leader: str, dest: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """From the leader's trace, in its current term: its latest request to ``dest`` sent directly
    right after a proxied one, and the last answer it had from the proxy before it (what refreshes the
    proxy's last-contact time: any reply but an RPC-layer failure)."""
    term = cluster.status(leader)["term"]

    def find(events: list[dict[str, Any]]) -> tuple[dict[str, Any], dict[str, Any]] | None:
        sends = [e for e in events if e["event"] == "request" and e["peer"] == dest and e["term"] == term]
        switches = [b for a, b in zip(sends, sends[1:], strict=False) if a["proxied"] and not b["proxied"]]
        if not switches:
            return None
        direct = switches[-1]
        answers = [e for e in events if e["event"] == "reply" and e["peer"] == PROXY
                   and e["term"] == term and e["outcome"] not in ("rpc_error", "timeout")
                   and e["seq"] < direct["seq"]]
        return (answers[-1], direct) if answers else None

    found: tuple[dict[str, Any], dict[str, Any]] = wait_trace(
        cluster, leader, find, f"its first direct request to {dest}", heartbeats(cluster, 4))
    return found


def test_hop_exhaustion_is_a_failed_attempt(make_cluster: Any, workload: Any) -> None:
    """B47: with raft_proxy_max_hops=0 on the leader, the proxy refuses every proxied request at
    the RPC level (hops exhausted): REMOTE_ERROR and a failed attempt for the destination, which
    then gets status-only requests only; the destination receives nothing."""
    cluster, leader, dest = _proxied_cluster(make_cluster)
    timing = cluster.timing
    with workload(cluster, clients=LOAD_CLIENTS, rate_hz=LOAD_RATE_HZ):
        _warmed_up(cluster)
        with runtime_flags(cluster, {"raft_proxy_max_hops": 0}, target=leader):
            wait_failed_attempt(cluster, leader, dest, heartbeats(cluster, 2) + timing.rpc_timeout_s)
            proxy_before, dest_before = _proxy_counters(cluster), snap(cluster, dest)
            window: Window = measure(cluster, leader, WINDOW_P * timing.heartbeat_s, "hops exhausted")
            proxy_after, dest_after = _proxy_counters(cluster), snap(cluster, dest)
        wait_ok_ops(cluster, what="acknowledged writes after healing")
        target = cluster.status(leader)["commit_index"]
    d, entry = _destination_view(window, dest, proxy_before, proxy_after)
    assert entry["status"] == "REMOTE_ERROR" and entry["next_hop"] == PROXY, entry
    assert entry["failed_attempts"] >= window.before.peer(dest)["failed_attempts"] + d["requests_sent"] - 1, (
        f"hop exhaustion not counted as failed attempts (B47): {entry}")
    assert d["requests_sent"] > 0 and d["requests_with_ops"] == 0, d
    exhausted = proxy_after["hops_exhausted"] - proxy_before["hops_exhausted"]
    assert exhausted >= d["requests_sent"] - 1 and exhausted > 0, (
        f"the proxy counted {exhausted} exhausted requests for {d['requests_sent']} sends")
    assert dest_after.status["updates_received"] == dest_before.status["updates_received"], (
        f"{dest} received updates although every proxied request ran out of hops")
    cluster.wait_caught_up(nodes=[dest], target_index=target,
                           timeout_s=timing.rpc_timeout_s + heartbeats(cluster, 4))


def _proxy_lag(status: Mapping[str, Any]) -> int:
    """How far the proxy's cursor trails the destination's in the leader's ``status`` (B45)."""
    peers = status.get("peers") or {}
    if DEST not in peers or PROXY not in peers:
        return 0
    return int(peers[DEST]["next_index"]) - int(peers[PROXY]["next_index"])


def test_lagging_proxy_makes_leader_go_direct(make_cluster: Any, workload: Any) -> None:
    """B45, lag rule: a proxy the leader hears from, but whose cursor trails the destination's by
    more than raft_proxy_failure_lag_ops (lowered at runtime on the leader to LAG_OPS), is not
    used: requests to the destination stay direct beyond the stale-proxy threshold, and go back
    through the proxy once it has caught up.

    The lag is built in the only order that can produce it: the proxy is isolated (stale, so the
    destination is fed directly and keeps up), then made to refuse every write batch
    (follower_fail_all_prepare: it answers CANNOT_PREPARE, so its last contact stays fresh but its
    cursor is frozen), then healed. Fed through a proxy lacking the ops, the destination could
    never get ahead of it."""
    cluster, leader, dest = _proxied_cluster(make_cluster)
    timing = cluster.timing
    threshold_s = timing.proxy_failure_threshold_s
    markers = Markers(cluster, "lagging-proxy")
    with workload(cluster, clients=LOAD_CLIENTS, rate_hz=LOAD_RATE_HZ):
        _warmed_up(cluster)
        with runtime_flags(cluster, {"raft_proxy_failure_lag_ops": LAG_OPS}, target=leader):
            try:
                with partition(cluster, isolate=PROXY, mode="refused"):
                    cluster.wait_until(lambda: peer_view(cluster, leader, dest).get("next_hop") == dest,
                                       what=f"{leader} to send to {dest} directly (stale proxy)",
                                       timeout_s=threshold_s + heartbeats(cluster, 2) + timing.rpc_timeout_s)
                    cluster.set_flag(PROXY, "follower_fail_all_prepare", True)
                    # More than LAG_OPS ops the proxy will not take, all reaching the destination.
                    markers.write(LAG_OPS + 1)
                    cluster.wait_until(lambda: _proxy_lag(cluster.status(leader)) > LAG_OPS,
                                       what=f"{dest} more than {LAG_OPS} ops ahead of {PROXY}",
                                       timeout_s=heartbeats(cluster, 4))
                # Healed: the proxy answers again, refusing the ops it lacks.
                cluster.wait_until(
                    lambda: peer_view(cluster, leader, PROXY).get("status") == "CANNOT_PREPARE",
                    what=f"{PROXY} to answer {leader} again (CANNOT_PREPARE)",
                    timeout_s=heartbeats(cluster, 4) + timing.rpc_timeout_s)
                contact_ages: list[float] = []

                def sample_until(end_t: float) -> bool:
                    contact_ages.append(float(peer_view(cluster, leader, PROXY)["last_contact_age_ms"]))
                    return cluster.history.now() >= end_t

                # In contact for longer than the stale threshold: only the lag keeps it direct.
                window_s = threshold_s + WINDOW_P * timing.heartbeat_s
                before = snap(cluster, leader)
                cluster.wait_until(lambda: sample_until(before.t_after + window_s),
                                   what=f"a {window_s:.2f} s window (lagging proxy)",
                                   timeout_s=window_s + 5.0, poll_s=timing.heartbeat_s / 2)
                window = Window(before, snap(cluster, leader))
            finally:
                cluster.set_flag(PROXY, "follower_fail_all_prepare", False)
            window.assert_same_leadership()
            d, entry, proxy_entry = window.deltas(dest), window.after.peer(dest), window.after.peer(PROXY)
            print(f"to {dest}: {d}\nentry: {entry}\nproxy entry: {proxy_entry}\n"
                  f"proxy contact ages (ms): max {max(contact_ages)} over {len(contact_ages)} samples")
            assert max(contact_ages) < 1000 * threshold_s, (
                f"{leader} lost contact with {PROXY} during the window, so the stale rule could "
                f"explain going direct: {contact_ages}")
            assert _proxy_lag(window.before.status) > LAG_OPS and _proxy_lag(window.after.status) > LAG_OPS, (
                f"{PROXY} was not more than {LAG_OPS} ops behind {dest} throughout: {entry} / {proxy_entry}")
            assert d["proxied_sends"] == 0 and entry["next_hop"] == dest, (
                f"requests to {dest} went through a proxy lagging by more than {LAG_OPS} ops (B45): {d}")
            assert d["requests_sent"] > 0 and d["requests_with_ops"] > 0, (
                f"{dest} was not fed directly during the window: {d}")
            # The proxy catches up (it is fed directly), the lag shrinks, the proxy is used again.
            proxied = peer_counter(cluster, leader, dest, "proxied_sends")
            cluster.wait_until(lambda: peer_counter(cluster, leader, dest, "proxied_sends") > proxied
                               and peer_view(cluster, leader, dest).get("next_hop") == PROXY,
                               what=f"{dest} proxied through {PROXY} again after it caught up",
                               timeout_s=heartbeats(cluster, 4) + 2 * timing.rpc_timeout_s)
        wait_ok_ops(cluster, what="acknowledged writes after the proxy caught up")
    markers.assert_all_durable()
