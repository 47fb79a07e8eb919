"""Peer and queue under failures (fake clock/transport): read errors, contact time, health, timeouts,
and the two leader crash fractions: spec items B10, B17-B22."""

from __future__ import annotations

import random
import statistics
from collections.abc import Callable
from typing import Any

import pytest
from fakes import (
    InjectedCrash,
    LeaderFixture,
    always,
    ok,
    remote_error,
    rpc_layer_error,
    server_error_reply,
    update_reply,
)

from nodes.peer import RpcOutcome
from nodes.queue import Health, PeerStatus, QueueError, RequestPlan

HB_MAX = 0.625
EXIT_STATUS = 85  # kuduraft's MAYBE_FAULT _exit status
EPS = 1e-9


def record_requests(fx: LeaderFixture) -> list[tuple[float, str, str | None, Health]]:
    """Wrap queue.request_for_peer: (time, uuid, error or None, health after) for every call."""
    calls: list[tuple[float, str, str | None, Health]] = []
    real: Callable[[str, bool, dict[str, Any]], RequestPlan] = fx.queue.request_for_peer

    def spy(uuid: str, read_ops: bool, request: dict[str, Any]) -> RequestPlan:
        try:
            plan = real(uuid, read_ops, request)
        except QueueError as e:
            calls.append((fx.clock.now(), uuid, str(e), fx.queue.peers[uuid].health))
            raise
        calls.append((fx.clock.now(), uuid, None, fx.queue.peers[uuid].health))
        return plan
    fx.queue.request_for_peer = spy  # type: ignore[method-assign]
    return calls


# ----- B10 -----

def test_b10_gcd_entries_fail_the_read_and_degrade_to_status_only() -> None:
    """B10. A RequestForPeer failure (e.g. needed WAL entries garbage-collected) increments the
    failure count without sending any RPC and marks the peer FAILED_UNRECOVERABLE; such a peer
    then gets one status-only RPC per heartbeat, each followed by another failed read."""
    fx = LeaderFixture(n_entries=5, committed=5)
    fx.caught_up("B")
    fx.caught_up("C")
    fx.append(15, signal=False)  # B does not hear of 6..20 before they are collected
    fx.log.gc_before(10)
    calls = record_requests(fx)
    peer, tracked = fx.peers["B"], fx.queue.peers["B"]
    n0 = len(fx.transport.to("B"))
    peer.signal_request(False)
    assert len(fx.transport.to("B")) == n0
    assert peer.failed_attempts == 1 and not peer.request_pending
    assert not tracked.wal_catchup_possible
    assert tracked.health is Health.FAILED_UNRECOVERABLE
    fx.clock.advance(5.0)
    rpcs = fx.transport.to("B")[n0:]
    assert 8 <= len(rpcs) <= 14
    assert all(s.ops == [] and s.body["preceding_id"] == [1, 20] for s in rpcs)
    b_calls = [c for c in calls if c[1] == "B"][1:]
    # Each heartbeat: one successful (status-only) build, the RPC, then one failed read.
    assert [c[2] is None for c in b_calls] == [True, False] * len(rpcs)
    for rpc, (t_ok, _, _, _), (t_fail, _, _, _) in zip(rpcs, b_calls[::2], b_calls[1::2], strict=True):
        assert rpc.at == t_ok == t_fail
    assert all(c[3] is Health.FAILED_UNRECOVERABLE for c in b_calls)
    assert peer.failed_attempts == 1


# ----- B17 -----

CONTACT_CASES: dict[str, tuple[RpcOutcome, bool]] = {
    "connect_refused": (rpc_layer_error("connection refused"), False),
    "timeout": (rpc_layer_error("timed out after 30s"), False),
    "rpc_level_failure": (remote_error("SERVICE_UNAVAILABLE", "too busy"), True),
    "server_error": (ok(server_error_reply("WRONG_SERVER_UUID", "wrong uuid")), True),
    "cannot_prepare": (ok(update_reply(1, (1, 3), (1, 3), 3, ("CANNOT_PREPARE", "no"))), True),
    "lmp_mismatch": (ok(update_reply(1, (1, 1), (1, 1), 1,
                                     ("PRECEDING_ENTRY_DIDNT_MATCH", "mismatch"))), True),
    "ok": (ok(update_reply(1, (1, 3), (1, 3), 3)), True),
}


@pytest.mark.parametrize("case", sorted(CONTACT_CASES))
def test_b17_only_server_replies_refresh_last_contact(case: str) -> None:
    """B17. Connection failures and RPC timeouts do not refresh a peer's last-contact time; any
    reply the server produced (including errors) does."""
    outcome, refreshes = CONTACT_CASES[case]
    fx = LeaderFixture(n_entries=3, committed=3)
    fx.caught_up("B")
    fx.responder("B", None)
    before = fx.queue.peers["B"].last_communication_time
    fx.clock.advance(10.0)  # the first heartbeat stays pending meanwhile
    [pending] = fx.transport.pending("B")
    pending.reply(outcome)
    after = fx.queue.peers["B"].last_communication_time
    assert after == (10.0 if refreshes else before)


# ----- B18 / B19 -----

def run_stopped_follower(fx: LeaderFixture, down_for_s: float) -> tuple[float, float]:
    """Follower B answers OK, is 'stopped' (connection refused) for ``down_for_s``, then returns.

    Returns (time of the first failed exchange, time of the first OK reply after the restart).
    """
    fx.caught_up("B")
    fx.caught_up("C")
    fx.clock.advance(2.0)
    assert fx.queue.peers["B"].health is Health.HEALTHY
    fx.responder("B", always(rpc_layer_error("connection refused")))
    n = len(fx.transport.to("B"))
    fx.clock.advance(down_for_s)
    t_fail = fx.transport.to("B")[n].at
    fx.responder("B", fx.followers["B"].responder)
    n = len(fx.transport.to("B"))
    fx.clock.advance(5.0)
    t_back = fx.transport.to("B")[n].at
    return t_fail, t_back


def health_changes(calls: list[tuple[float, str, str | None, Health]], uuid: str) -> list[tuple[float, Health]]:
    out: list[tuple[float, Health]] = []
    for t, u, _, h in calls:
        if u == uuid and (not out or out[-1][1] is not h):
            out.append((t, h))
    return out


def test_b18_health_healthy_unknown_failed_healthy() -> None:
    """B18. Leader-side health of a stopped follower turns from HEALTHY to UNKNOWN within one
    heartbeat of the first failed exchange, to FAILED once 300 s pass without contact, and back
    to HEALTHY within one heartbeat of the first OK reply."""
    fx = LeaderFixture(n_entries=3, committed=3)
    calls = record_requests(fx)
    t_fail, t_back = run_stopped_follower(fx, 400.0)
    changes = health_changes(calls, "B")
    assert changes[0][1] is Health.UNKNOWN  # NEW before the negotiation reply
    changes = changes[1:]
    assert [h for _, h in changes] == [Health.HEALTHY, Health.UNKNOWN, Health.FAILED, Health.HEALTHY]
    (_, _), (t_unknown, _), (t_failed, _), (t_healthy, _) = changes
    ok_before = [s.at for s in fx.transport.to("B") if s.at < t_fail]
    last_contact = ok_before[-1]
    assert t_fail < t_unknown <= t_fail + HB_MAX + EPS
    assert last_contact + 300.0 < t_failed <= last_contact + 300.0 + HB_MAX + EPS
    assert t_back < t_healthy <= t_back + HB_MAX + EPS


def test_b19_failed_follower_is_never_removed() -> None:
    """B19. With default flags no follower is ever removed automatically because of failed
    health."""
    fx = LeaderFixture(n_entries=3, committed=3)
    fx.caught_up("B")
    fx.responder("B", always(rpc_layer_error("connection refused")))
    fx.clock.advance(700.0)
    assert fx.queue.peers["B"].health is Health.FAILED
    assert "B" in fx.queue.peers and not fx.peers["B"].closed
    n = len(fx.transport.to("B"))
    fx.clock.advance(10.0)
    assert len(fx.transport.to("B")) - n >= 16  # still heartbeating it
    assert fx.queue.majority_size == 2


# ----- B20 -----

@pytest.mark.parametrize("timeout_ms", [30000, 2000])
def test_b20_black_holed_request_stays_pending_until_rpc_timeout(timeout_ms: int) -> None:
    """B20. A request lost in a black-holed network keeps the peer pending until
    consensus_rpc_timeout_ms (30 s) expires; no heartbeats reach that peer meanwhile."""
    flags = {} if timeout_ms == 30000 else {"consensus_rpc_timeout_ms": timeout_ms}
    fx = LeaderFixture(n_entries=2, committed=2, flags=flags)
    timeout_s = timeout_ms / 1000.0
    fx.transport.auto_timeout = True
    fx.caught_up("B")
    fx.caught_up("C")
    fx.responder("B", None)  # black hole
    fx.clock.advance(0.1)
    fx.append(1)
    lost = fx.transport.last("B")
    assert lost.timeout_s == timeout_s
    expires_at = lost.at + timeout_s
    while fx.clock.now() + 0.05 < expires_at - 0.01:  # writes and heartbeats keep coming
        fx.clock.advance(0.05)
        fx.append(1)
        assert fx.peers["B"].request_pending
    assert fx.transport.to("B")[-1] is lost
    fx.clock.advance_to(expires_at)
    assert fx.queue.peers["B"].status is PeerStatus.RPC_LAYER_ERROR
    assert fx.peers["B"].failed_attempts == 1
    fx.clock.advance(HB_MAX)
    nxt = fx.transport.to("B")[-1]
    assert nxt is not lost and nxt.ops == []
    assert expires_at < nxt.at <= expires_at + HB_MAX + EPS


# ----- B21 / B22 -----

CRASH_SEED = 424242


def sends_until_crash(seed: int, fraction: float) -> int:
    """Idle leader with one follower: number of UpdateConsensus attempts until the injected exit."""
    fx = LeaderFixture(voters=("A", "B"), n_entries=1, committed=1, seed=seed,
                       flags={"fault_crash_on_leader_request_fraction": fraction})
    for _ in range(2000):
        try:
            fx.peers["B"].signal_request(True) if not fx.transport.sent else fx.clock.advance(1.0)
        except InjectedCrash as crash:
            assert crash.code == EXIT_STATUS
            draws = fx.faults.draws["fault_crash_on_leader_request_fraction"]
            assert draws == len(fx.transport.sent) + 1  # the crashing send never went out
            return draws
    raise AssertionError("no crash")


def test_b21_crash_on_request_after_geometric_number_of_sends() -> None:
    """B21. With fault_crash_on_leader_request_fraction=f the leader exits with status 85 after a
    geometric number of sends (mean ~ 1/f), including heartbeats."""
    print(f"seed={CRASH_SEED}")
    master = random.Random(CRASH_SEED)
    f = 0.1
    counts = [sends_until_crash(master.randrange(1 << 30), f) for _ in range(1500)]
    mean = statistics.fmean(counts)
    # Geometric(0.1): mean 10, sd ~9.5, standard error over 1500 runs ~0.25.
    assert abs(mean - 1 / f) < 1.0, mean
    assert max(counts) > 20  # heartbeats (all sends after the first) are drawn too
    assert sum(1 for c in counts if c == 1) / len(counts) == pytest.approx(f, abs=0.03)


def test_b21_no_draw_for_signals_that_send_nothing() -> None:
    """B21 (spec 1.4 step 9). The crash point sits after the has-ops filter: a write signal that
    sends nothing draws nothing; every real send (heartbeats included) draws once."""
    fx = LeaderFixture(voters=("A", "B"), n_entries=1, committed=1,
                       flags={"fault_crash_on_leader_request_fraction": 0.0})
    fx.caught_up("B")
    draws = fx.faults.draws["fault_crash_on_leader_request_fraction"]
    for _ in range(50):
        fx.peers["B"].signal_request(False)
    assert fx.faults.draws["fault_crash_on_leader_request_fraction"] == draws
    fx.clock.advance(5.0)
    assert fx.faults.draws["fault_crash_on_leader_request_fraction"] == len(fx.transport.sent)


def replies_until_crash(seed: int, fraction: float) -> int:
    """Replies cycle OK / server error / timeout; number processed until the injected exit."""
    fx = LeaderFixture(voters=("A", "B"), n_entries=1, committed=1, seed=seed,
                       flags={"fault_crash_after_leader_request_fraction": fraction})
    follower = fx.followers["B"]
    kinds = [lambda s: follower.responder(s), lambda s: ok(server_error_reply()),
             lambda s: rpc_layer_error("timed out")]
    n = [0]

    def respond(sent: Any) -> RpcOutcome:
        n[0] += 1
        return kinds[n[0] % 3](sent)
    fx.responder("B", respond)
    fx.peers["B"].signal_request(True)
    for _ in range(5000):
        try:
            fx.clock.advance(0.5)
        except InjectedCrash as crash:
            assert crash.code == EXIT_STATUS
            return fx.faults.draws["fault_crash_after_leader_request_fraction"]
    raise AssertionError("no crash")


def test_b22_crash_after_request_after_geometric_number_of_replies() -> None:
    """B22. With fault_crash_after_leader_request_fraction=f the leader exits with status 85 after
    a geometric number of processed replies (mean ~ 1/f), including error replies and timeouts."""
    print(f"seed={CRASH_SEED}")
    master = random.Random(CRASH_SEED + 1)
    f = 0.1
    counts = [replies_until_crash(master.randrange(1 << 30), f) for _ in range(1500)]
    mean = statistics.fmean(counts)
    assert abs(mean - 1 / f) < 1.0, mean


@pytest.mark.parametrize("outcome", [rpc_layer_error("timed out"), ok(server_error_reply()),
                                     remote_error()], ids=["timeout", "server_error", "rpc_error"])
def test_b22_error_replies_draw_too(outcome: RpcOutcome) -> None:
    """B22. ... including error replies and timeouts (f = 1: the first error reply crashes)."""
    fx = LeaderFixture(voters=("A", "B"), n_entries=1, manual=["B"],
                       flags={"fault_crash_after_leader_request_fraction": 1.0})
    fx.peers["B"].signal_request(True)
    with pytest.raises(InjectedCrash):
        fx.transport.last("B").reply(outcome)


def test_b22_late_reply_to_closed_peer_draws_nothing() -> None:
    """B22 (spec 1.5 step 1). A reply reaching a closed peer is ignored: no crash draw, pending
    stays set."""
    fx = LeaderFixture(voters=("A", "B"), n_entries=1, manual=["B"],
                       flags={"fault_crash_after_leader_request_fraction": 1.0})
    peer = fx.peers["B"]
    peer.signal_request(True)
    peer.close()
    fx.transport.last("B").reply(ok(update_reply(1, (1, 1))))
    assert "fault_crash_after_leader_request_fraction" not in fx.faults.draws
    assert peer.request_pending and "B" not in fx.queue.peers
    assert len(fx.transport.sent) == 1


# ----- B39 (leader side) -----

def test_b39_leader_records_remote_error_for_a_rejecting_follower_once_per_heartbeat() -> None:
    """B39 leader side, timed on the leader's clock: a follower that refuses every Update with a
    server-level error (the reply kuduraft's service builds when UpdateReplica fails on
    follower_reject_update_consensus_requests) is marked REMOTE_ERROR after each exchange, and while
    writes arrive every 50 ms for 20 s it gets exactly one status-only request per heartbeat
    (gaps 375-625 ms between the Peer's own ``request`` events, every reply ``server_error``);
    the healthy follower keeps receiving every write. kuduraft consensus_peers.cc,
    Peer::ProcessResponse -> ProcessResponseError (failed_attempts_++; the warning itself is
    throttled, KLOG_EVERY_N_SECS(WARNING, 300)); SendNextRequest skips non-heartbeat signals
    while failed_attempts_ > 0. Before, B39 was tested on the follower only."""
    fx = LeaderFixture(n_entries=3, committed=3)
    fx.caught_up("B")
    fx.caught_up("C")
    t0 = fx.clock.now()
    fx.responder("B", always(ok(server_error_reply(
        "UNKNOWN_ERROR", "Illegal state: rejected Update (follower_reject_update_consensus_requests)"))))
    while fx.clock.now() < t0 + 20.0:
        fx.clock.advance(0.05)
        fx.append(1)
    events = [e for e in fx.peers["B"].events.read()["events"] if e["t"] > t0]
    reqs = [e for e in events if e["event"] == "request"]
    replies = [e for e in events if e["event"] == "reply"]
    assert replies and all(r["outcome"] == "server_error" for r in replies)
    assert fx.queue.peers["B"].status is PeerStatus.REMOTE_ERROR
    later = reqs[1:]  # the first write after the switch found no error yet
    assert all(e["trigger"] == "heartbeat" and e["request_kind"] == "status_only" for e in later)
    gaps = [b["t"] - a["t"] for a, b in zip(later, later[1:], strict=False)]
    assert gaps and all(0.375 - EPS <= g <= HB_MAX + EPS for g in gaps), gaps
    assert 20.0 / HB_MAX - 2 <= len(reqs) <= 20.0 / 0.375 + 1
    assert fx.peers["B"].failed_attempts == len(replies)
    assert fx.followers["C"].last == fx.log.last_opid
