"""Leader commit and apply (nodes/consensus.py with the real queue and Peers): B13-B15, client futures,
LeadershipLost."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from consensus_fixture import (
    SINGLE,
    ModelFollower,
    Node,
    follower_reply,
    op,
    ops,
    pump,
    run_node,
    status_error,
)

from nodes.api import NodeApi
from nodes.consensus import LeadershipLost, NotLeader, Role


async def leader_with_old_entries(n: Node, hold_wal: bool = False) -> None:
    """n1 holds 1..3 of term 1 (uncommitted) from n2, then wins term 2 and appends its NO_OP at 4
    (which stays in memory only when ``hold_wal``)."""
    assert status_error(await n.update(term=1, ops=ops(1, 1, 3))) is None
    if hold_wal:
        n.writer.hold()
    await n.win_election()
    assert n.c.term == 2 and n.c.log.get(4).kind == "NO_OP" and n.c.commit_index == 0


def test_b14_new_leader_commits_nothing_until_its_noop_is_on_a_majority(tmp_path: Path) -> None:
    """B14: entries of an older term on a majority do not commit; the leader's commit index moves only once
    its own NO_OP is on a majority (here: the leader's own WAL append completes the majority)."""
    async def body(n: Node) -> None:
        await leader_with_old_entries(n, hold_wal=True)  # the NO_OP is not durable locally yet
        n.transport.take("n2").reply(follower_reply("n2", 2, (1, 3), current_leader=(0, 0),
                                                    error=("PRECEDING_ENTRY_DIDNT_MATCH", "index mismatch")))
        req = n.transport.take("n2")  # sent at once after the LMP mismatch, with the NO_OP
        assert req.body["preceding_id"] == [1, 3] and [o["index"] for o in req.body["ops"]] == [4]
        req.reply(follower_reply("n2", 2, (2, 4)))
        n.clock.run_due()
        await n.settle()
        assert n.c.queue.marks.majority_replicated_index == 3  # 1..3 are on a majority ...
        assert n.c.queue.committed_index == 0 and n.c.commit_index == 0  # ... but not of this term
        n.writer.release()
        await n.drain()
        n.clock.run_due()
        assert n.c.commit_index == 4 and n.c.applied_index == 4
        assert n.c.kv.data == {"k1": "v1", "k2": "v2", "k3": "v3"}
        # B13-style: the advanced commit index is pushed to the follower right away (no ops).
        push = n.transport.take("n2")
        assert push.body["committed_index"] == 4 and push.body["ops"] == []
    run_node(tmp_path, body)


def test_b13_ack_completing_majority_is_followed_at_once_by_commit_request(tmp_path: Path) -> None:
    """B13: the ack that completes a majority is answered immediately by a request carrying the new commit
    index to that follower; the other follower learns it on its next exchange."""
    async def body(n: Node) -> None:
        await leader_with_old_entries(n)
        await n.drain()
        n.transport.take("n2").reply(follower_reply("n2", 2, (1, 3), current_leader=(0, 0),
                                                    error=("PRECEDING_ENTRY_DIDNT_MATCH", "index mismatch")))
        n.transport.take("n2").reply(follower_reply("n2", 2, (2, 4)))
        follow_up = n.transport.take("n2")
        assert follow_up.body["committed_index"] == 4 and follow_up.body["ops"] == []
        n3_first = n.transport.take("n3")  # still the negotiation round, committed 0
        assert n3_first.body["committed_index"] == 0
        n.clock.run_due()
        assert n.c.commit_index == 4
    run_node(tmp_path, body)


def test_b15_acks_of_peers_not_ok_never_count_and_commit_never_decreases(tmp_path: Path) -> None:
    """B15: a peer whose last exchange was not OK does not count toward the majority, whatever it claims to
    hold; and the leader's commit index never decreases when the majority watermark moves back."""
    async def body(n: Node) -> None:
        await n.win_election()  # empty log: NO_OP at (1, 1)
        fut = n.c.replicate({"op": "put", "key": "a", "value": "1"})
        await n.drain()
        # n2 claims the whole log but its exchange is an LMP mismatch: not counted.
        n.transport.take("n2").reply(follower_reply("n2", 1, (1, 2), current_leader=(0, 0),
                                                    error=("PRECEDING_ENTRY_DIDNT_MATCH", "test")))
        n.transport.take("n3").reply({"responder_uuid": "n3", "responder_term": 1,
                                      "error": {"code": "UNKNOWN_ERROR", "message": "test"}})
        n.clock.run_due()
        assert n.c.queue.committed_index == 0 and not fut.done()
        n.transport.take("n2").reply(follower_reply("n2", 1, (1, 2)))
        n.clock.run_due()
        assert n.c.commit_index == 2 and (await fut) == {"index": 2}
        # n2 now fails; n3 comes back with an old position: the watermark moves back, the commit does not.
        n.transport.take("n2").reply({"responder_uuid": "n2", "responder_term": 1,
                                      "error": {"code": "UNKNOWN_ERROR", "message": "test"}})
        n.c.replicate({"op": "put", "key": "b", "value": "2"})
        await n.drain()
        n.clock.advance(0.7)  # heartbeats: n3 had failed, so it gets a status-only request
        n.transport.take("n3").reply(follower_reply("n3", 1, (1, 1)))
        n.clock.run_due()
        assert n.c.queue.marks.majority_replicated_index == 1
        assert n.c.queue.committed_index == 2 and n.c.commit_index == 2
    run_node(tmp_path, body)


def test_client_ops_resolve_with_kv_results_after_commit(tmp_path: Path) -> None:
    """Client op futures resolve, after commit only, with the state machine's result and the log index."""
    async def body(n: Node) -> None:
        await n.win_election()
        f2, f3 = ModelFollower("n2"), ModelFollower("n3")
        await pump(n, {"n2": f2})
        assert n.c.commit_index == 1
        client_ops = [{"op": "put", "key": "a", "value": "1"}, {"op": "get", "key": "a"},
                      {"op": "cas", "key": "a", "from": "1", "to": "2"},
                      {"op": "cas", "key": "a", "from": "1", "to": "3"},
                      {"op": "append", "key": "l", "value": "x"}, {"op": "append", "key": "l", "value": "y"},
                      {"op": "get", "key": "missing"}]
        futs = [n.c.replicate(o) for o in client_ops]
        await n.drain()
        n.clock.run_due()
        assert not any(f.done() for f in futs)  # durable on the leader alone is not committed
        await pump(n, {"n2": f2, "n3": f3})
        results = [f.result() for f in futs]
        assert results == [{"index": 2}, {"value": "1", "index": 3},
                           {"swapped": True, "value": "2", "index": 4},
                           {"swapped": False, "value": "2", "index": 5}, {"value": "x", "index": 6},
                           {"value": "xy", "index": 7}, {"value": None, "index": 8}]
        assert n.c.commit_index == n.c.applied_index == 8
        assert f2.log == f3.log == [(1, i) for i in range(1, 9)] and f2.commit == 8
    run_node(tmp_path, body)


def test_replicate_on_a_follower_raises_not_leader_with_hint(tmp_path: Path) -> None:
    async def body(n: Node) -> None:
        assert status_error(await n.update(term=1, caller="n3")) is None
        with pytest.raises(NotLeader) as e:
            n.c.replicate({"op": "put", "key": "a", "value": "1"})
        assert e.value.leader == "n3"
    run_node(tmp_path, body)


def test_step_down_fails_pending_ops_with_leadership_lost(tmp_path: Path) -> None:
    async def body(n: Node) -> None:
        await n.win_election()
        fut = n.c.replicate({"op": "put", "key": "a", "value": "1"})
        n.c.step_down()
        with pytest.raises(LeadershipLost):
            await fut
        assert n.c.peers == {} and not n.c.queue.leader_mode
    run_node(tmp_path, body)


def test_new_leader_overwrites_uncommitted_op_which_fails_with_leadership_lost(tmp_path: Path) -> None:
    """A deposed leader's uncommitted entry is truncated by the next leader's log; its client gets
    LeadershipLost (indeterminate), never a result."""
    async def body(n: Node) -> None:
        await n.win_election()
        await pump(n, {"n2": ModelFollower("n2")})
        assert n.c.commit_index == 1
        fut = n.c.replicate({"op": "put", "key": "a", "value": "lost"})
        await n.drain()
        resp = await n.update(term=2, caller="n3", preceding=(1, 1), ops=[op(2, 2, "NO_OP")], committed=2)
        assert status_error(resp) is None
        assert n.c.role is Role.FOLLOWER and n.c.log.get(2).kind == "NO_OP" and n.c.log.get(2).term == 2
        with pytest.raises(LeadershipLost):
            await asyncio.wait_for(fut, 1.0)
        assert n.c.commit_index == 2 and "a" not in n.c.kv.data
        await n.drain()
        assert n.wal.last_index == 2 and n.wal.stats.truncations == 1
    run_node(tmp_path, body)


def test_commit_notifications_are_delayed_by_injected_latency(tmp_path: Path) -> None:
    """consensus_inject_latency_ms_in_notifications delays commit visibility by U[0, N) ms, in order."""
    async def body(n: Node) -> None:
        await n.win_election()
        await n.drain()
        n.transport.take("n2").reply(follower_reply("n2", 1, (1, 1)))
        n.clock.run_due()
        assert n.c.queue.committed_index == 1 and n.c.commit_index == 0
        n.clock.advance(0.2)
        assert n.c.commit_index == 1
    run_node(tmp_path, body, flags={"consensus_inject_latency_ms_in_notifications": 200})


def test_entry_the_state_machine_cannot_apply_does_not_wedge_the_node(tmp_path: Path) -> None:
    """A put of a number then an append to it (both valid client ops) used to raise TypeError inside
    apply and wedge every replica on that entry; now the append answers an error and later ops apply."""
    async def body(n: Node) -> None:
        await n.win_election()
        f2 = ModelFollower("n2")
        futs = [n.c.replicate(o) for o in ({"op": "put", "key": "a", "value": 5},
                                           {"op": "append", "key": "a", "value": "x"},
                                           {"op": "put", "key": "b", "value": "ok"})]
        await pump(n, {"n2": f2})
        put, append, after = (f.result() for f in futs)
        assert "error" in append and "not a string" in append["error"]
        assert after == {"index": 4} and n.c.kv.data == {"a": 5, "b": "ok"} and n.c.applied_index == 4
    run_node(tmp_path, body)


def test_follower_applies_garbage_payloads_without_raising(tmp_path: Path) -> None:
    """A follower applies whatever a (buggy) leader committed without raising: unhashable keys, unknown ops."""
    async def body(n: Node) -> None:
        payloads = [{"op": "put", "key": ["x"], "value": 1}, {"op": "nope"}, {"key": "k"},
                    {"op": "cas", "key": "k"}]
        resp = await n.update(term=1, ops=[op(1, i + 1, "WRITE", p) for i, p in enumerate(payloads)],
                              committed=len(payloads))
        assert status_error(resp) is None
        assert n.c.applied_index == len(payloads) and n.c.kv.data == {}
    run_node(tmp_path, body)


def test_kv_api_answers_after_commit_redirects_on_follower_and_is_indeterminate_on_loss(tmp_path: Path) -> None:
    """The HTTP KV path over the same consensus: 200 with the result once committed; 421 with the leader hint
    on a follower; 503 indeterminate when leadership is lost before commit."""
    async def body(n: Node) -> None:
        api = NodeApi(n.c, n.service)
        await n.win_election()
        task = asyncio.create_task(api.handle("POST", "/kv/put", {}, b'{"key": "a", "value": "1"}'))
        await n.settle()
        assert not task.done()
        await pump(n, {"n2": ModelFollower("n2")})
        resp = await task
        assert resp.status == 200 and json.loads(resp.body) == {"ok": True, "index": 2}
        bad = await api.handle("POST", "/kv/append", {}, b'{"key": "a"}')
        assert bad.status == 400 and n.c.log.last_index == 2  # invalid ops never reach the log
        task = asyncio.create_task(api.handle("POST", "/kv/get", {}, b'{"key": "a"}'))
        await n.settle()
        n.c.step_down()
        resp = await task
        assert resp.status == 503 and json.loads(resp.body)["indeterminate"] is True
        assert status_error(await n.update(term=n.c.term, caller="n3", preceding=(1, 3))) is None
        resp = await api.handle("POST", "/kv/get", {}, b'{"key": "a"}')
        doc = json.loads(resp.body)
        assert resp.status == 421 and doc["leader"] == "n3" and doc["leader_http"] == "127.0.0.1:7203"
    run_node(tmp_path, body)


def test_b16_all_replicated_index_needs_every_peer_ok_and_resets_on_new_leadership(tmp_path: Path) -> None:
    """B16: the all-replicated index moves only while every tracked peer's last exchange is OK, and is back
    to 0 when peers are tracked anew (a new term of leadership)."""
    async def body(n: Node) -> None:
        await n.win_election()
        f2, f3 = ModelFollower("n2"), ModelFollower("n3")
        n.c.replicate({"op": "put", "key": "a", "value": "1"})
        await pump(n, {"n2": f2})
        assert n.c.commit_index == 2 and n.c.queue.marks.all_replicated_index == 0  # n3 never answered OK
        await pump(n, {"n2": f2, "n3": f3})
        assert n.c.queue.marks.all_replicated_index == 2
        n.clock.advance(0.7)  # heartbeats carry it
        assert {s.body["all_replicated_index"] for s in n.transport.pending()} == {2}
        n.c.step_down()
        mark = len(n.transport.sent)
        await n.win_election()
        firsts = n.transport.sent[mark:]
        assert len(firsts) == 2 and {s.body["all_replicated_index"] for s in firsts} == {0}
    run_node(tmp_path, body)


def test_b14_leader_self_ack_is_counted_behind_queued_notifications(tmp_path: Path) -> None:
    """B14 (commit path): the leader's own durable ack is counted on the serial observer token, like
    kuduraft's PeerMessageQueue::LocalPeerAppendFinished (async_local_vote_count), so it waits behind
    the commit notification already delayed there by consensus_inject_latency_ms_in_notifications."""
    async def body(n: Node) -> None:
        n.c.rng.uniform = lambda a, b: b  # type: ignore[method-assign]  # every delay = the max, 1 s
        await n.drain()  # the NO_OP is durable: self-ack counted, its commit notification queued
        t0 = n.clock.now()
        assert n.c.queue.marks.committed_index == 1 and n.c.commit_index == 0
        fut = n.c.replicate({"op": "put", "key": "a", "value": "1"})
        await n.drain()
        assert n.c.queue.marks.committed_index == 1  # the second self-ack waits on the token
        n.clock.advance_to(t0 + 1.0)
        assert n.c.commit_index == 1 and n.c.queue.marks.committed_index == 2
        n.clock.advance_to(t0 + 2.0)
        assert n.c.commit_index == 2 and (await fut) == {"index": 2}
    run_node(tmp_path, body, config=SINGLE,
             flags={"consensus_inject_latency_ms_in_notifications": 1000})


def test_b19_a_failed_follower_stays_in_the_config_and_keeps_its_heartbeat(tmp_path: Path) -> None:
    """B19, whole item at the leader's consensus level: with default flags a follower whose every
    exchange fails for 400 s (past the 300 s follower_unavailable_considered_failed_sec) turns
    FAILED and yet stays: the voters, the majority size and the Peer are unchanged, no CONFIG op
    is ever appended, writes keep committing with the other follower, and the failed follower
    still gets one status-only request per heartbeat (gaps 375-625 ms between the leader's own
    ``request`` events). kuduraft consensus_queue.cc, UpdatePeerHealthUnlocked only notifies a
    health change when raft_prepare_replacement_before_eviction (default true), and
    raft_consensus.cc, NotifyFailedFollower would be the only evicting path; this node refuses
    both eviction flags (nodes/flags.py REFUSED_FLAGS). Before, B19 was checked on the queue and
    Peer alone (LeaderFixture), where no config change could have appeared anyway."""
    async def body(n: Node) -> None:
        await n.win_election()
        n3 = ModelFollower("n3")
        voters, majority = list(n.c.voters), n.c.queue.majority_size
        futs = []
        t0 = n.clock.now()
        step = 0
        while n.clock.now() < t0 + 400.0:
            if step % 100 == 0:
                futs.append(n.c.replicate({"op": "put", "key": "k", "value": str(step)}))
                await n.drain()
            for s in n.transport.pending():
                if s.hop == "n2":
                    s.fail()
                else:
                    s.reply(n3.answer(s.body))
            n.clock.advance(0.1)
            await n.settle(3)
            step += 1
        await pump(n, {"n3": n3})
        assert n.c.queue.peers["n2"].health.value == "FAILED"
        assert n.c.voters == voters and n.c.queue.majority_size == majority
        assert "n2" in n.c.peers and not n.c.peers["n2"].closed
        kinds = {n.c.log.get(i).kind for i in range(1, n.c.log.last_index + 1)}
        assert "CONFIG" not in kinds, kinds
        assert all(f.done() and not f.exception() for f in futs)
        assert n.c.commit_index == n.c.log.last_index
        late = [e for e in n.c.events.read()["events"]
                if e.get("peer") == "n2" and e["event"] == "request" and e["t"] > t0 + 390.0]
        assert late and all(e["request_kind"] == "status_only" and e["trigger"] == "heartbeat"
                            for e in late)
        gaps = [b["t"] - a["t"] for a, b in zip(late, late[1:], strict=False)]
        assert len(gaps) >= 14 and all(0.375 - 1e-6 <= g <= 0.625 + 1e-6 for g in gaps), gaps
    run_node(tmp_path, body)
