"""Elections (nodes/election.py): failure detector expiry, pre-elections, back-off, winning, step-down.

Spec §4.2, §4.3, §4.5; B25-B27, B35, B41.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from consensus_fixture import (
    SINGLE,
    Node,
    RpcCall,
    expire_fd,
    follower_reply,
    op,
    rearm_in_term,
    run_node,
    seeded,
    status_error,
)

from nodes.api import NodeApi
from nodes.consensus import NotLeader, Role
from nodes.log import OpId


def backoff_bound(failures: int, met: float = 1.5, cap: float = 20.0) -> float:
    """Upper end of the election back-off window after ``failures`` failed elections."""
    return min(met * 1.5 ** (failures + 1), cap)


def deny(call: RpcCall, term: int, code: str = "ALREADY_VOTED") -> dict:
    return {"responder_uuid": call.uuid, "responder_term": term, "vote_granted": False,
            "error": {"code": code, "message": "test"}}


def grant(call: RpcCall) -> dict:
    return {"responder_uuid": call.uuid, "responder_term": call.body["candidate_term"], "vote_granted": True}



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
        flushes = await rearm_in_term(n, 4)
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
        assert n.c.peers == {}  # stepped down at once; the new term is flushed off the loop
        await n.c.meta_durable()
        assert n.meta.load() == (term + 3, None)
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
    """B35: a single-voter config becomes leader at start, as soon as its term and vote are durable
    (kuduraft's StartElection flushes them before counting votes), and commits its NO_OP and writes."""
    async def body(n: Node) -> None:
        await n.settle()
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
