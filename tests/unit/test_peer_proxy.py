"""Leader side of proxied requests (Peer + queue with a topology): spec items B44-B49."""

from __future__ import annotations

from typing import Any

import pytest
from fakes import (
    LeaderFixture,
    Responder,
    Sent,
    always,
    ok,
    remote_error,
    rpc_layer_error,
    server_error_reply,
)

from nodes.log import OpId
from nodes.peer import RpcOutcome
from nodes.queue import Health, PeerStatus

HB_MAX = 0.625


def proxy_for(fx: LeaderFixture, dest: str, degrade_first: int = 0) -> Responder:
    """Stand-in for the proxy node: rebuild stubs from the (shared) log, relay dest's answer.

    The first ``degrade_first`` proxied requests are forwarded as heartbeats (ops unavailable).
    """
    follower = fx.followers[dest]
    left = [degrade_first]

    def relay(sent: Sent) -> RpcOutcome:
        if sent.hop == dest:  # routed direct: no proxy involved
            return ok(follower.handle(sent.body))
        body: dict[str, Any] = dict(sent.body)
        assert body.get("proxy_dest_uuid") == sent.hop
        if left[0] > 0:
            left[0] -= 1
            body["ops"] = []
        else:
            body["ops"] = [fx.log.get(op["index"]).to_json() for op in sent.ops]
        body.pop("proxy_dest_uuid", None)
        return ok(follower.handle(body))
    return relay


def proxied(**kw: Any) -> LeaderFixture:
    """Leader A, B a direct follower, C fed by proxy B."""
    fx = LeaderFixture(topology={"C": "B"}, **kw)
    return fx


# ----- B44 -----

def test_b44_proxied_request_carries_stubs_and_hops_and_counts_for_dest() -> None:
    """B44. A proxied request carries PROXY_OP stubs and proxy_hops_remaining = 16; the
    destination receives full ops and the leader attributes the reply to the destination."""
    fx = proxied(n_entries=3, committed=3, manual=["C"])
    fx.caught_up("B")
    fx.responder("C", proxy_for(fx, "C"))
    b_before = fx.queue.peers["B"]
    b_snapshot = (b_before.last_received, b_before.next_index, b_before.last_communication_time)
    fx.clock.advance(0.1)
    fx.peers["C"].signal_request(True)
    fx.settle()
    with_ops = [s for s in fx.transport.to("C") if s.ops]
    assert with_ops, "C never got its ops"
    for s in fx.transport.to("C"):
        assert s.hop == "B" and s.body["proxy_dest_uuid"] == "B" and s.body["dest_uuid"] == "C"
        assert s.body["proxy_hops_remaining"] == 16
    for op in with_ops[0].ops:
        assert op["kind"] == "PROXY_OP" and set(op) <= {"kind", "term", "index", "timestamp"}
    # The destination got real ops; the leader moved C's cursor, not B's.
    assert fx.followers["C"].last == OpId(1, 3)
    assert fx.queue.peers["C"].last_received == OpId(1, 3)
    assert fx.queue.peers["C"].status is PeerStatus.OK
    b = fx.queue.peers["B"]
    assert (b.last_received, b.next_index, b.last_communication_time) == b_snapshot
    assert fx.peers["C"].counters.proxied_sends == len(fx.transport.to("C"))


def test_b44_hops_follow_the_flag() -> None:
    """B44 (spec 1.4 step 10). proxy_hops_remaining is raft_proxy_max_hops on proxied sends."""
    fx = proxied(n_entries=1, manual=["C"], flags={"raft_proxy_max_hops": 3})
    fx.peers["C"].signal_request(True)
    assert fx.transport.last("C").body["proxy_hops_remaining"] == 3


def test_b44_in_flight_proxied_request_stays_until_it_completes() -> None:
    """Spec 3.3. A request already in flight through a proxy stays in flight until it completes
    or times out, even if routing would now choose direct."""
    fx = proxied(n_entries=2, committed=2, manual=["C"])
    fx.caught_up("B")
    fx.peers["C"].signal_request(True)
    inflight = fx.transport.last("C")
    assert inflight.hop == "B"
    fx.responder("B", None)  # the proxy goes silent for more than 3 s
    fx.clock.advance(5.0)
    assert fx.transport.to("C") == [inflight]
    inflight.reply_body(fx.followers["C"].handle({**inflight.body, "ops": []}))
    fx.clock.advance(HB_MAX)
    direct = fx.transport.to("C")[1:]
    assert direct and all(s.hop == "C" and "proxy_dest_uuid" not in s.body for s in direct)


# ----- B45 (leader side, with Peers) -----

def test_b45_silent_proxy_switches_destination_to_direct_with_full_ops() -> None:
    """B45. If the leader has not heard from a proxy for more than 3 s ... new requests to the
    destination go direct (with full ops)."""
    fx = proxied(n_entries=2, committed=2, manual=["C"])
    fx.caught_up("B")
    fx.responder("C", proxy_for(fx, "C"))
    fx.peers["C"].signal_request(True)
    fx.settle()
    assert fx.transport.last("C").hop == "B"
    fx.responder("B", always(rpc_layer_error("connection refused")))
    fx.clock.advance(3.5)
    fx.append(1)
    last = fx.transport.last("C")
    assert last.hop == "C" and "proxy_dest_uuid" not in last.body
    assert last.ops[0]["kind"] == "WRITE"


# ----- B46 -----

def test_b46_degraded_proxy_heartbeat_makes_the_leader_retry_immediately() -> None:
    """B46. A proxy lacking the requested ops forwards a heartbeat instead ...; the leader then
    retries immediately."""
    fx = proxied(n_entries=2, committed=2, manual=["C"])
    fx.caught_up("B")
    fx.followers["C"].log = [OpId(1, 1), OpId(1, 2)]
    fx.responder("C", proxy_for(fx, "C"))
    fx.peers["C"].signal_request(True)
    fx.settle()
    fx.responder("C", proxy_for(fx, "C", degrade_first=1))
    fx.clock.advance(0.1)
    fx.append(1)
    fx.settle()
    at_t = [s for s in fx.transport.to("C") if s.at == pytest.approx(0.1)]
    assert [s.op_indexes for s in at_t][:2] == [[3], [3]]  # degraded, then the immediate retry
    assert fx.followers["C"].last == OpId(1, 3)
    assert fx.peers["C"].failed_attempts == 0


# ----- B47 -----

def test_b47_hops_exhausted_counts_as_failed_attempt_for_dest() -> None:
    """B47. A request arriving at a proxy with no hops left fails at the RPC level and counts as a
    failed attempt for the destination."""
    fx = proxied(n_entries=2, committed=2, manual=["C"])
    fx.caught_up("B")
    b_status = fx.queue.peers["B"].status
    fx.responder("C", always(remote_error("INCOMPLETE", "Incomplete: proxy hops exhausted")))
    fx.peers["C"].signal_request(True)
    fx.settle()
    assert fx.peers["C"].failed_attempts == 1
    assert fx.queue.peers["C"].status is PeerStatus.REMOTE_ERROR
    assert fx.queue.peers["B"].status is b_status
    n = len(fx.transport.to("C"))
    fx.append(1)  # write signals are now suppressed for C
    assert len(fx.transport.to("C")) == n


# ----- B48 -----

def test_b48_refused_destination_behind_live_proxy_never_fails() -> None:
    """B48. A destination that refuses connections behind a live proxy shows up at the leader as
    REMOTE_ERROR, and so never reaches FAILED health through the 300 s timeout."""
    fx = proxied(n_entries=2, committed=2, manual=["C"])
    fx.caught_up("B")
    fx.responder("C", always(ok(server_error_reply(
        "UNKNOWN_ERROR", "Error proxying request to C: connection refused", uuid="B"))))
    fx.peers["C"].signal_request(True)
    fx.clock.advance(400.0)
    c = fx.queue.peers["C"]
    assert c.status is PeerStatus.REMOTE_ERROR
    assert c.health is Health.UNKNOWN
    assert fx.clock.now() - c.last_communication_time <= HB_MAX
    assert all(s.hop == "B" for s in fx.transport.to("C"))


def test_b48_black_holed_destination_times_out_and_fails() -> None:
    """B48. ... (a black-holed destination instead ends in a leader-side timeout,
    RPC_LAYER_ERROR), and so reaches FAILED after 300 s."""
    fx = proxied(n_entries=2, committed=2, manual=["C"])
    fx.transport.auto_timeout = True
    fx.caught_up("B")
    fx.peers["C"].signal_request(True)  # the proxy never answers for C
    fx.clock.advance(30.0)
    c = fx.queue.peers["C"]
    assert c.status is PeerStatus.RPC_LAYER_ERROR
    fx.clock.advance(330.0)
    assert c.health is Health.FAILED
    assert len(fx.transport.to("C")) <= 13  # one 30 s timeout after another


# ----- B49 -----

def test_b49_wrong_server_uuid_counts_as_remote_error() -> None:
    """B49. A request addressed to the wrong node (dest or proxy uuid) gets WRONG_SERVER_UUID,
    counted as REMOTE_ERROR."""
    fx = LeaderFixture(n_entries=2, committed=2, manual=["B", "C"])
    fx.responder("B", always(ok(server_error_reply("WRONG_SERVER_UUID", "dest_uuid 'B' is not me"))))
    fx.peers["B"].signal_request(True)
    fx.settle()
    assert fx.queue.peers["B"].status is PeerStatus.REMOTE_ERROR
    assert fx.peers["B"].failed_attempts == 1
