"""Elections (nodes/election.py): failure detector expiry, pre-elections, back-off, winning, step-down.

Spec §4.2, §4.3, §4.5; B25-B27, B35, B41.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
from consensus_fixture import (
    SINGLE,
    Node,
    RpcCall,
    follower_reply,
    op,
    run_node,
    seeded,
    status_error,
)

from nodes.api import NodeApi
from nodes.consensus import NotLeader, Role
from nodes.log import OpId
from nodes.rpc_errors import RpcTimeout


def backoff_bound(failures: int, met: float = 1.5, cap: float = 20.0) -> float:
    """Upper end of the election back-off window after ``failures`` failed elections."""
    return min(met * 1.5 ** (failures + 1), cap)


def deny(call: RpcCall, term: int, code: str = "ALREADY_VOTED") -> dict:
    return {"responder_uuid": call.uuid, "responder_term": term, "vote_granted": False,
            "error": {"code": code, "message": "test"}}


def grant(call: RpcCall) -> dict:
    return {"responder_uuid": call.uuid, "responder_term": call.body["candidate_term"], "vote_granted": True}


async def expire_fd(n: Node) -> None:
    n.clock.advance_to(n.c.fd.due_at or 0.0)
    await n.settle()


@pytest.mark.parametrize("seed", [21, 22, 23])
def test_b25_silent_leader_leads_to_pre_election_without_term_change(tmp_path: Path, seed: int) -> None:
    """B25: 1.5-2.25 s after the last accepted update the follower starts a pre-election for term + 1,
    keeping its own term and vote (no metadata flush)."""
    async def body(n: Node) -> None:
        assert status_error(await n.update(term=3, ops=[op(3, 1)])) is None
        t0, flushes = n.clock.now(), n.meta.flush_count
        n.clock.advance_to(t0 + 1.4999)
        await n.settle()
        assert n.rpc.calls == []
        await expire_fd(n)
        assert 1.5 <= n.clock.now() - t0 <= 2.25
        votes = n.vote_requests()
        assert sorted(v.uuid for v in votes) == ["n2", "n3"]
        for v in votes:
            assert v.body["is_pre_election"] is True and v.body["candidate_term"] == 4
            assert v.body["candidate_uuid"] == "n1" and v.body["dest_uuid"] == v.uuid
            assert v.body["candidate_status"]["last_received"] == [3, 1]
            assert v.body["ignore_live_leader"] is False
            assert 1.5 <= v.timeout_s <= backoff_bound(0)
        assert n.c.term == 3 and n.c.voted_for is None and n.meta.flush_count == flushes
        assert n.c.counters.pre_elections_started == 1 and n.c.counters.elections_started == 0
    run_node(tmp_path, body, seed=seeded(seed))


def test_won_pre_election_starts_real_election_with_one_flush(tmp_path: Path) -> None:
    """§4.3: a won pre-election starts the real election at once: term + 1 and self-vote in one flush."""
    async def body(n: Node) -> None:
        assert status_error(await n.update(term=1)) is None
        await expire_fd(n)
        flushes = n.meta.flush_count
        pre = n.vote_requests()
        pre[0].reply(grant(pre[0]))
        await n.settle()
        assert n.c.term == 2 and n.c.voted_for == "n1" and n.c.role is Role.CANDIDATE
        assert n.meta.flush_count == flushes + 1 and n.meta.load() == (2, "n1")
        real = [v for v in n.vote_requests() if not v.body["is_pre_election"]]
        assert sorted(v.uuid for v in real) == ["n2", "n3"]
        assert all(v.body["candidate_term"] == 2 for v in real)
        pre[1].reply(grant(pre[1]))  # a late pre-vote for a decided round changes nothing
        real[0].reply(grant(real[0]))
        await n.settle()
        assert n.c.role is Role.LEADER and n.c.term == 2 and n.meta.flush_count == flushes + 1
    run_node(tmp_path, body)


@pytest.mark.parametrize("exact_upper", [True, False])
def test_b26_isolated_node_keeps_term_and_backs_off_geometrically(tmp_path: Path, exact_upper: bool) -> None:
    """B26: pre-elections of a node cut off from everyone fail, its term never moves, and each retry waits
    U[MET, min(MET x 1.5^(n+1), 20 s)] with n = failures so far."""
    async def body(n: Node) -> None:
        if exact_upper:  # make every draw the top of its window, so the bound itself is observed
            n.c.rng.uniform = lambda a, b: b  # type: ignore[method-assign]
        n.c.fd.stop()
        n.c.term = 4
        n.c.persist()
        flushes = n.meta.flush_count
        n.c.start_failure_detector()
        for k in range(9):
            await expire_fd(n)
            votes = n.vote_requests()
            assert len(votes) == 2 and all(v.body["is_pre_election"] for v in votes)
            assert all(v.timeout_s <= backoff_bound(k) + 1e-9 for v in votes)
            for v in votes:
                v.fail()
            await n.settle()
            assert n.c.failed_elections == k + 1
            assert n.c.term == 4 and n.meta.flush_count == flushes
            if exact_upper:
                assert n.fd_delay() == pytest.approx(backoff_bound(k))
            else:
                assert 1.5 <= n.fd_delay() <= backoff_bound(k) + 1e-9
        assert backoff_bound(8) == 20.0  # the cap was reached
        assert n.c.counters.pre_elections_started == 9 and n.c.counters.elections_started == 0
        # An accepted update from a live leader resets the failure count.
        assert status_error(await n.update(term=4)) is None
        assert n.c.failed_elections == 0
    run_node(tmp_path, body, seed=seeded(26))


def test_b27_without_pre_elections_every_attempt_raises_term(tmp_path: Path) -> None:
    """B27: with raft_enable_pre_election=false each FD expiry runs a real election: term + 1 and a flush."""
    async def body(n: Node) -> None:
        for attempt in range(1, 5):
            flushes = n.meta.flush_count
            await expire_fd(n)
            assert n.c.term == attempt and n.c.voted_for == "n1"
            assert n.meta.flush_count == flushes + 1
            votes = n.vote_requests()
            assert all(not v.body["is_pre_election"] and v.body["candidate_term"] == attempt for v in votes)
            for v in votes:
                v.reply(deny(v, attempt))
            await n.settle()
            assert n.c.role is Role.FOLLOWER and n.c.failed_elections == attempt
        assert n.c.counters.elections_started == 4 and n.c.counters.pre_elections_started == 0
    run_node(tmp_path, body, flags={"raft_enable_pre_election": False})


def test_b27_b28_leader_steps_down_on_invalid_term_reply(tmp_path: Path) -> None:
    """B27/B28 (leader side): a follower's INVALID_TERM reply with a higher term makes the leader step down
    and adopt that term once the notification is delivered."""
    async def body(n: Node) -> None:
        await n.win_election()
        term = n.c.term
        first = n.transport.take("n2")
        first.reply(follower_reply("n2", term + 3, (0, 0), error=("INVALID_TERM", "caller term too low")))
        assert n.c.role is Role.LEADER  # delivered asynchronously (observer token)
        n.clock.run_due()
        assert n.c.role is Role.FOLLOWER and n.c.term == term + 3 and n.c.voted_for is None
        assert n.meta.load() == (term + 3, None) and n.c.peers == {}
        assert n.c.counters.step_downs == 1
    run_node(tmp_path, body)


def test_higher_term_no_vote_ends_election_and_is_adopted(tmp_path: Path) -> None:
    """§4.3: a no vote from a voter with a higher term ends the election at once as lost; the term is adopted."""
    async def body(n: Node) -> None:
        n.elections.start(pre=False)
        await n.settle()
        v = n.vote_requests()[0]
        v.reply(deny(v, 7, "INVALID_TERM"))
        await n.settle()
        assert n.c.role is Role.FOLLOWER and n.c.term == 7 and n.c.failed_elections == 1
        assert n.elections.current is None
    run_node(tmp_path, body)


def test_rpc_errors_count_as_no_votes(tmp_path: Path) -> None:
    """§4.3: one grant plus one RPC error among three voters still wins; two errors lose."""
    async def body(n: Node) -> None:
        n.elections.start(pre=False)
        await n.settle()
        a, b = n.vote_requests()
        a.fail()
        await n.settle()
        assert n.c.role is Role.CANDIDATE
        b.reply(grant(b))
        await n.settle()
        assert n.c.role is Role.LEADER
    run_node(tmp_path, body)


def test_stale_election_result_is_ignored(tmp_path: Path) -> None:
    """§4.3: results of an election for a term the node has left are ignored."""
    async def body(n: Node) -> None:
        await expire_fd(n)  # pre-election asking for term 1
        votes = n.vote_requests()
        assert status_error(await n.update(term=3, caller="n3")) is None
        for v in votes:
            v.reply(grant(v))
        await n.settle()
        assert n.c.term == 3 and n.c.role is Role.FOLLOWER and n.c.leader_uuid == "n3"
        assert n.vote_requests() == []
    run_node(tmp_path, body)


def test_winning_election_makes_leader_with_noop_and_peers(tmp_path: Path) -> None:
    """§4.3: the winner turns its FD off, builds one Peer per other voter and appends a NO_OP of its term;
    each Peer's first request carries no ops and the leader's last OpId (B4/B5)."""
    async def body(n: Node) -> None:
        assert status_error(await n.update(term=2, ops=[op(2, 1), op(2, 2)], committed=1)) is None
        await n.win_election()
        assert n.c.term == 3 and n.c.leader_uuid == "n1" and n.c.counters.elections_won == 1
        assert n.c.log.last_opid == OpId(3, 3) and n.c.log.get(3).kind == "NO_OP"
        assert not n.c.fd.running
        assert sorted(n.c.peers) == ["n2", "n3"]
        for hop in ("n2", "n3"):
            first = n.transport.take(hop)
            assert first.body["ops"] == [] and first.body["preceding_id"] == [3, 3]
            assert first.body["caller_term"] == 3 and first.body["dest_uuid"] == hop
            assert first.body["committed_index"] == 1
        vote = await n.vote(candidate="n2", term=9, last=(9, 9))
        assert vote["error"]["code"] == "LEADER_IS_ALIVE" and n.c.term == 3
    run_node(tmp_path, body)


def test_forced_run_leader_election_skips_pre_election(tmp_path: Path) -> None:
    """§4.3: RunLeaderElection starts a real election at once (term + 1) that ignores live leaders."""
    async def body(n: Node) -> None:
        assert status_error(await n.update(term=2)) is None
        resp = await n.service.handle("RunLeaderElection", {"dest_uuid": "n1"})
        assert resp["responder_uuid"] == "n1"
        await n.settle()
        assert n.c.term == 3 and n.c.voted_for == "n1" and n.c.counters.pre_elections_started == 0
        votes = n.vote_requests()
        assert len(votes) == 2
        assert all(v.body["ignore_live_leader"] and not v.body["is_pre_election"] for v in votes)
    run_node(tmp_path, body)


@pytest.mark.parametrize("seed", [31, 32, 33, 34])
def test_b35_fresh_multi_node_cluster_first_fd_expiry_within_one_heartbeat(tmp_path: Path, seed: int) -> None:
    """B35/§4.2: at term 0 the first FD expiry is U[0, P) = U[0, 500) ms."""
    async def body(n: Node) -> None:
        assert n.c.term == 0 and 0.0 <= n.fd_delay() < 0.5
        await expire_fd(n)
        assert len(n.vote_requests()) == 2
    run_node(tmp_path, body, seed=seeded(seed))


def test_b35_restarted_node_first_fd_expiry_is_a_jittered_met(tmp_path: Path) -> None:
    """§4.2: with a term above 0 the first expiry is MET +-25% = U[1.125, 1.875] s."""
    async def body(n: Node) -> None:
        n.c.term = 5
        n.c.start_failure_detector()
        assert 1.125 <= n.fd_delay() <= 1.875
    run_node(tmp_path, body, start=False)


def test_b35_single_voter_elects_itself_at_start(tmp_path: Path) -> None:
    """B35: a single-voter config becomes leader immediately at start and commits its NO_OP and writes."""
    async def body(n: Node) -> None:
        assert n.c.role is Role.LEADER and n.c.term == 1 and n.meta.load() == (1, "n1")
        assert n.c.log.last_opid == OpId(1, 1) and n.rpc.calls == []
        await n.drain()
        n.clock.run_due()
        assert n.c.commit_index == 1
        fut = n.c.replicate({"op": "put", "key": "a", "value": "1"})
        await n.drain()
        n.clock.run_due()
        assert (await fut) == {"index": 2} and n.c.kv.data == {"a": "1"}
    run_node(tmp_path, body, config=SINGLE)


def test_b41_step_down_raises_term_and_blocks_own_election_for_two_met(tmp_path: Path) -> None:
    """B41: StepDown raises the term by one and the former leader starts no election for 2 x MET = 3 s."""
    async def body(n: Node) -> None:
        await n.win_election()
        term, flushes = n.c.term, n.meta.flush_count
        n.c.step_down()
        assert n.c.role is Role.FOLLOWER and n.c.term == term + 1 and n.c.leader_uuid is None
        # kuduraft's StepDown advances the term with SKIP_FLUSH_TO_DISK (raft_consensus.cc).
        assert n.meta.flush_count == flushes and n.meta.load() == (term, "n1")
        assert n.fd_delay() == pytest.approx(3.0)
        n.clock.advance(2.999)
        await n.settle()
        assert n.vote_requests() == []
        n.clock.advance(0.002)
        await n.settle()
        assert len(n.vote_requests()) == 2
        with pytest.raises(NotLeader):
            n.c.step_down()
    run_node(tmp_path, body)


def test_step_down_over_the_api(tmp_path: Path) -> None:
    """POST /admin/step_down: 200 with the new term on the leader, 421 (NOT_THE_LEADER) elsewhere."""
    async def body(n: Node) -> None:
        api = NodeApi(n.c, n.service)
        resp = await api.handle("POST", "/admin/step_down", {}, b"")
        assert resp.status == 421
        await n.win_election()
        resp = await api.handle("POST", "/admin/step_down", {}, b"")
        assert resp.status == 200 and json.loads(resp.body) == {"ok": True, "term": 2}
        assert n.c.role is Role.FOLLOWER
    run_node(tmp_path, body)


def test_b26_superseded_lost_round_still_counts_toward_back_off(tmp_path: Path) -> None:
    """B26: a round the FD replaced still counts when it is lost, and snoozes the FD by the grown
    back-off (kuduraft raft_consensus.cc, RaftConsensus::DoElectionCallback increments
    failed_elections_since_stable_leader_ for every VOTE_DENIED result, before any term check)."""
    async def body(n: Node) -> None:
        n.c.rng.uniform = lambda a, b: b  # type: ignore[method-assign]
        await expire_fd(n)
        first = n.vote_requests()
        await expire_fd(n)  # the FD fires again before the first round decides
        assert n.c.counters.pre_elections_started == 2
        second = [v for v in n.vote_requests() if v not in first]
        for v in first:
            v.fail()
        await n.settle()
        assert n.c.failed_elections == 1 and n.c.term == 0
        assert n.fd_delay() == pytest.approx(backoff_bound(0))
        for v in second:
            v.fail()
        await n.settle()
        assert n.c.failed_elections == 2
        assert n.fd_delay() == pytest.approx(backoff_bound(1))
    run_node(tmp_path, body)


def test_b26_late_win_of_superseded_round_is_honoured(tmp_path: Path) -> None:
    """B26/§4.3: votes slower than the FD still elect a leader. kuduraft's DoElectionCallback only
    drops a win whose start term is defunct or that arrives while leading; a round the FD
    replaced in the same term still starts the real election (pre) or becomes leader."""
    async def body(n: Node) -> None:
        await expire_fd(n)
        slow_pre = n.vote_requests()
        await expire_fd(n)  # the replies take longer than the FD
        for v in slow_pre:
            v.reply(grant(v))
        await n.settle()
        assert n.c.term == 1 and n.c.voted_for == "n1" and n.c.counters.elections_started == 1
        real = [v for v in n.vote_requests() if not v.body["is_pre_election"]]
        assert len(real) == 2
        await expire_fd(n)  # the FD fires during the real election too: a new pre-election
        for v in real:
            v.reply(grant(v))
        await n.settle()
        assert n.c.role is Role.LEADER and n.c.term == 1
        for v in n.vote_requests():  # the newest pre-election's grants arrive while leading
            v.reply(grant(v))
        await n.settle()
        assert n.c.role is Role.LEADER and n.c.term == 1 and n.c.counters.elections_started == 1
    run_node(tmp_path, body)


@pytest.mark.parametrize("seed", [41, 42, 43])
def test_b4_b5_new_leader_first_request_leaves_on_heartbeat(tmp_path: Path, seed: int) -> None:
    """B4/B5: a new leader appends its NO_OP without signalling (kuduraft raft_consensus.cc,
    BecomeLeaderUnlocked; consensus_peers.cc, Peer::Init only starts the heartbeater), so each
    peer's first request leaves P x [0.75, 1.25] = 375-625 ms after the peer is created."""
    async def body(n: Node) -> None:
        await n.win_election(first_requests=False)
        t0 = n.clock.now()
        assert n.transport.pending() == []
        for hop in ("n2", "n3"):
            due = n.c.peers[hop].heartbeater.due_at
            assert due is not None and 0.375 <= due - t0 <= 0.625
        n.clock.advance(0.3749)
        await n.settle()
        assert n.transport.pending() == []
        await n.first_beats()
        for hop in ("n2", "n3"):
            first = n.transport.take(hop)
            assert first.body["ops"] == [] and first.body["preceding_id"] == [1, 1]
    run_node(tmp_path, body, seed=seeded(seed))


def test_b4_a_write_signal_sends_the_first_request_before_the_heartbeat(tmp_path: Path) -> None:
    """B4: a write signals every peer; the first request (negotiation, no ops) leaves at once."""
    async def body(n: Node) -> None:
        await n.win_election(first_requests=False)
        n.c.replicate({"op": "put", "key": "a", "value": "1"})
        await n.settle()
        for hop in ("n2", "n3"):
            assert n.transport.take(hop).body["ops"] == []
    run_node(tmp_path, body)


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
        n.c.fd.stop()
        n.c.term = 4
        n.c.persist()
        flushes = n.meta.flush_count
        n.c.start_failure_detector()
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
        n.c.fd.stop()
        n.c.term = 4
        n.c.persist()
        flushes = n.meta.flush_count
        n.c.start_failure_detector()
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
