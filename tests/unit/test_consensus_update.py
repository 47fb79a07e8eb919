"""Follower side of UpdateConsensus (nodes/update.py via ConsensusService): spec §4.1, B23-B24, B28, B36-B40."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from consensus_fixture import (
    Node,
    entries_of,
    op,
    ops,
    run_node,
    seeded,
    status_error,
    update_body,
)

from nodes.log import OpId


def test_accepted_update_appends_and_answers_with_status(tmp_path: Path) -> None:
    """§4.1 steps 10, 14, 15: reply carries term, last received, last from this leader, commit."""
    async def body(n: Node) -> None:
        resp = await n.update(term=2, ops=ops(1, 1, 3), committed=1)
        assert resp["responder_uuid"] == "n1" and resp["responder_term"] == 2
        assert status_error(resp) is None
        assert resp["status"]["last_received"] == [1, 3]
        assert resp["status"]["last_received_current_leader"] == [1, 3]
        assert resp["status"]["last_committed_idx"] == 1
        assert n.c.term == 2 and n.c.voted_for is None and n.c.leader_uuid == "n2"
        assert n.meta.load() == (2, None)  # adopted term flushed
        assert n.wal.last_index == 3  # the reply went out only after the append was durable
        assert n.c.kv.data == {"k1": "v1"}  # index 1 committed and applied
    run_node(tmp_path, body)


@pytest.mark.parametrize("seed", [11, 12, 13, 14, 15])
def test_b23_accepted_update_snoozes_fd_into_met_window_and_withholds_votes(tmp_path: Path,
                                                                           seed: int) -> None:
    """B23: after an accepted update no election for U[1.5, 2.25] s; non-forced votes refused for 1.5 s."""
    async def body(n: Node) -> None:
        n.clock.advance(0.3)
        assert status_error(await n.update(term=1, ops=[op(1, 1)])) is None
        assert 1.5 <= n.fd_delay() <= 2.25
        t0 = n.clock.now()
        n.clock.advance_to(t0 + 1.499)
        for pre in (False, True):
            resp = await n.vote(candidate="n3", term=2, last=(1, 1), pre=pre)
            assert resp["vote_granted"] is False and resp["error"]["code"] == "LEADER_IS_ALIVE"
        assert n.c.term == 1 and n.meta.flush_count == 1  # refused without touching durable state
        n.clock.advance_to(t0 + 1.5001)
        resp = await n.vote(candidate="n3", term=2, last=(1, 1))
        assert resp["vote_granted"] is True, resp
    run_node(tmp_path, body, seed=seeded(seed))


def test_b23_snooze_ratio_other_than_one_snoozes_exactly(tmp_path: Path) -> None:
    """§4.2 / flag table: snooze_for_leader_ban_ratio != 1.0 snoozes the FD for exactly MET x ratio."""
    async def body(n: Node) -> None:
        assert status_error(await n.update(term=1)) is None
        assert n.fd_delay() == pytest.approx(1.5 * 2.0)
    run_node(tmp_path, body, flags={"snooze_for_leader_ban_ratio": 2.0})


def test_b24_stale_term_rejection_does_not_touch_election_timer(tmp_path: Path) -> None:
    """B24/B28: a lower-term update is INVALID_TERM and neither snoozes the FD nor withholds votes."""
    async def body(n: Node) -> None:
        assert status_error(await n.update(term=3, ops=[op(3, 1)])) is None
        due, withhold, contact = n.c.fd.due_at, n.c.withhold_votes_until, n.c.last_leader_contact
        n.clock.advance(1.0)
        resp = await n.update(term=2, caller="n3", preceding=(3, 1))
        assert status_error(resp) == "INVALID_TERM"
        assert (n.c.fd.due_at, n.c.withhold_votes_until, n.c.last_leader_contact) == (due, withhold, contact)
        assert n.c.leader_uuid == "n2"
    run_node(tmp_path, body)


def test_b24_lmp_mismatch_does_not_touch_election_timer(tmp_path: Path) -> None:
    """B24: an update rejected for a log-matching mismatch does not reset the election timer."""
    async def body(n: Node) -> None:
        assert status_error(await n.update(term=1, ops=[op(1, 1)])) is None
        due, withhold = n.c.fd.due_at, n.c.withhold_votes_until
        n.clock.advance(1.0)
        resp = await n.update(term=1, preceding=(1, 7), ops=[op(1, 8)])
        assert status_error(resp) == "PRECEDING_ENTRY_DIDNT_MATCH"
        assert (n.c.fd.due_at, n.c.withhold_votes_until) == (due, withhold)
        assert n.c.failed_elections == 0
    run_node(tmp_path, body)


def test_b28_lower_term_answered_invalid_term_with_responder_term(tmp_path: Path) -> None:
    """B28: an Update with a lower term gets INVALID_TERM and the responder's current term; nothing is appended."""
    async def body(n: Node) -> None:
        assert status_error(await n.update(term=5)) is None
        resp = await n.update(term=4, caller="n3", ops=[op(4, 1)])
        assert status_error(resp) == "INVALID_TERM"
        assert resp["responder_term"] == 5
        assert "lower than current term 5" in resp["status"]["error"]["message"]
        assert n.c.log.last_index == 0 and n.c.term == 5
        assert n.c.counters.updates_rejected == 1
    run_node(tmp_path, body)


def test_higher_term_update_is_adopted_with_one_flush_and_new_leader(tmp_path: Path) -> None:
    """§4.1 step 6/8: a higher caller term is adopted (vote cleared, flushed) and the caller becomes leader."""
    async def body(n: Node) -> None:
        assert (await n.vote(candidate="n3", term=4))["vote_granted"] is True
        flushes = n.meta.flush_count
        resp = await n.update(term=6, caller="n2")
        assert status_error(resp) is None and resp["responder_term"] == 6
        assert n.meta.flush_count == flushes + 1
        assert n.meta.load() == (6, None)
        assert n.c.leader_uuid == "n2"
    run_node(tmp_path, body)


def test_updates_from_non_members_are_served(tmp_path: Path) -> None:
    """§4.1 step 2: the caller need not be in the config (kuduraft serves non-members)."""
    async def body(n: Node) -> None:
        resp = await n.update(term=1, caller="n9", ops=[op(1, 1)], committed=1)
        assert status_error(resp) is None and n.c.leader_uuid == "n9" and n.c.commit_index == 1
    run_node(tmp_path, body)


def test_b36_resent_batch_accepted_without_duplicates(tmp_path: Path) -> None:
    """B36: resending a batch the follower holds (pending or committed) is accepted and appends nothing."""
    async def body(n: Node) -> None:
        batch = ops(1, 1, 3)
        assert status_error(await n.update(term=1, ops=batch)) is None
        for committed in (0, 2):  # pending, then partly committed
            resp = await n.update(term=1, ops=batch, committed=committed)
            assert status_error(resp) is None
            assert resp["status"]["last_received"] == [1, 3]
            assert resp["status"]["last_received_current_leader"] == [1, 3]
        # An overlapping batch appends only what is new.
        resp = await n.update(term=1, preceding=(1, 1), ops=ops(1, 2, 5), committed=2)
        assert status_error(resp) is None and resp["status"]["last_received"] == [1, 5]
        await n.drain()
        assert [e.index for e in entries_of(n.c.log)] == [1, 2, 3, 4, 5]
        assert n.wal.stats.entries == 5 and n.wal.stats.truncations == 0
    run_node(tmp_path, body)


def test_b37_commit_never_beyond_last_op_of_request(tmp_path: Path) -> None:
    """B37: whatever commit index the leader sends, the follower commits at most the last op in
    (or preceding) this request."""
    async def body(n: Node) -> None:
        resp = await n.update(term=1, ops=ops(1, 1, 3), committed=10)
        assert resp["status"]["last_committed_idx"] == 3 and n.c.commit_index == 3
        assert status_error(await n.update(term=1, preceding=(1, 3), ops=ops(1, 4, 6))) is None
        # A heartbeat whose preceding id is 4 commits 4, not the 6 the follower holds.
        resp = await n.update(term=1, preceding=(1, 4), committed=100)
        assert resp["status"]["last_committed_idx"] == 4 and n.c.commit_index == 4
        assert n.c.applied_index == 4 and n.c.log.last_index == 6
        assert resp["status"]["last_received_current_leader"] == [1, 4]
    run_node(tmp_path, body)


@pytest.mark.parametrize("bad_ops,text", [
    ([op(1, 1), op(1, 3)], "index does not follow"),
    ([op(1, 2)], "index does not follow"),  # first op does not follow the preceding id
    ([op(2, 1), op(1, 2)], "term is not >="),
])
def test_b38_out_of_sequence_ops_fail_whole_request_with_server_error(tmp_path: Path, bad_ops: list,
                                                                      text: str) -> None:
    """B38: out-of-sequence ops are a server-level error (the leader counts REMOTE_ERROR); nothing is kept."""
    async def body(n: Node) -> None:
        due = n.c.fd.due_at
        resp = await n.update(term=2, ops=bad_ops, committed=1)
        assert "status" not in resp
        assert resp["error"]["code"] == "UNKNOWN_ERROR"
        assert text in resp["error"]["message"] and "Corruption" in resp["error"]["message"]
        assert n.c.log.last_index == 0 and n.c.commit_index == 0
        assert n.c.fd.due_at == due and n.c.leader_uuid is None
    run_node(tmp_path, body)


def test_b38_op_term_below_committed_preceding_entry_is_server_error(tmp_path: Path) -> None:
    """B38/§4.1 step 5: the log-matching check ignores the term of a committed preceding id, so the sequence
    check must use the term really held there: an op of a lower term is Corruption, not a crash (fuzz find)."""
    async def body(n: Node) -> None:
        assert status_error(await n.update(term=2, ops=[op(2, 1)], committed=1)) is None
        for bad in ({"preceding": (0, 1), "ops": [op(1, 2, "NO_OP")]},
                    {"preceding": (0, 0), "ops": [op(0, 1), op(1, 2)]}):  # first op deduplicated as committed
            resp = await n.update(term=2, committed=2, **bad)
            assert resp["error"]["code"] == "UNKNOWN_ERROR" and "term is not >=" in resp["error"]["message"]
        assert n.c.log.last_opid == OpId(2, 1)
        # A fine op still goes in (the committed preceding id's term is not compared).
        resp = await n.update(term=2, preceding=(7, 1), ops=[op(2, 2)], committed=2)
        assert status_error(resp) is None and n.c.log.last_opid == OpId(2, 2)
    run_node(tmp_path, body)


def test_b38_op_with_term_above_caller_term_is_server_error(tmp_path: Path) -> None:
    """An op of a term above the caller's own term cannot come from a real leader; accepting it let a later
    leader of a lower term hold a higher-term entry and crash on its next append (fuzz find)."""
    async def body(n: Node) -> None:
        resp = await n.update(term=1, ops=[op(1, 1), op(2, 2)])
        assert resp["error"]["code"] == "UNKNOWN_ERROR" and "above the caller's term" in resp["error"]["message"]
        assert n.c.log.last_index == 0 and n.c.term == 0
    run_node(tmp_path, body)


def test_log_matching_term_mismatch_truncates_conflicting_suffix(tmp_path: Path) -> None:
    """§4.1 step 7: a preceding id whose term differs locally is rejected and the suffix from it is dropped."""
    async def body(n: Node) -> None:
        assert status_error(await n.update(term=1, ops=ops(1, 1, 4), committed=1)) is None
        resp = await n.update(term=2, caller="n3", preceding=(2, 3), ops=[op(2, 4)])
        assert status_error(resp) == "PRECEDING_ENTRY_DIDNT_MATCH"
        msg = resp["status"]["error"]["message"]
        assert "Log matching property violated" in msg and "(term mismatch)" in msg
        assert n.c.log.last_opid == OpId(1, 2)  # truncated after preceding index - 1
        assert resp["status"]["last_received"] == [1, 2]
        await n.drain()
        assert n.wal.last_index == 2  # durably too
    run_node(tmp_path, body)


def test_log_matching_index_mismatch_keeps_log(tmp_path: Path) -> None:
    """§4.1 step 7: a preceding id beyond the local log is an index mismatch; nothing is truncated."""
    async def body(n: Node) -> None:
        assert status_error(await n.update(term=1, ops=ops(1, 1, 3))) is None
        resp = await n.update(term=1, preceding=(1, 6), ops=[op(1, 7)])
        assert status_error(resp) == "PRECEDING_ENTRY_DIDNT_MATCH"
        assert "(index mismatch)" in resp["status"]["error"]["message"]
        assert n.c.log.last_opid == OpId(1, 3)
        assert n.wal.stats.truncations == 0
    run_node(tmp_path, body)


def test_conflicting_first_op_replaces_uncommitted_suffix(tmp_path: Path) -> None:
    """§4.1 step 7: the first new op colliding with a pending op of another term truncates after the preceding id."""
    async def body(n: Node) -> None:
        assert status_error(await n.update(term=1, ops=ops(1, 1, 4), committed=1)) is None
        resp = await n.update(term=2, caller="n3", preceding=(1, 2), ops=[op(2, 3), op(2, 4), op(2, 5)],
                              committed=3)
        assert status_error(resp) is None
        assert [(e.term, e.index) for e in entries_of(n.c.log)] == [(1, 1), (1, 2), (2, 3), (2, 4), (2, 5)]
        assert n.c.commit_index == 3 and n.c.leader_uuid == "n3"
        await n.drain()
        assert n.wal.last_index == 5 and n.wal.stats.truncations == 1
    run_node(tmp_path, body)


def test_replicas_enforce_the_log_matching_property(tmp_path: Path) -> None:
    """Port of TestReplicasEnforceTheLogMatchingProperty: the correct next op is accepted; a request
    skipping one index gets PRECEDING_ENTRY_DIDNT_MATCH with "Log matching property violated"."""
    async def body(n: Node) -> None:
        assert status_error(await n.update(term=1, ops=ops(1, 1, 5), committed=5)) is None
        last = n.last_opid()
        resp = await n.update(term=1, preceding=tuple(last), ops=[op(1, last.index + 1, "NO_OP")],
                              committed=5)
        assert status_error(resp) is None and n.c.log.last_index == last.index + 1
        resp = await n.update(term=1, preceding=(1, last.index + 2), ops=[op(1, last.index + 3, "NO_OP")],
                              committed=5)
        assert status_error(resp) == "PRECEDING_ENTRY_DIDNT_MATCH"
        assert "Log matching property violated" in resp["status"]["error"]["message"]
        assert n.c.log.last_index == last.index + 1
    run_node(tmp_path, body)


def test_b39_reject_flag_fails_every_update_and_follower_starts_elections(tmp_path: Path) -> None:
    """B39: follower_reject_update_consensus_requests answers every Update with a server-level error;
    the FD is never snoozed, so the follower starts (pre-)elections."""
    async def body(n: Node) -> None:
        n.flags.set("follower_reject_update_consensus_requests", True)
        for i in range(8):
            resp = await n.update(term=1, ops=[op(1, 1)] if i == 0 else [])
            assert resp["error"]["code"] == "UNKNOWN_ERROR" and "status" not in resp
            assert "follower_reject_update_consensus_requests" in resp["error"]["message"]
            n.clock.advance(0.5)
            await n.settle()
        assert n.c.log.last_index == 0 and n.c.leader_uuid is None
        assert n.c.counters.updates_rejected == 8
        votes = n.vote_requests()
        assert votes and all(v.body["is_pre_election"] for v in votes)
        assert n.c.counters.pre_elections_started >= 1
    run_node(tmp_path, body)


def test_b40_fail_all_prepare_rejects_writes_but_accepts_noop_and_config(tmp_path: Path) -> None:
    """B40: with follower_fail_all_prepare, write batches get CANNOT_PREPARE ("Could not prepare a single
    transaction"); NO_OP and config ops are still accepted, and a mixed batch keeps its prepared prefix."""
    async def body(n: Node) -> None:
        assert status_error(await n.update(term=1, ops=[op(1, 1, "NO_OP")])) is None
        assert status_error(await n.update(term=1, preceding=(1, 1),
                                           ops=[op(1, 2, "CONFIG", {"voters": ["n1", "n2", "n3"]})])) is None
        n.clock.advance(1.0)
        resp = await n.update(term=1, preceding=(1, 2), ops=ops(1, 3, 4), committed=2)
        assert status_error(resp) == "CANNOT_PREPARE"
        assert "Could not prepare a single transaction" in resp["status"]["error"]["message"]
        assert "Previous Rotate Event with" not in resp["status"]["error"]["message"]
        assert n.c.log.last_index == 2
        assert 1.5 <= n.fd_delay() <= 2.25  # the leader is alive: accepted before prepare (step 10)
        mixed = [op(1, 3, "CONFIG", {"voters": ["n1"]}), op(1, 4)]
        resp = await n.update(term=1, preceding=(1, 2), ops=mixed)
        assert status_error(resp) is None
        assert resp["status"]["last_received_current_leader"] == [1, 3] and n.c.log.last_index == 3
    run_node(tmp_path, body, flags={"follower_fail_all_prepare": True})


def test_b40_cannot_prepare_still_early_commits_ops_already_held(tmp_path: Path) -> None:
    """§4.1 steps 11 and 13: the early commit of pending ops (up to min(last pending, preceding, leader
    commit)) happens before prepare, so a CANNOT_PREPARE reply still advances the follower's commit index."""
    async def body(n: Node) -> None:
        assert status_error(await n.update(term=1, ops=ops(1, 1, 3))) is None
        n.flags.set("follower_fail_all_prepare", True)
        resp = await n.update(term=1, preceding=(1, 3), ops=[op(1, 4)], committed=3)
        assert status_error(resp) == "CANNOT_PREPARE"
        assert resp["status"]["last_committed_idx"] == 3 and n.c.commit_index == 3
        assert n.c.kv.data == {"k1": "v1", "k2": "v2", "k3": "v3"}
    run_node(tmp_path, body)


def test_b9_rotate_event_prepare_failure_is_cannot_prepare_with_rotate_text(tmp_path: Path) -> None:
    """B9 (follower side): follower_fail_prepare_with_rotate_event answers CANNOT_PREPARE whose message
    contains "Previous Rotate Event with"."""
    async def body(n: Node) -> None:
        resp = await n.update(term=1, ops=ops(1, 1, 2))
        assert status_error(resp) == "CANNOT_PREPARE"
        assert "Previous Rotate Event with" in resp["status"]["error"]["message"]
        assert n.c.log.last_index == 0
        n.flags.set("follower_fail_prepare_with_rotate_event", False)
        assert status_error(await n.update(term=1, ops=ops(1, 1, 2))) is None
    run_node(tmp_path, body, flags={"follower_fail_prepare_with_rotate_event": True})


@pytest.mark.parametrize("fields", [{"dest": "n2"}, {"dest": ""}, {"proxy_dest_uuid": "n3"}])
def test_b49_update_for_another_server_gets_wrong_server_uuid(tmp_path: Path, fields: dict) -> None:
    """B49 (follower side): an Update whose dest_uuid or proxy_dest_uuid names another node is refused."""
    async def body(n: Node) -> None:
        resp = await n.service.handle("UpdateConsensus", update_body(term=1, ops=[op(1, 1)], **fields))
        assert resp["error"]["code"] == "WRONG_SERVER_UUID" and "status" not in resp
        assert n.c.log.last_index == 0 and n.c.term == 0
    run_node(tmp_path, body)


@pytest.mark.parametrize("rpc", ["RequestVote", "RunLeaderElection"])
def test_b49_other_rpcs_for_another_server_get_wrong_server_uuid(tmp_path: Path, rpc: str) -> None:
    """B49: every consensus RPC checks its destination first (kuduraft's CheckUuidMatchOrRespond)."""
    async def body(n: Node) -> None:
        resp = await n.service.handle(rpc, {"dest_uuid": "n3", "candidate_uuid": "n2", "candidate_term": 1,
                                            "candidate_status": {"last_received": [0, 0]}})
        assert resp["error"]["code"] == "WRONG_SERVER_UUID"
        await n.settle()
        assert n.c.term == 0 and n.c.voted_for is None and n.rpc.calls == []
    run_node(tmp_path, body)


def test_update_lacking_all_replicated_index_is_refused(tmp_path: Path) -> None:
    """§4.1 step 3: a request without all_replicated_index is an error and changes nothing."""
    async def body(n: Node) -> None:
        due = n.c.fd.due_at
        resp = await n.update(term=3, ops=[op(3, 1)], all_replicated=None)
        assert "status" not in resp and "all_replicated_index" in resp["error"]["message"]
        assert n.c.term == 0 and n.c.log.last_index == 0 and n.c.fd.due_at == due
    run_node(tmp_path, body)


@pytest.mark.parametrize("mutation", [
    {"caller_term": "1"}, {"caller_uuid": None}, {"preceding_id": [1]}, {"ops": {"0": 1}},
    {"ops": [{"term": 1, "index": 1, "kind": "BOGUS"}]}, {"committed_index": 1.5},
])
def test_malformed_update_is_a_server_error_not_a_crash(tmp_path: Path, mutation: dict) -> None:
    """Bad field types are refused with a server-level error naming the field."""
    async def body(n: Node) -> None:
        bad = update_body(term=1, ops=[op(1, 1)])
        bad.update(mutation)
        resp = await n.service.handle("UpdateConsensus", bad)
        assert "error" in resp and "status" not in resp
        assert n.c.log.last_index == 0
    run_node(tmp_path, body)


@pytest.mark.parametrize("reject", [True, False])
def test_b39_rejected_updates_never_hold_off_the_followers_elections(tmp_path: Path, reject: bool) -> None:
    """B39 follower side, timed on the node's clock: a live leader sends an Update every 500 ms
    for 10 s. With follower_reject_update_consensus_requests every one is refused before any
    snooze, so the failure detector armed at start (term 0: U[0, P)) fires on time and the
    follower keeps starting pre-elections (unanswered votes: one per election back-off
    U[MET, 1.5 MET]), its term unchanged; without the flag (control) the same Updates snooze it and
    no election starts. kuduraft raft_consensus.cc, RaftConsensus::Update returns IllegalState
    for the flag before calling UpdateReplica, whose SnoozeFailureDetector so never runs;
    StartElection snoozes by
    LeaderElectionExpBackoffDeltaUnlocked. Before, the test only saw that some vote request
    existed after 4 s; now each start is placed on the node's own event clock."""
    async def body(n: Node) -> None:
        n.flags.set("follower_reject_update_consensus_requests", reject)
        t_start, fd_first = n.clock.now(), n.c.fd.due_at
        assert fd_first is not None and fd_first - t_start < 0.5
        sent = 0
        while n.clock.now() < t_start + 10.0:
            resp = await n.update(term=1, ops=[op(1, 1)] if sent == 0 else [],
                                  preceding=(0, 0) if sent == 0 else (1, 1))
            sent += 1
            if reject:
                assert resp["error"]["code"] == "UNKNOWN_ERROR"
            else:
                assert status_error(resp) is None
            n.clock.advance(0.5)
            await n.settle()
        starts = [e for e in n.c.events.read()["events"]
                  if e["event"] in ("pre_election_started", "election_started")]
        if not reject:
            assert starts == []
            return
        assert n.c.counters.updates_rejected == sent and n.c.log.last_index == 0
        assert starts[0]["t"] == pytest.approx(fd_first, abs=1e-6)
        assert all(e["event"] == "pre_election_started" and e["term"] == 0 and e["ask_term"] == 1
                   for e in starts)
        gaps = [b["t"] - a["t"] for a, b in zip(starts, starts[1:], strict=False)]
        assert len(gaps) >= 4 and all(1.5 - 1e-6 <= g <= 2.25 + 1e-6 for g in gaps), gaps
    run_node(tmp_path, body, seed=seeded(39))


def test_ok_reply_carries_the_term_the_update_was_accepted_in(tmp_path: Path) -> None:
    """Spec 4.1 steps 15-16 (RaftConsensus::UpdateReplica fills the response before waiting for
    durability): if the follower's own term rises while the append is being made durable (a
    pre-election won late starts an election), the OK reply still carries the accepted term; a
    higher one would make the leader abort on an OK reply with a higher term (found by the
    safety suite: the leader exited 70)."""
    async def body(n: Node) -> None:
        n.writer.hold()
        task = asyncio.create_task(n.update(term=2, ops=ops(1, 1, 2), committed=0))
        await n.settle()
        assert not task.done() and n.c.term == 2
        n.c.adopt_term(3, reason="our own election started during the durability wait")
        n.writer.release()
        resp = await task
        assert status_error(resp) is None, resp
        assert resp["responder_term"] == 2, resp
    run_node(tmp_path, body)
