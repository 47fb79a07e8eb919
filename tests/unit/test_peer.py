"""Peer (nodes/peer.py) request loop on a fake clock and transport: spec items B1-B9."""

from __future__ import annotations

import logging

import pytest
from fakes import (
    FakeFollower,
    LeaderFixture,
    Sent,
    always,
    ok,
    remote_error,
    rpc_layer_error,
    script,
    server_error_reply,
    update_reply,
)

from nodes.log import OpId
from nodes.peer import RpcOutcome
from nodes.queue import PeerStatus

HB_MIN, HB_MAX = 0.375, 0.625  # heartbeat window at the default P = 500 ms
EPS = 1e-9


def step(fx: LeaderFixture, duration_s: float, dt_s: float = 0.01) -> None:
    end = fx.clock.now() + duration_s
    while fx.clock.now() < end - EPS:
        fx.clock.advance(min(dt_s, end - fx.clock.now()))


def gaps(times: list[float]) -> list[float]:
    return [b - a for a, b in zip(times, times[1:], strict=False)]


def in_hb_window(g: float) -> bool:
    return HB_MIN - EPS <= g <= HB_MAX + EPS


# ----- B1 -----

def test_b1_one_request_in_flight_signals_dropped() -> None:
    """B1. At most one UpdateConsensus from a leader to a given peer is in flight at any moment;
    signals arriving meanwhile produce no extra RPC."""
    fx = LeaderFixture(n_entries=3, manual=["B"])
    peer, follower = fx.peers["B"], fx.followers["B"]
    peer.signal_request(True)
    assert len(fx.transport.to("B")) == 1
    for _ in range(5):
        fx.append(1)  # write signals
        assert peer.signal_request(True)  # forced signals too
    step(fx, 3.0)  # ~6 heartbeats fire while the request is pending
    assert len(fx.transport.to("B")) == 1
    assert peer.request_pending
    assert peer.counters.signals_dropped_pending >= 10
    # Dropped, not remembered: the reply (LMP mismatch) triggers exactly one follow-up.
    fx.transport.last("B").reply_body(follower.handle(fx.transport.last("B").body))
    assert len(fx.transport.to("B")) == 2
    assert fx.transport.max_in_flight["B"] == 1


def test_b1_never_two_in_flight_under_load() -> None:
    """B1. At most one UpdateConsensus from a leader to a given peer is in flight at any moment
    (writes every 5 ms, replies after 30 ms, heartbeats running)."""
    fx = LeaderFixture(n_entries=1)
    fx.transport.latency_s = 0.03
    for _ in range(400):
        fx.clock.advance(0.005)
        fx.append(1)
        assert max(fx.transport.max_in_flight.values()) == 1
    step(fx, 1.0)
    assert len(fx.transport.to("B")) > 20
    assert fx.transport.max_in_flight == {"B": 1, "C": 1}
    assert fx.followers["B"].last == fx.log.last_opid


# ----- B2 -----

@pytest.mark.parametrize("seed", [1, 2, 3])
def test_b2_idle_leader_heartbeats_every_375_to_625_ms(seed: int) -> None:
    """B2. An idle leader sends each healthy follower one status-only request every 375-625 ms,
    i.e. 3-6 requests in any 4*P (2 s) window."""
    print(f"seed={seed}")
    fx = LeaderFixture(n_entries=5, committed=5, seed=seed)
    fx.caught_up("B")
    fx.caught_up("C")
    n0 = len(fx.transport.to("B"))
    step(fx, 30.0)
    sends = fx.transport.to("B")[n0:]
    times = [s.at for s in sends]
    assert len(times) >= 45
    assert all(s.ops == [] and s.body["committed_index"] == 5 for s in sends)
    assert all(in_hb_window(g) for g in gaps(times)), gaps(times)
    t = 0.0
    while t + 2.0 <= 30.0:
        count = sum(1 for x in times if t <= x < t + 2.0)
        assert 3 <= count <= 6, (t, count)
        t += 0.05


# ----- B3 -----

def test_b3_steady_writes_push_heartbeats_back() -> None:
    """B3. While a peer receives data or commit-carrying requests, its heartbeat timer is pushed
    back each time, so heartbeat-only sends to it drop to zero under steady writes."""
    fx = LeaderFixture(n_entries=1, committed=1)
    fx.caught_up("B")
    fx.caught_up("C")
    n0 = len(fx.transport.to("B"))
    write_times = []
    for _ in range(100):  # one write every 300 ms for 30 s (inside the 375 ms minimum period)
        fx.clock.advance(0.3)
        write_times.append(fx.clock.now())
        fx.append(1)
    sends = fx.transport.to("B")[n0:]
    assert len(sends) >= 100
    stray = [s.at for s in sends if not any(abs(s.at - w) < EPS for w in write_times)]
    assert stray == [], f"heartbeat-driven sends at {stray[:5]}"
    assert fx.peers["B"].counters.heartbeat_sends == 0
    assert fx.followers["B"].last == fx.log.last_opid


# ----- B4 -----

@pytest.mark.parametrize("seed", range(1, 21))
def test_b4_first_request_is_negotiation_after_375_to_625_ms(seed: int) -> None:
    """B4. A freshly created peer's first request has no ops and preceding_id = leader's last
    appended OpId, and is sent 375-625 ms after creation unless a write or commit signal
    arrives first."""
    print(f"seed={seed}")
    fx = LeaderFixture(n_entries=10, term=2, committed=10, seed=seed, manual=["B", "C"])
    step(fx, 0.7, dt_s=0.001)
    first = fx.transport.to("B")[0]
    assert HB_MIN - EPS <= first.at <= HB_MAX + EPS
    assert first.ops == []
    assert first.body["preceding_id"] == [2, 10]
    assert first.body["caller_term"] == 2 and first.body["dest_uuid"] == "B"


def test_b4_write_signal_sends_first_request_at_once_without_ops() -> None:
    """B4. A freshly created peer's first request has no ops and preceding_id = leader's last
    appended OpId, and is sent ... unless a write or commit signal arrives first (then at once)."""
    fx = LeaderFixture(n_entries=0, committed=0, manual=["B", "C"])
    fx.clock.advance(0.1)
    fx.append(3)  # Replicate(): SignalRequest(false) on every peer
    sends = fx.transport.to("B")
    assert len(sends) == 1 and sends[0].at == pytest.approx(0.1)
    assert sends[0].ops == []
    assert sends[0].body["preceding_id"] == [1, 3]


def test_b4_first_request_mark_is_consumed_even_if_request_for_peer_fails() -> None:
    """B4 (spec 1.4 step 2). The first-request mark is consumed even if RequestForPeer fails."""
    fx = LeaderFixture(n_entries=2, manual=["B", "C"])
    peer = fx.peers["B"]
    fx.queue.leader_mode = False
    peer.signal_request(False)
    assert peer.has_sent_first_request and peer.failed_attempts == 1
    assert fx.transport.sent == []


def peer_requests(fx: LeaderFixture, uuid: str) -> list[dict]:
    """The Peer's own ``request`` events (nodes/events.py), stamped on the leader's clock."""
    return [e for e in fx.peers[uuid].events.read()["events"]
            if e.get("peer") == uuid and e["event"] == "request"]


def test_b4_first_request_window_is_measured_from_peer_creation() -> None:
    """B4, whole window: a Peer created 300 ms into the leader's life sends its first request from
    the heartbeater 375-625 ms after *its creation* (not after t = 0), with no ops, and nothing
    before it; over 40 seeds the offsets spread across the window (a jittered period, not a
    constant). kuduraft consensus_peers.cc, Peer::Init starts the heartbeater, a PeriodicTimer
    with jitter 0.25 (rpc/periodic.cc: first run at P x [0.75, 1.25]). Before, the test created
    the Peer at t = 0, so creation time and absolute time could not be told apart, and read the
    transport's send time rather than the Peer's own event."""
    offsets = []
    for seed in range(1, 41):
        fx = LeaderFixture(n_entries=4, term=2, committed=4, seed=seed, peers=[])
        fx.clock.advance(0.3)
        created = fx.clock.now()
        fx.add_peer("B", manual=True)
        step(fx, 0.7, dt_s=0.005)
        reqs = peer_requests(fx, "B")
        assert len(reqs) == 1, (seed, reqs)  # the negotiation stays pending (B1)
        first = reqs[0]
        assert first["first"] is True and first["trigger"] == "heartbeat" and first["ops"] == 0
        assert fx.transport.to("B")[0].body["preceding_id"] == [2, 4]
        offsets.append(first["t"] - created)
    print(f"first-request offsets after creation: min {min(offsets):.3f} max {max(offsets):.3f}")
    assert all(HB_MIN - EPS <= o <= HB_MAX + EPS for o in offsets), offsets
    assert min(offsets) < 0.42 and max(offsets) > 0.58, offsets


def test_b4_commit_signal_sends_first_request_at_once_without_ops() -> None:
    """B4's "unless a ... commit signal arrives first": in a 5-voter config, B and C ack the
    leader's entries 50 ms after the Peers are created; the commit advance signals every Peer
    (kuduraft raft_consensus.cc, NotifyCommitIndex -> PeerManager::SignalRequest(false)) and the
    fresh Peers of D and E send their first request at that instant: trigger ``signal``, no ops,
    preceding_id = the leader's last appended OpId, long before their first heartbeat."""
    fx = LeaderFixture(voters=("A", "B", "C", "D", "E"), n_entries=3, term=2, committed=0,
                       manual=["D", "E"])
    fx.clock.advance(0.05)
    fx.caught_up("B")
    fx.caught_up("C")
    assert fx.commits == [3]  # caught_up settled the clock turn: the notification has run
    for uuid in ("D", "E"):
        (first,) = peer_requests(fx, uuid)
        assert first["t"] == pytest.approx(0.05) and first["trigger"] == "signal"
        assert first["first"] is True and first["ops"] == 0
        sent = fx.transport.to(uuid)[0]
        assert sent.ops == [] and sent.body["preceding_id"] == [2, 3]


# ----- B5 -----

def test_b5_new_leader_first_request_has_no_ops() -> None:
    """B5. After a new leader is elected, the first request each follower receives from it
    carries no ops, because all per-peer state is rebuilt."""
    fx = LeaderFixture(n_entries=5, committed=5)
    fx.caught_up("B")
    fx.append(2)
    assert fx.followers["B"].last == OpId(1, 7)
    fx.rebuild_peers(term=2)  # re-entry into leader mode: new Peers, queue reset
    noop = fx.append(1)[0]  # the new leader's NO_OP, signalled to every peer
    first = fx.transport.to("B")
    first_new = [s for s in first if s.body["caller_term"] == 2][0]
    assert first_new.ops == []
    assert first_new.body["preceding_id"] == [2, noop.index]
    # The follower answers LMP mismatch and then gets the NO_OP right away.
    fx.settle()
    later = [s for s in fx.transport.to("B") if s.body["caller_term"] == 2]
    assert later[1].op_indexes == [noop.index]
    assert later[1].at == first_new.at
    assert fx.followers["B"].last == OpId(2, noop.index)


def test_b5_every_follower_gets_a_no_op_first_request_whatever_it_held() -> None:
    """B5 for every follower: B is caught up and C far behind with an error on its last exchange
    when the leader is re-elected; for both, the first request of the new term (the first ``request``
    event of the rebuilt Peer, ``first`` set) carries no ops although a write is signalled at once,
    and the old Peer's failure count does not carry over (kuduraft raft_consensus.cc,
    BecomeLeaderUnlocked -> RefreshConsensusQueueAndPeersUnlocked closes the PeerManager's Peers and
    builds new ones; consensus_queue.cc, SetLeaderMode re-tracks every peer as NEW). Before, only
    one caught-up follower was checked."""
    fx = LeaderFixture(n_entries=5, committed=5, manual=["C"])
    fx.caught_up("B")
    fx.transport.responders["C"] = always(remote_error("SERVICE_UNAVAILABLE", "busy"))
    fx.peers["C"].signal_request(True)
    fx.settle()
    assert fx.peers["C"].failed_attempts == 1
    fx.append(3)
    old = {u: fx.peers[u] for u in ("B", "C")}
    fx.rebuild_peers(term=2)
    noop = fx.append(1)[0]
    for uuid in ("B", "C"):
        peer = fx.peers[uuid]
        assert peer is not old[uuid] and peer.failed_attempts == 0
        reqs = [e for e in peer_requests(fx, uuid) if e["term"] == 2]
        assert reqs and reqs[0]["first"] is True and reqs[0]["ops"] == 0, reqs[:1]
        assert reqs[0]["trigger"] == "signal"
        sent = [s for s in fx.transport.to(uuid) if s.body["caller_term"] == 2][0]
        assert sent.ops == [] and sent.body["preceding_id"] == [2, noop.index]


# ----- B6 -----

FAILURES: dict[str, RpcOutcome] = {
    "server_error": ok(server_error_reply("UNKNOWN_ERROR", "IllegalState: rejecting updates")),
    "remote_rpc_error": remote_error("SERVICE_UNAVAILABLE", "server too busy"),
    "rpc_layer_error": rpc_layer_error("connection refused"),
    "cannot_prepare": ok(update_reply(1, (1, 1), (1, 1), 1, ("CANNOT_PREPARE", "Could not prepare"))),
}


@pytest.mark.parametrize("kind", sorted(FAILURES))
def test_b6_after_error_only_heartbeats_send(kind: str) -> None:
    """B6. After any counted error from a peer, write-driven signals cause no RPCs to it; the next
    RPC comes from the heartbeat, so an erroring peer receives ~1 RPC per 375-625 ms regardless
    of write rate."""
    fx = LeaderFixture(n_entries=1, committed=1)
    fx.caught_up("B")
    fx.caught_up("C")
    peer = fx.peers["B"]
    fx.responder("B", always(FAILURES[kind]))
    fx.clock.advance(0.1)
    fx.append(1)
    fx.settle()
    assert peer.failed_attempts == 1
    n0 = len(fx.transport.to("B")) - 1
    for _ in range(500):  # a write every 10 ms for 5 s
        fx.clock.advance(0.01)
        fx.append(1)
    times = [s.at for s in fx.transport.to("B")[n0:]]
    assert 8 <= len(times) <= 15, times
    assert all(in_hb_window(g) for g in gaps(times)), gaps(times)
    assert peer.counters.signals_suppressed_failed >= 400
    # The healthy follower kept getting every write meanwhile.
    assert fx.followers["C"].last == fx.log.last_opid


# ----- B7 -----

def test_b7_first_rpc_after_error_is_status_only() -> None:
    """B7. The first RPC after a counted error has zero ops (read_ops disabled) even when the
    follower is far behind."""
    fx = LeaderFixture(n_entries=50, committed=0, manual=["C"])
    follower = fx.followers["B"]
    follower.log = [OpId(1, i) for i in range(1, 11)]
    failing = ok(server_error_reply())
    fx.responder("B", script(follower.responder, then=always(failing)))
    fx.peers["B"].signal_request(True)
    fx.settle()
    negotiation, batch = fx.transport.to("B")
    assert negotiation.ops == [] and batch.op_indexes[0] == 11
    assert fx.peers["B"].failed_attempts == 1
    assert fx.queue.peers["B"].next_index == 11
    step(fx, HB_MAX + 0.01)
    retry = fx.transport.to("B")[2]
    assert HB_MIN - EPS <= retry.at - batch.at <= HB_MAX + EPS
    assert retry.ops == []
    assert retry.body["preceding_id"] == [1, 50]


# ----- B8 -----

def test_b8_lmp_mismatch_resets_failures_and_resends_at_once() -> None:
    """B8. A reply with an LMP mismatch resets the failure count; an LMP mismatch is followed
    immediately (no heartbeat delay) by another request."""
    fx = LeaderFixture(n_entries=30, manual=["C"])
    follower = fx.followers["B"]
    follower.log = [OpId(1, i) for i in range(1, 11)]
    fx.responder("B", always(ok(server_error_reply())))
    fx.peers["B"].signal_request(True)
    fx.settle()
    assert fx.peers["B"].failed_attempts == 1
    fx.responder("B", follower.responder)  # the follower is back, but lags
    step(fx, HB_MAX + 0.01)
    hb, resend = fx.transport.to("B")[1:3]
    assert hb.ops == [] and hb.body["preceding_id"] == [1, 30]  # degraded -> LMP mismatch
    assert resend.at == hb.at
    assert resend.op_indexes[0] == 11 and resend.body["preceding_id"] == [1, 10]
    assert fx.peers["B"].failed_attempts == 0
    assert fx.queue.peers["B"].status is PeerStatus.OK


def test_b8_invalid_term_resets_failures_without_resend() -> None:
    """B8. A reply with INVALID_TERM resets the failure count (and the leader learns the higher
    term); no immediate request follows."""
    fx = LeaderFixture(n_entries=3, term=3, manual=["C"])
    fx.responder("B", script(always(rpc_layer_error()),
                             then=always(ok(update_reply(7, (3, 3), (0, 0), 0,
                                                         ("INVALID_TERM", "term 7 > 3"))))))
    fx.peers["B"].signal_request(True)
    fx.settle()
    assert fx.peers["B"].failed_attempts == 1
    step(fx, HB_MAX + 0.01)
    assert len(fx.transport.to("B")) == 2
    assert fx.peers["B"].failed_attempts == 0
    assert fx.queue.peers["B"].status is PeerStatus.INVALID_TERM
    assert fx.higher_terms == [7]
    fx.settle()
    assert len(fx.transport.to("B")) == 2


# ----- B9 -----

ROTATE = "IllegalState: Previous Rotate Event with file binlog.000042 was not yet committed"


def test_b9_rotate_event_cannot_prepare_is_not_a_failure(caplog: pytest.LogCaptureFixture) -> None:
    """B9. A CANNOT_PREPARE reply whose message contains "Previous Rotate Event with" leaves the
    failure count unchanged and produces no warning, and the next write is shipped immediately
    with ops."""
    fx = LeaderFixture(n_entries=2, committed=2, notify_commits=False)
    fx.caught_up("B")
    fx.caught_up("C")
    follower = fx.followers["B"]

    def rotate(sent: Sent) -> RpcOutcome:
        return ok(update_reply(1, follower.last, follower.last, follower.committed,
                               ("CANNOT_PREPARE", ROTATE)))
    fx.responder("B", script(rotate, then=follower.responder))
    caplog.set_level(logging.WARNING)
    fx.clock.advance(0.05)
    fx.append(1)
    fx.settle()
    assert fx.queue.peers["B"].status is PeerStatus.CANNOT_PREPARE
    assert fx.peers["B"].failed_attempts == 0
    assert [r for r in caplog.records if r.levelno >= logging.WARNING] == []
    fx.clock.advance(0.01)
    fx.append(1)
    resend = fx.transport.last("B")
    assert resend.at == pytest.approx(0.06)
    assert resend.op_indexes == [3, 4]
    fx.settle()
    assert follower.last == OpId(1, 4)


def test_b9_other_cannot_prepare_counts_and_warns(caplog: pytest.LogCaptureFixture) -> None:
    """B9 (contrast, spec 1.7). A CANNOT_PREPARE without the rotate text counts as a failure and
    is logged; the next write is then not shipped."""
    fx = LeaderFixture(n_entries=2, committed=2)
    fx.caught_up("B")
    fx.responder("B", always(ok(update_reply(1, (1, 2), (1, 2), 2,
                                             ("CANNOT_PREPARE", "Could not prepare a single op")))))
    caplog.set_level(logging.WARNING)
    fx.append(1)
    fx.settle()
    assert fx.peers["B"].failed_attempts == 1
    assert any("B" in r.getMessage() for r in caplog.records if r.levelno == logging.WARNING)
    n = len(fx.transport.to("B"))
    fx.append(1)
    assert len(fx.transport.to("B")) == n


def test_b9_error_warning_is_throttled(caplog: pytest.LogCaptureFixture) -> None:
    """Spec 1.7. Counted errors are logged at most once per 300 s."""
    fx = LeaderFixture(n_entries=1, manual=["C"])
    fx.responder("B", always(rpc_layer_error()))
    caplog.set_level(logging.WARNING)
    fx.peers["B"].signal_request(True)
    step(fx, 60.0, dt_s=0.1)
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert fx.peers["B"].failed_attempts > 90
    assert len(warnings) == 1


def test_follower_helper_sanity() -> None:
    """The FakeFollower answers LMP mismatch for an unknown preceding op (fixture self-check)."""
    f = FakeFollower("B")
    body = {"caller_term": 1, "preceding_id": [1, 5], "ops": [], "committed_index": 0}
    assert f.handle(body)["status"]["error"]["code"] == "PRECEDING_ENTRY_DIDNT_MATCH"
