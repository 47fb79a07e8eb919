"""Consensus-metadata flushes off the event loop (issue #11, item 7; spec B30, B32 and the
durability of term and vote in §4.4): the loop keeps running while a save is slow, nothing that
depends on a term or vote leaves before it is durable, flushes coalesce, and a failed flush is
fatal (exit 74)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from pathlib import Path

import pytest
from consensus_fixture import Node, op, run_node, status_error

from nodes.fatal import EXIT_FATAL_STORAGE
from nodes.meta import MetadataFlushFailed, MetadataStore, MetadataWriter

GUARD_S = 5.0
"""Real-time bound on any wait below, so a broken gate fails instead of hanging."""


class GatedSave:
    """Replaces ``MetadataStore.save`` on one store: each save announces itself, then blocks (on
    whatever thread runs it) until the test opens the gate, or ``hold_s`` passes."""

    def __init__(self, store: MetadataStore, hold_s: float = GUARD_S) -> None:
        self._save: Callable[[int, str | None], None] = store.save
        self.hold_s = hold_s
        self.started = threading.Event()
        self.gate = threading.Event()
        self.running = False
        self.saved: list[tuple[int, str | None]] = []
        store.save = self  # type: ignore[method-assign]

    def __call__(self, term: int, voted_for: str | None) -> None:
        self.running = True
        self.started.set()
        try:
            self.gate.wait(self.hold_s)
            self._save(term, voted_for)
            self.saved.append((term, voted_for))
        finally:
            self.running = False

    async def wait_started(self) -> None:
        assert await asyncio.to_thread(self.started.wait, GUARD_S), "no metadata save started"


async def spin(rounds: int = 20) -> None:
    """Let every ready task run (no clock moves, no flush is waited for)."""
    for _ in range(rounds):
        await asyncio.sleep(0)


def test_event_loop_keeps_running_while_a_metadata_save_is_slow(tmp_path: Path) -> None:
    """A save that holds its fsync 0.3 s must not hold the loop: a callback scheduled after the
    save began runs while the save is still under way (before the fix it ran only after)."""
    async def body(n: Node) -> None:
        slow = GatedSave(n.meta, hold_s=0.3)
        vote = asyncio.get_running_loop().create_task(n.vote(candidate="n2", term=1))
        await slow.wait_started()
        fired = asyncio.Event()
        during: list[bool] = []

        def callback() -> None:
            during.append(slow.running)
            fired.set()
        asyncio.get_running_loop().call_soon(callback)
        await asyncio.wait_for(fired.wait(), GUARD_S)
        assert during == [True], "the loop was blocked for the whole save"
        slow.gate.set()
        assert (await asyncio.wait_for(vote, GUARD_S))["vote_granted"] is True
        assert n.meta.load() == (1, "n2") and n.meta.flush_count == 1
    run_node(tmp_path, body)


def test_vote_grant_is_answered_only_after_its_flush(tmp_path: Path) -> None:
    """§4.4 / B30: the yes vote leaves only once the vote is on disk; a second candidate asking in the
    same term while that flush is in flight sees the vote already cast (never two votes in one
    term), and its answer waits for the same flush."""
    async def body(n: Node) -> None:
        gated = GatedSave(n.meta)
        loop = asyncio.get_running_loop()
        first = loop.create_task(n.vote(candidate="n2", term=1))
        await gated.wait_started()
        await spin()
        assert not first.done(), "vote answered before the flush completed"
        assert (n.c.term, n.c.voted_for) == (1, "n2") and n.meta.load() == (0, None)
        second = loop.create_task(n.vote(candidate="n3", term=1))
        await spin()
        assert not second.done()
        gated.gate.set()
        r1, r2 = await asyncio.wait_for(asyncio.gather(first, second), GUARD_S)
        assert r1["vote_granted"] is True and r1["responder_term"] == 1
        assert r2["vote_granted"] is False and r2["error"]["code"] == "ALREADY_VOTED"
        assert n.meta.load() == (1, "n2") and gated.saved == [(1, "n2")]
    run_node(tmp_path, body)


def test_update_adopting_a_higher_term_replies_after_the_term_flush(tmp_path: Path) -> None:
    """§4.1 / B27: a follower that adopts the leader's higher term answers only once the term is
    durable, and appends none of the request's ops before that (kuduraft flushes in
    HandleTermAdvanceUnlocked, under its lock, before it prepares the ops)."""
    async def body(n: Node) -> None:
        gated = GatedSave(n.meta)
        upd = asyncio.get_running_loop().create_task(n.update(term=2, ops=[op(2, 1)]))
        await gated.wait_started()
        await spin()
        assert not upd.done(), "update answered before the term flush completed"
        assert n.c.term == 2 and n.c.log.last_index == 0
        gated.gate.set()
        resp = await asyncio.wait_for(upd, GUARD_S)
        assert status_error(resp) is None and resp["responder_term"] == 2
        assert n.meta.load() == (2, None) and n.c.log.last_index == 1
    run_node(tmp_path, body)


def test_update_in_a_term_adopted_elsewhere_waits_for_that_terms_flush(tmp_path: Path) -> None:
    """A term adopted by another path (here a reply or vote carrying a higher term) whose flush
    is still running: an Update of that same term appends nothing and names no leader until the
    term is durable, as kuduraft's synchronous flush under its lock guarantees (review finding:
    the Update used to wait only for a term it adopted itself)."""
    async def body(n: Node) -> None:
        gated = GatedSave(n.meta)
        n.c.adopt_term(2, reason="a reply with a higher term")
        await gated.wait_started()
        upd = asyncio.get_running_loop().create_task(n.update(term=2, ops=[op(2, 1)]))
        await spin()
        assert not upd.done(), "update answered before the term flush completed"
        assert n.c.log.last_index == 0 and n.c.leader_uuid is None, "acted on a term not yet durable"
        assert n.meta.load() == (0, None)
        gated.gate.set()
        resp = await asyncio.wait_for(upd, GUARD_S)
        assert status_error(resp) is None and resp["responder_term"] == 2
        assert n.meta.load() == (2, None) and n.c.log.last_index == 1
    run_node(tmp_path, body)


def test_own_election_during_an_updates_term_flush_makes_the_update_stale(tmp_path: Path) -> None:
    """The await on the term flush lets other work run (kuduraft's lock would hold it off): if our
    own election raises the term meanwhile, the Update is answered INVALID_TERM in the new term,
    never OK, and its ops are not appended; both flushes end on disk, the newest last."""
    async def body(n: Node) -> None:
        gated = GatedSave(n.meta)
        upd = asyncio.get_running_loop().create_task(n.update(term=2, ops=[op(2, 1)]))
        await gated.wait_started()
        await spin()
        n.elections.start(pre=False)  # the failure detector fires while the flush runs
        assert n.c.term == 3 and n.c.voted_for == "n1"
        gated.gate.set()
        resp = await asyncio.wait_for(upd, GUARD_S)
        assert status_error(resp) == "INVALID_TERM" and resp["responder_term"] == 3
        assert n.c.log.last_index == 0 and n.meta.load() == (3, "n1")
        assert gated.saved == [(2, None), (3, "n1")]
    run_node(tmp_path, body)


def test_candidate_sends_vote_requests_only_after_its_term_and_vote_flush(tmp_path: Path) -> None:
    """§4.3: a candidate asks for votes in term T only once T and its own vote are durable."""
    async def body(n: Node) -> None:
        gated = GatedSave(n.meta)
        n.elections.start(pre=False)
        await gated.wait_started()
        await spin()
        assert n.vote_requests() == [] and n.c.term == 1 and n.c.voted_for == "n1"
        gated.gate.set()
        await n.settle()
        votes = n.vote_requests()
        assert sorted(v.uuid for v in votes) == ["n2", "n3"]
        assert all(v.body["candidate_term"] == 1 for v in votes)
        assert n.meta.load() == (1, "n1")
    run_node(tmp_path, body)


def test_changes_during_a_flush_coalesce_into_one_more_save(tmp_path: Path) -> None:
    """Three changes made while a save runs cost one more save, of the newest state, and every
    waiter is released by it (version numbers, not states, are waited for)."""
    async def main() -> None:
        store = MetadataStore(tmp_path)
        gated = GatedSave(store)
        errors: list[Exception] = []
        w = MetadataWriter(store, errors.append)
        v1 = w.request(1, None)
        await gated.wait_started()
        versions = [w.request(2, None), w.request(2, "n2"), w.request(3, None)]
        assert versions == [v1 + 1, v1 + 2, v1 + 3] and w.durable < v1
        waiters = [asyncio.create_task(w.wait_durable(v)) for v in (v1, *versions)]
        gated.gate.set()
        await asyncio.wait_for(asyncio.gather(*waiters), GUARD_S)
        assert gated.saved == [(1, None), (3, None)] and store.flush_count == 2
        assert w.durable == w.requested == versions[-1] and errors == []
        assert MetadataStore(tmp_path).load() == (3, None)
        await w.wait_durable()  # nothing pending: returns at once
        await w.close()
    asyncio.run(main())


def test_failed_metadata_flush_is_fatal_exit_74(tmp_path: Path) -> None:
    """kuduraft CHECKs every cmeta flush (CHECK_OK(cmeta_->Flush())): an IO error on the writer
    thread ends the node with the fatal-storage status 74 and a record, and the vote it would have
    granted is never answered."""
    async def body(n: Node) -> None:
        def failing_save(term: int, voted_for: str | None) -> None:
            raise OSError(5, "Input/output error")
        n.meta.save = failing_save  # type: ignore[method-assign]
        with pytest.raises(MetadataFlushFailed):
            await n.vote(candidate="n2", term=1)
        assert n.exits == [EXIT_FATAL_STORAGE]
        record = n.c.faults.fatal_record
        assert record is not None and record["what"] == "cmeta_flush_failed"
        assert "Input/output error" in record["message"]
        assert n.meta.load() == (0, None)
    run_node(tmp_path, body, drain_on_close=False)
