"""Leader group commit (issue #14): client writes arriving in one loop turn become one WAL append
with one completion, as kuduraft's RaftConsensus::ReplicateBatch appends a batch of rounds at
once; the leader's own vote then counts the batch's last entry. The follower's appends and
truncations are never merged into it, so WAL order stays the order of the calls."""

from __future__ import annotations

import asyncio
import logging
import random
from pathlib import Path

from consensus_fixture import ModelFollower, Node, pump, run_node

from nodes.faultpoints import FaultPoints
from nodes.flags import Flags
from nodes.log import OpId
from nodes.storage import WalWriter
from nodes.wal import LogEntry, Wal

LOG = logging.getLogger("test.group_commit")


def noop(i: int) -> LogEntry:
    return LogEntry(1, i, "NO_OP", None)


def test_merge_joins_appends_still_queued_and_nothing_else(tmp_path: Path) -> None:
    async def main() -> tuple[list[bool], int, list[int]]:
        flags = Flags()
        wal = Wal(tmp_path / "wal", fsync=False)
        wal.recover()
        writer = WalWriter(wal, flags, FaultPoints(flags, random.Random(3), LOG), random.Random(3), LOG)
        writer.start()
        try:
            a = writer.append([noop(1)], merge=True)
            b = writer.append([noop(2)], merge=True)  # joins a: still queued
            c = writer.append([noop(3)])               # not a merge: its own item
            d = writer.append([noop(4)], merge=True)   # cannot join a (c is queued after it)
            t = writer.truncate_after(4)
            e = writer.append([noop(5)], merge=True)   # never joins anything before a truncation
            await asyncio.wait_for(asyncio.gather(a, b, c, d, t, e), 5)
            f = writer.append([noop(6)], merge=True)   # e was written already: a new item
            await asyncio.wait_for(f, 5)
            same = [a is b, c is not a, d is not a, e is not d, f is not e]
            return same, wal.stats.entries, [x.index for x in Wal(tmp_path / "wal", fsync=False).recover()]
        finally:
            await writer.stop()
            wal.close()

    same, entries, recovered = asyncio.run(main())
    assert same == [True] * 5
    assert entries == 6 and recovered == [1, 2, 3, 4, 5, 6]


def test_writes_of_one_turn_make_one_wal_append_and_one_local_vote(tmp_path: Path) -> None:
    """Five client writes in one turn: one WAL append (group commit), the leader's own ack covers
    the last of them, and after a majority they all commit and resolve in order."""
    async def body(n: Node) -> None:
        await n.win_election()
        f2 = ModelFollower("n2")
        await pump(n, {"n2": f2})
        assert n.c.commit_index == 1
        appends_before = n.wal.stats.appends
        votes: list[OpId] = []
        count_vote = n.c.queue.local_peer_appended

        def counting(opid: OpId) -> None:
            votes.append(opid)
            count_vote(opid)
        setattr(n.c.queue, "local_peer_appended", counting)  # noqa: B010 - instance patch
        futs = [n.c.replicate({"op": "put", "key": "k", "value": str(i)}) for i in range(5)]
        await n.drain()
        n.clock.run_due()
        assert n.wal.stats.appends == appends_before + 1 and n.c.durable_index == 6
        assert votes == [OpId(1, 6)]  # one local vote for the batch, not one per write
        local = n.c.queue.peers["n1"]
        assert tuple(local.last_received) == (1, 6)
        await pump(n, {"n2": f2})
        assert [f.result()["index"] for f in futs] == [2, 3, 4, 5, 6]
        assert n.c.commit_index == 6 and f2.log == [(1, i) for i in range(1, 7)]
    run_node(tmp_path, body)
