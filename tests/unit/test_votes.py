"""Vote granting (Elections.handle_request_vote through ConsensusService): spec §4.4, B29-B33."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from consensus_fixture import Node, op, ops, run_node, status_error, update_body, vote_body

from nodes.consensus import Role


def code(resp: dict) -> str | None:
    return None if resp.get("vote_granted") else resp["error"]["code"]


def test_request_vote_sequence(tmp_path: Path) -> None:
    """Port of raft_consensus_quorum-test TestRequestVote (flush counts included)."""
    async def body(n: Node) -> None:
        assert status_error(await n.update(term=1, ops=ops(1, 1, 2), committed=1)) is None
        flushes = n.meta.flush_count
        # Right after leader contact: LEADER_IS_ALIVE, no flush.
        assert code(await n.vote(candidate="n3", term=2, last=(1, 2))) == "LEADER_IS_ALIVE"
        assert n.meta.flush_count == flushes
        # Forced: granted, one flush (term and vote together).
        resp = await n.vote(candidate="n3", term=2, last=(1, 2), forced=True)
        assert resp["vote_granted"] is True and resp["responder_term"] == 2
        assert n.meta.flush_count == flushes + 1 and n.meta.load() == (2, "n3")
        # Same candidate again: granted, no flush.
        assert (await n.vote(candidate="n3", term=2, last=(1, 2), forced=True))["vote_granted"] is True
        assert n.meta.flush_count == flushes + 1
        # Another candidate in the same term: ALREADY_VOTED.
        assert code(await n.vote(candidate="n2", term=2, last=(1, 2), forced=True)) == "ALREADY_VOTED"
        # Higher term: granted, one flush.
        assert (await n.vote(candidate="n2", term=3, last=(1, 2), forced=True))["vote_granted"] is True
        assert n.meta.flush_count == flushes + 2 and n.meta.load() == (3, "n2")
        # Old term: INVALID_TERM.
        assert code(await n.vote(candidate="n3", term=2, last=(1, 2), forced=True)) == "INVALID_TERM"
        # Pre-election: granted without term change or flush.
        resp = await n.vote(candidate="n3", term=4, last=(1, 2), forced=True, pre=True)
        assert resp["vote_granted"] is True and resp["responder_term"] == 3
        assert n.meta.flush_count == flushes + 2 and n.c.term == 3 and n.c.voted_for == "n2"
        # Stale last OpId with a new term: LAST_OPID_TOO_OLD, one flush (the term only).
        resp = await n.vote(candidate="n3", term=5, last=(1, 1), forced=True)
        assert code(resp) == "LAST_OPID_TOO_OLD" and resp["responder_term"] == 5
        assert n.meta.flush_count == flushes + 3 and n.meta.load() == (5, None)
        # Finally an Update from the old term gets INVALID_TERM.
        assert status_error(await n.update(term=1, preceding=(1, 2))) == "INVALID_TERM"
    run_node(tmp_path, body)


def test_b29_leader_answers_every_non_forced_vote_leader_is_alive(tmp_path: Path) -> None:
    """B29: a leader refuses every non-forced vote (any term, pre or real) with LEADER_IS_ALIVE."""
    async def body(n: Node) -> None:
        await n.win_election()
        term = n.c.term
        for t in (term, term + 1, term + 50):
            for pre in (False, True):
                resp = await n.vote(candidate="n2", term=t, last=(t, 100), pre=pre)
                assert code(resp) == "LEADER_IS_ALIVE"
        n.clock.advance(3600)
        assert code(await n.vote(candidate="n3", term=term + 1, last=(term + 1, 1))) == "LEADER_IS_ALIVE"
        assert n.c.role is Role.LEADER and n.c.term == term
    run_node(tmp_path, body)


def test_b29_forced_vote_with_higher_term_makes_leader_step_down(tmp_path: Path) -> None:
    """§4.4: a forced (leadership transfer) vote with a higher term is not withheld; the leader adopts the term."""
    async def body(n: Node) -> None:
        await n.win_election()
        term = n.c.term
        resp = await n.vote(candidate="n2", term=term + 1, last=(term, 5), forced=True)
        assert resp["vote_granted"] is True
        assert n.c.role is Role.FOLLOWER and n.c.term == term + 1 and n.c.voted_for == "n2"
    run_node(tmp_path, body)


def test_b30_one_vote_per_term_and_repeat_without_flush(tmp_path: Path) -> None:
    """B30: one vote per term; repeating the same candidate gets the same yes without a metadata flush."""
    async def body(n: Node) -> None:
        flushes = n.meta.flush_count
        assert (await n.vote(candidate="n2", term=1))["vote_granted"] is True
        assert n.meta.flush_count == flushes + 1
        for _ in range(3):
            assert (await n.vote(candidate="n2", term=1))["vote_granted"] is True
        assert n.meta.flush_count == flushes + 1
        resp = await n.vote(candidate="n3", term=1)
        assert code(resp) == "ALREADY_VOTED" and "already voted for n2" in resp["error"]["message"]
        assert n.meta.load() == (1, "n2")
    run_node(tmp_path, body)


@pytest.mark.parametrize("cand_last,granted", [
    ((1, 10), False),   # lower term, longer log
    ((2, 1), False),    # same term, shorter log
    ((2, 2), True),     # equal
    ((3, 0), True),     # higher term wins over index
])
def test_b31_last_opid_compared_by_term_then_index(tmp_path: Path, cand_last: tuple, granted: bool) -> None:
    """B31: a candidate whose last OpId is older (term, then index) is denied LAST_OPID_TOO_OLD, but the
    voter still adopts the higher term (one flush)."""
    async def body(n: Node) -> None:
        assert status_error(await n.update(term=2, ops=[op(2, 1), op(2, 2)])) is None
        n.clock.advance(2.0)  # past the withhold window
        flushes = n.meta.flush_count
        resp = await n.vote(candidate="n3", term=4, last=cand_last)
        assert resp["vote_granted"] is granted, resp
        assert n.c.term == 4 and resp["responder_term"] == 4
        assert n.meta.flush_count == flushes + 1
        assert n.meta.load() == (4, "n3" if granted else None)
        if not granted:
            assert code(resp) == "LAST_OPID_TOO_OLD"
    run_node(tmp_path, body)


def test_b32_pre_election_votes_never_change_persisted_state(tmp_path: Path) -> None:
    """B32: pre-votes (granted or not) leave the persisted term and vote untouched."""
    async def body(n: Node) -> None:
        assert (await n.vote(candidate="n2", term=3))["vote_granted"] is True
        before, flushes = n.meta.load(), n.meta.flush_count
        for cand, term, last in [("n3", 4, (0, 0)), ("n3", 9, (0, 0)), ("n2", 4, (0, 0)), ("n3", 2, (0, 0))]:
            await n.vote(candidate=cand, term=term, last=last, pre=True)
        assert n.meta.load() == before == (3, "n2") and n.meta.flush_count == flushes
        assert (n.c.term, n.c.voted_for) == before
    run_node(tmp_path, body)


def test_b33_vote_during_update_is_consensus_busy(tmp_path: Path) -> None:
    """B33: a vote arriving while an Update holds the update lock is denied CONSENSUS_BUSY; forced
    votes and votes with the FD disabled do not try-lock: they wait for the lock (spec 4.4)."""
    async def body(n: Node) -> None:
        n.writer.hold()
        task = asyncio.create_task(n.service.handle("UpdateConsensus", update_body(term=1, ops=[op(1, 1)])))
        await n.settle()
        assert n.c.update_lock.locked() and not task.done()
        resp = await n.vote(candidate="n3", term=2, last=(5, 5))
        assert code(resp) == "CONSENSUS_BUSY" and n.c.term == 1
        n.flags.set("enable_leader_failure_detection", False)
        waiting = asyncio.create_task(n.vote(candidate="n3", term=2, last=(5, 5)))
        forced = asyncio.create_task(n.vote(candidate="n3", term=2, last=(5, 5), forced=True))
        await n.settle()
        assert not waiting.done() and not forced.done()  # blocked on the update lock, not BUSY
        n.writer.release()
        resp = await task
        assert resp["status"]["last_received"] == [1, 1]
        assert code(await waiting) == "LEADER_IS_ALIVE"  # decided after the update was accepted
        assert (await forced)["vote_granted"] is True
        n.flags.set("enable_leader_failure_detection", True)
        assert code(await n.vote(candidate="n2", term=3, last=(5, 5))) == "LEADER_IS_ALIVE"  # lock free again
    run_node(tmp_path, body)


@pytest.mark.parametrize("bad", [
    {"candidate_uuid": 3}, {"candidate_term": "2"}, {"candidate_term": True}, {"candidate_status": None},
    {"candidate_status": {"last_received": [1]}},
])
def test_malformed_vote_request_is_denied_not_crashed(tmp_path: Path, bad: dict) -> None:
    async def body(n: Node) -> None:
        req = vote_body(candidate="n2", term=2)
        req.update(bad)
        resp = await n.service.handle("RequestVote", req)
        assert resp["vote_granted"] is False and resp["error"]["code"] == "INVALID_REQUEST"
        assert n.c.term == 0
    run_node(tmp_path, body)
