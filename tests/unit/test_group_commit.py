"""Leader group commit (issue #14): client writes queued while the WAL's append thread is busy become
one WAL append with one completion, as one kuduraft PeerMessageQueue::AppendOperations of several messages is;
the leader's own vote then counts the batch's last entry (per write again when notification
latency is injected, where kuduraft's per-round notifications are observable). The follower's appends and
truncations are never merged into it, so WAL order stays the order of the calls."""

from __future__ import annotations

import asyncio
import logging
import random
import threading
from pathlib import Path
from typing import Any, NoReturn

from consensus_fixture import ModelFollower, Node, pump, run_node

from nodes.faultpoints import FaultPoints
from nodes.flags import Flags
from nodes.log import OpId
from nodes.storage import WalWriter
from nodes.wal import LogEntry, Wal

LOG = logging.getLogger("test.group_commit")


def noop(i: int) -> LogEntry:
    return LogEntry(1, i, "NO_OP", None)



def record_local_votes(n: Node) -> list[OpId]:
    """The OpIds the leader counts its own vote for, in order (the queue's method, wrapped)."""
    votes: list[OpId] = []
    count_vote = n.c.queue.local_peer_appended

    def counting(opid: OpId) -> None:
        votes.append(opid)
        count_vote(opid)
    setattr(n.c.queue, "local_peer_appended", counting)  # noqa: B010 - instance patch
    return votes

def gated_writer(tmp_path: Path) -> tuple[WalWriter, Wal, threading.Event, threading.Event]:
    """A WalWriter whose first write, once on the append thread, waits for ``release``
    (``started`` says it got there): meanwhile later appends wait on the loop."""
    flags = Flags()
    wal = Wal(tmp_path / "wal", fsync=False)
    wal.recover()
    writer = WalWriter(wal, flags, FaultPoints(flags, random.Random(3), LOG), random.Random(3), LOG)
    started, release = threading.Event(), threading.Event()
    real = writer._append_blocking

    def gated(batch: list[LogEntry], *delays: float) -> None:
        started.set()
        release.wait(10)
        real(batch, *delays)
    setattr(writer, "_append_blocking", gated)  # noqa: B010 - a disk the test holds
    writer.start()
    return writer, wal, started, release


def test_an_append_with_the_thread_idle_is_handed_over_in_the_call(tmp_path: Path) -> None:
    """kuduraft's Log::AsyncAppend wakes the append thread itself (log.cc): the write starts
    while the loop has not turned once since the call (issue #14)."""
    async def main() -> bool:
        writer, wal, started, release = gated_writer(tmp_path)
        try:
            fut = writer.append([noop(1)], merge=True)
            on_thread = started.wait(10)  # blocks the loop: no turn can hand it over meanwhile
            release.set()
            await asyncio.wait_for(fut, 5)
            return on_thread
        finally:
            await writer.stop()
            wal.close()

    assert asyncio.run(main())


def test_merge_joins_appends_still_waiting_and_nothing_else(tmp_path: Path) -> None:
    async def main() -> tuple[list[bool], int, list[int]]:
        writer, wal, started, release = gated_writer(tmp_path)
        try:
            first = writer.append([noop(1)], merge=True)  # the thread is idle: goes at once
            assert await asyncio.to_thread(started.wait, 10)
            a = writer.append([noop(2)], merge=True)  # the thread is busy: waits
            b = writer.append([noop(3)], merge=True)  # joins a: still waiting
            c = writer.append([noop(4)])               # not a merge: its own item
            d = writer.append([noop(5)], merge=True)   # cannot join a (c is queued after it)
            t = writer.truncate_after(5)
            e = writer.append([noop(6)], merge=True)   # never joins anything before a truncation
            release.set()
            await asyncio.wait_for(asyncio.gather(first, a, b, c, d, t, e), 5)
            f = writer.append([noop(7)], merge=True)   # e was written already: a new item
            await asyncio.wait_for(f, 5)
            same = [first is not a, a is b, c is not a, d is not a, e is not d, f is not e]
            return same, wal.stats.entries, [x.index for x in Wal(tmp_path / "wal", fsync=False).recover()]
        finally:
            await writer.stop()
            wal.close()

    same, entries, recovered = asyncio.run(main())
    assert same == [True] * 6
    assert entries == 7 and recovered == [1, 2, 3, 4, 5, 6, 7]


def test_writes_queued_while_the_wal_is_busy_make_one_append_and_one_local_vote(tmp_path: Path) -> None:
    """Five client writes queued while the append thread cannot take them: one WAL append
    (group commit), the leader's own ack covers the last of them, and after a majority they all
    commit and resolve in order."""
    async def body(n: Node) -> None:
        await n.win_election()
        f2 = ModelFollower("n2")
        await pump(n, {"n2": f2})
        assert n.c.commit_index == 1
        appends_before = n.wal.stats.appends
        votes = record_local_votes(n)
        n.writer.hold()  # the thread is busy as far as the queue can tell
        futs = [n.c.replicate({"op": "put", "key": "k", "value": str(i)}) for i in range(5)]
        n.writer.release()
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


class _Exit(Exception):
    pass


def test_a_failed_write_on_the_append_thread_is_fatal_and_releases_no_waiter(tmp_path: Path) -> None:
    """An OSError on the append thread comes back to the loop: exit 74 with the record
    ``wal_write_failed`` (as before, with asyncio.to_thread), and the batch's waiters are never
    told it is durable."""
    codes: list[int] = []

    def exit_fn(code: int) -> NoReturn:
        codes.append(code)
        raise _Exit(code)

    async def main() -> tuple[FaultPoints, asyncio.Future[None], BaseException | None]:
        flags = Flags()
        faults = FaultPoints(flags, random.Random(3), LOG, exit_fn=exit_fn, data_dir=tmp_path, uuid="n1")
        wal = Wal(tmp_path / "wal", fsync=False)
        wal.recover()
        writer = WalWriter(wal, flags, faults, random.Random(3), LOG)

        def failing(batch: list[LogEntry], *_: float) -> None:
            raise OSError(5, "Input/output error")
        setattr(writer, "_append_blocking", failing)  # noqa: B010 - the disk fails
        writer.start()
        loop = asyncio.get_running_loop()
        raised: asyncio.Future[BaseException] = loop.create_future()

        def handler(_loop: asyncio.AbstractEventLoop, ctx: dict[str, Any]) -> None:
            if not raised.done():  # the outcome comes back in a loop callback: the stub's exit
                raised.set_result(ctx["exception"])
        loop.set_exception_handler(handler)
        fut = writer.append([noop(1)], merge=True)
        error: BaseException | None = await asyncio.wait_for(raised, 5)
        await writer.stop()
        wal.close()
        return faults, fut, error

    faults, fut, error = asyncio.run(main())
    assert isinstance(error, _Exit) and codes == [74]
    assert faults.fatal_record is not None and faults.fatal_record["what"] == "wal_write_failed"
    assert not fut.done()


def test_stop_waits_for_the_write_on_the_append_thread(tmp_path: Path) -> None:
    """stop() returns only once a write already handed to the append thread has ended, so the
    node can close the WAL right after (its fd is never closed under a write)."""
    ended: list[str] = []

    async def main() -> None:
        flags = Flags()
        wal = Wal(tmp_path / "wal", fsync=False)
        wal.recover()
        writer = WalWriter(wal, flags, FaultPoints(flags, random.Random(3), LOG), random.Random(3), LOG)
        release = threading.Event()
        started = threading.Event()
        real = writer._append_blocking

        def slow(batch: list[LogEntry], *delays: float) -> None:
            started.set()
            release.wait(10)
            real(batch, *delays)
            ended.append("write")
        setattr(writer, "_append_blocking", slow)  # noqa: B010 - a slow disk
        writer.start()
        writer.append([noop(1)], merge=True)
        assert await asyncio.to_thread(started.wait, 10)
        stopping = asyncio.ensure_future(writer.stop())
        early, _ = await asyncio.wait({stopping}, timeout=0.05)  # it must not return while writing
        assert not early
        release.set()
        await asyncio.wait_for(stopping, 10)
        ended.append("stopped")
        wal.close()

    asyncio.run(main())
    assert ended == ["write", "stopped"]


def test_with_notification_latency_every_write_keeps_its_own_vote(tmp_path: Path) -> None:
    """consensus_inject_latency_ms_in_notifications > 0: kuduraft's leader counts a local vote
    per Replicate (each may make its own delayed commit notification), so no merging then."""
    async def body(n: Node) -> None:
        await n.win_election()
        f2 = ModelFollower("n2")
        await pump(n, {"n2": f2})
        n.flags.set("consensus_inject_latency_ms_in_notifications", 5)
        votes = record_local_votes(n)
        for i in range(3):
            n.c.replicate({"op": "put", "key": "k", "value": str(i)})
        await n.drain()
        n.clock.run_due()
        assert votes == [OpId(1, 2), OpId(1, 3), OpId(1, 4)]
    run_node(tmp_path, body)


def test_on_durable_runs_in_the_hand_back_a_turn_before_a_done_callback(tmp_path: Path) -> None:
    """The leader's own vote is counted from the WAL's hand-back (issue #14), not from a done
    callback of the write's future, which asyncio runs a loop turn later."""
    async def main() -> list[object]:
        writer, wal, started, release = gated_writer(tmp_path)
        order: list[object] = []
        try:
            fut = writer.append([noop(1)], merge=True)
            fut.add_done_callback(lambda f: order.append("done callback"))
            writer.on_durable(fut, lambda: order.append(("on_durable", fut.done())))
            release.set()
            await asyncio.wait_for(fut, 5)
            await asyncio.sleep(0)
            try:
                writer.on_durable(fut, lambda: None)
            except ValueError as e:
                order.append(str(e))
            return order
        finally:
            await writer.stop()
            wal.close()

    assert asyncio.run(main()) == [("on_durable", True), "done callback",
                                   "on_durable: not a pending write of this writer"]


def test_a_write_after_the_thread_went_idle_pays_only_the_wake_up_latency(tmp_path: Path) -> None:
    """log.cc, Log::AppendThread::GoIdle: the lifecycle latency is drawn when the append thread
    goes idle and again when it wakes. The going-idle pause starts when the last group ends, so a
    write arriving after it is over waits for the wake-up draw alone (at most the flag's
    maximum), not two draws in a row (review finding on the issue #14 writer)."""
    max_ms = 40

    async def main() -> list[float]:
        flags = Flags({"log_inject_thread_lifecycle_latency_ms": max_ms})
        wal = Wal(tmp_path / "wal", fsync=False)
        wal.recover()
        writer = WalWriter(wal, flags, FaultPoints(flags, random.Random(3), LOG), random.Random(11), LOG)
        paid: list[float] = []
        real = writer._append_blocking

        def recording(batch: list[LogEntry], delay_s: float, lifecycle_s: float = 0.0) -> None:
            paid.append(lifecycle_s)
            real(batch, delay_s, lifecycle_s)
        setattr(writer, "_append_blocking", recording)  # noqa: B010 - observe what each write pays
        writer.start()
        loop = asyncio.get_running_loop()
        try:
            for i in range(1, 13):
                await asyncio.wait_for(writer.append([noop(i)]), 5)
                # until the going-idle pause drawn at the end of this write is over (node time)
                await asyncio.sleep(max(0.0, getattr(writer, "_idle_pause_ends", 0.0) - loop.time()) + 0.001)
            return paid
        finally:
            await writer.stop()
            wal.close()

    paid = asyncio.run(main())
    assert len(paid) == 12 and all(0.0 <= s <= max_ms / 1000 for s in paid), paid
    assert any(s > 0 for s in paid)
