"""Election timing on the node's own event trace (nodes/events.py): B4, B5, B26, B41 as whole items.

Each test measures a window between two events the node stamped on its own clock (a lost round's
decision and the next start, a step-down and the next pre-election, becoming leader and each
Peer's first request), on the fake clock and fake RPCs of consensus_fixture, and pins it to the
kuduraft function that sets it (cited per test). The shorter state checks of the same items stay
in test_elections.py.
"""

from __future__ import annotations

import random
from pathlib import Path

import pytest
from consensus_fixture import Node, RpcCall, expire_fd, op, rearm_in_term, run_node, seeded, status_error

from nodes.log import OpId
from nodes.rpc_errors import RpcTimeout


def node_events(n: Node, *names: str) -> list[dict]:
    """The node's own trace (nodes/events.py), filtered by event name: node-clock timestamps."""
    return [e for e in n.c.events.read()["events"] if e["event"] in names]


@pytest.mark.parametrize("draw", ["seeded", "top", "bottom"])
def test_b26_every_back_off_interval_follows_the_exp_backoff_formula(tmp_path: Path, draw: str) -> None:
    """B26, whole item, timed on the node's clock: a node cut off from everyone (its vote RPCs fail
    after a seeded delay) keeps its term, and the gap between each lost pre-election's decision and
    the next pre-election's start is U[MET, min(MET x 1.5^(n+1), 20 s)] with n = elections lost
    *before* this one; the start of each round snoozes by the same formula with n = losses so far.

    kuduraft raft_consensus.cc: RaftConsensus::DoElectionCallback snoozes the failure detector by
    LeaderElectionExpBackoffDeltaUnlocked() *before* failed_elections_since_stable_leader_++;
    LeaderElectionExpBackoffDeltaUnlocked = TimeoutBackoffHelper(1.5^(failed + 1)), which draws
    uniformly between MinimumElectionTimeout and min(MET x factor,
    leader_failure_exp_backoff_max_delta_ms); StartElection snoozes by the same delta. ``top`` and
    ``bottom`` pin the draw to the window's ends so each interval must equal the formula exactly.

    Before, the B26 tests read ``fd_delay()`` (the timer's due time) after losses decided at the
    instant of the FD expiry; now every interval is measured between the node's own
    ``pre_election_decided`` and ``pre_election_started`` events, with time passing inside rounds."""
    met, cap, rounds = 1.5, 20.0, 12

    async def body(n: Node) -> None:
        if draw == "top":
            n.c.rng.uniform = lambda a, b: b  # type: ignore[method-assign]
        elif draw == "bottom":
            n.c.rng.uniform = lambda a, b: a  # type: ignore[method-assign]
        delays = random.Random(n.seed)  # how long each refused/lost vote RPC takes, < MET
        flushes = await rearm_in_term(n, 4)
        waited: list[float] = []
        for _ in range(rounds):
            await expire_fd(n)
            votes = n.vote_requests()
            assert len(votes) == 2 and all(v.body["is_pre_election"] for v in votes)
            d = round(delays.uniform(0.0, 1.4), 3)
            n.clock.advance(d)
            await n.settle()
            assert n.vote_requests() == votes  # nothing new while the round is open
            for v in votes:
                v.fail()
            await n.settle()
            waited.append(d)
        starts = node_events(n, "pre_election_started")
        decided = node_events(n, "pre_election_decided")
        assert len(starts) == rounds and len(decided) == rounds
        assert node_events(n, "election_started") == []
        assert all(e["term"] == 4 and e["ask_term"] == 5 for e in starts + decided)
        assert all(e["won"] is False and e["superseded"] is False for e in decided)
        assert n.c.term == 4 and n.meta.flush_count == flushes and n.c.failed_elections == rounds
        gaps = []
        for k in range(rounds):
            hi = min(met * 1.5 ** (k + 1), cap)
            # StartElection's snooze: k rounds lost so far.
            assert met - 1e-6 <= starts[k]["backoff_s"] <= hi + 1e-6, (k, starts[k])
            assert decided[k]["t"] - starts[k]["t"] == pytest.approx(waited[k], abs=1e-6)
            if k + 1 < rounds:
                gap = starts[k + 1]["t"] - decided[k]["t"]
                gaps.append(gap)
                # DoElectionCallback's snooze, drawn before this loss is counted: k, not k + 1.
                assert met - 1e-6 <= gap <= hi + 1e-6, (k, gap, hi)
                if draw == "top":
                    assert gap == pytest.approx(hi, abs=1e-6), (k, gap)
                if draw == "bottom":
                    assert gap == pytest.approx(met, abs=1e-6), (k, gap)
        print("gaps between a lost round and the next start:", [round(g, 3) for g in gaps])
        if draw == "seeded":  # the window really grows: late gaps beyond the first window's top
            assert max(gaps[5:]) > min(met * 1.5, cap)
    run_node(tmp_path, body, seed=seeded(26))


@pytest.mark.parametrize("hb_ms", [500, 200])
def test_b41_step_down_window_is_two_met_on_the_node_clock(tmp_path: Path, hb_ms: int) -> None:
    """B41, whole item: StepDown raises the term by exactly one (unflushed), and the former leader's
    first (pre-)election starts exactly 2 x MinimumElectionTimeout after the step-down on the node's
    own clock (3 s at the default 500 ms heartbeat; 1.2 s at 200 ms, so the window follows the
    flags rather than a constant), asking for term + 2.

    kuduraft raft_consensus.cc, RaftConsensus::StepDown: HandleTermAdvanceUnlocked(term + 1,
    SKIP_FLUSH_TO_DISK), then SnoozeFailureDetector(2 x MinimumElectionTimeout()).
    Before, the B41 test read the timer's due time at the default flags only; now the window is
    the gap between the node's ``stepped_down`` and ``pre_election_started`` events, stepped
    through in 10 ms increments so any earlier start would be recorded."""
    window = 2 * 3 * hb_ms / 1000.0

    async def body(n: Node) -> None:
        await n.win_election()
        term = n.c.term
        n.c.step_down()
        assert n.c.term == term + 1 and n.meta.load() == (term, "n1")
        t_down = n.clock.now()
        while n.clock.now() < t_down + window + 0.5:
            n.clock.advance(0.01)
            await n.settle()
        (down,) = node_events(n, "stepped_down")
        starts = [e for e in node_events(n, "pre_election_started", "election_started")
                  if e["seq"] > down["seq"]]
        assert down["t"] == pytest.approx(t_down) and down["term"] == term
        assert starts, "the former leader never started an election"
        first = starts[0]
        assert first["event"] == "pre_election_started"
        assert first["t"] - down["t"] == pytest.approx(window, abs=1e-6), (first, down)
        assert first["term"] == term + 1 and first["ask_term"] == term + 2
    run_node(tmp_path, body, flags={"raft_heartbeat_interval_ms": hb_ms})


def peer_requests(n: Node, hop: str, after_seq: int) -> list[dict]:
    return [e for e in n.c.events.read()["events"]
            if e.get("peer") == hop and e["event"] == "request" and e["seq"] > after_seq]


@pytest.mark.parametrize("seed", [51, 52, 53, 54, 55])
def test_b4_b5_first_requests_of_a_new_leader_on_its_event_trace(tmp_path: Path, seed: int) -> None:
    """B4 and B5, whole items, timed on the node's clock: a follower that held entries of an old
    leader wins; for every follower the first request of its new term is the first the new Peer
    sends, comes from the heartbeater 375-625 ms (P x [0.75, 1.25]) after ``became_leader``, has
    no ops and ``preceding_id`` = the new leader's last appended OpId (its NO_OP); nothing is sent
    to that follower before it.

    kuduraft raft_consensus.cc, BecomeLeaderUnlocked (RefreshConsensusQueueAndPeersUnlocked builds
    new Peers, then appends the NO_OP through the queue without signalling); consensus_peers.cc,
    Peer::Init starts the heartbeater (PeriodicTimer, jitter 0.25) and SendNextRequest's first
    request is a negotiation without ops (consensus_queue.cc, RequestForPeer with
    ``last_exchange_status == NEW``). Before, the test read the heartbeater's due time; now the
    window is the gap between the node's ``became_leader`` and each peer's first ``request`` event,
    with the clock stepped in 5 ms increments."""
    async def body(n: Node) -> None:
        assert status_error(await n.update(term=2, ops=[op(2, 1), op(2, 2), op(2, 3)], committed=2)) is None
        await n.win_election(first_requests=False)
        (won,) = node_events(n, "became_leader")
        assert won["term"] == 3 and n.c.log.last_opid == OpId(3, 4)
        t0 = won["t"]
        while n.clock.now() < t0 + 0.7:
            n.clock.advance(0.005)
            await n.settle()
        for hop in ("n2", "n3"):
            reqs = peer_requests(n, hop, won["seq"])
            assert reqs, f"no request to {hop} within 700 ms"
            first = reqs[0]
            assert first["first"] is True and first["term"] == 3 and first["req"] == 1
            assert first["trigger"] == "heartbeat" and first["ops"] == 0
            assert 0.375 - 1e-6 <= first["t"] - t0 <= 0.625 + 1e-6, (hop, first["t"] - t0)
            sent = n.transport.take(hop)
            assert sent.body["ops"] == [] and sent.body["preceding_id"] == [3, 4]
            assert sent.body["caller_term"] == 3
            assert len(reqs) == 1  # pending until answered (B1): nothing else went out
    run_node(tmp_path, body, seed=seeded(seed))


def test_b4_a_write_before_the_first_beat_sends_the_negotiation_at_once(tmp_path: Path) -> None:
    """B4's "unless a write ... arrives first", on the node's clock: a write 100 ms after
    ``became_leader`` makes each Peer's first request leave at that very instant (trigger
    ``signal``), still without ops, with ``preceding_id`` = the write's OpId (the last appended);
    the write itself follows only after the negotiation reply (kuduraft consensus_peers.cc,
    Peer::SignalRequest -> SendNextRequest; RaftConsensus::Replicate signals every peer)."""
    async def body(n: Node) -> None:
        await n.win_election(first_requests=False)
        (won,) = node_events(n, "became_leader")
        n.clock.advance(0.1)
        await n.settle()
        n.c.replicate({"op": "put", "key": "a", "value": "1"})
        await n.settle()
        for hop in ("n2", "n3"):
            (first,) = peer_requests(n, hop, won["seq"])
            assert first["t"] - won["t"] == pytest.approx(0.1, abs=1e-6)
            assert first["first"] is True and first["trigger"] == "signal" and first["ops"] == 0
            sent = n.transport.take(hop)
            assert sent.body["ops"] == [] and sent.body["preceding_id"] == [1, 2]
    run_node(tmp_path, body)


async def run_until(n: Node, t_end: float) -> None:
    """Advance the fake clock one due callback at a time, letting the node's tasks run after each,
    so every event the node records carries the exact instant its cause fired."""
    heap = n.clock._heap  # noqa: SLF001 (the fake clock's schedule; tests only)
    while True:
        due = [w for w, _, h in heap if not h.cancelled]
        if not due or min(due) > t_end:
            break
        n.clock.advance_to(min(due))
        await n.settle()
    n.clock.advance_to(t_end)
    await n.settle()


@pytest.mark.parametrize("draw", ["seeded", "top"])
def test_b26_black_holed_node_times_every_attempt_from_the_last_snooze(tmp_path: Path, draw: str) -> None:
    """B26 in the item's own scenario, a node partitioned alone behind a black hole: no vote reply
    ever comes, each vote RPC times out after the round's back-off (kuduraft raft_consensus.cc,
    StartElection passes the same LeaderElectionExpBackoffDeltaUnlocked delta to SnoozeFailureDetector
    and to LeaderElection as the RPC timeout), so the failure detector and the round's loss race.
    Over 200 s of node time the term never moves, and every pre-election starts exactly when the
    last snooze before it said: the previous start's recorded ``backoff_s`` after that start, or
    U[MET, min(MET x 1.5^(k+1), 20 s)] after a lost round's decision, k = rounds lost before it
    (DoElectionCallback snoozes before failed_elections_since_stable_leader_++). ``top`` pins each
    draw to the window's top, so those gaps must equal the formula."""
    met, cap = 1.5, 20.0

    async def body(n: Node) -> None:
        if draw == "top":
            n.c.rng.uniform = lambda a, b: b  # type: ignore[method-assign]

        def black_hole(call: RpcCall) -> None:
            def expire() -> None:
                if not call.answered:
                    call.fail(RpcTimeout("vote timed out (test black hole)"))
            n.clock.call_later(call.timeout_s, expire)
        n.rpc.auto = black_hole
        flushes = await rearm_in_term(n, 4)
        await run_until(n, n.clock.now() + 200.0)
        trace = node_events(n, "pre_election_started", "pre_election_decided", "election_started")
        starts = [e for e in trace if e["event"] == "pre_election_started"]
        assert len(starts) >= 10 and all(e["event"] != "election_started" for e in trace)
        assert all(e["term"] == 4 for e in trace) and n.c.term == 4 and n.meta.flush_count == flushes
        lost = 0
        checked = {"start": 0, "decided": 0}
        for i, e in enumerate(trace):
            if e["event"] == "pre_election_decided":
                assert e["won"] is False
                lost += 1
                continue
            k_at_start = lost
            assert met - 1e-6 <= e["backoff_s"] <= min(met * 1.5 ** (k_at_start + 1), cap) + 1e-6
            if e is starts[0]:
                continue
            prev = trace[i - 1]
            gap = e["t"] - prev["t"]
            if prev["event"] == "pre_election_started":
                assert gap == pytest.approx(prev["backoff_s"], abs=2e-6), (prev, e)
                checked["start"] += 1
            else:
                hi = min(met * 1.5 ** lost, cap)  # drawn with lost - 1 rounds counted
                assert met - 1e-6 <= gap <= hi + 1e-6, (prev, e, hi)
                if draw == "top":
                    assert gap == pytest.approx(hi, abs=1e-6), (prev, e)
                checked["decided"] += 1
        print(f"{len(starts)} pre-elections, {lost} lost; gaps checked after a start "
              f"{checked['start']}, after a decision {checked['decided']}")
        assert checked["decided"] >= 3
    run_node(tmp_path, body, seed=seeded(27))
