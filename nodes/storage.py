"""Durable writes off the event loop: WAL appends and truncations handed to one append thread, in order."""

from __future__ import annotations

import asyncio
import logging
import queue
import random
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial

from nodes.faultpoints import FaultPoints
from nodes.flags import Flags
from nodes.wal import LogEntry, Wal


@dataclass
class _Item:
    entries: list[LogEntry] = field(default_factory=list)
    truncate_after: int | None = None
    done: asyncio.Future[None] | None = None
    then: list[Callable[[], None]] = field(default_factory=list)


class _AppendThread:
    """kuduraft's Log::AppendThread (log.cc): one thread doing the WAL's blocking writes, in order.

    It replaces ``asyncio.to_thread`` per batch (issue #14): no executor work item, context copy
    or concurrent future per batch; the caller gets the outcome through ``on_done`` on this
    thread and hands it to the loop itself."""

    def __init__(self) -> None:
        self._jobs: queue.SimpleQueue[tuple[Callable[[], None], Callable[[Exception | None], None]] | None]
        self._jobs = queue.SimpleQueue()
        self._thread: threading.Thread | None = None

    @property
    def started(self) -> bool:
        return self._thread is not None

    def run(self, job: Callable[[], None], on_done: Callable[[Exception | None], None]) -> None:
        """Run ``job`` after the jobs queued before it; ``on_done(error or None)`` follows it."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._main, name="wal-append", daemon=True)
            self._thread.start()
        self._jobs.put((job, on_done))

    def close(self) -> None:
        """Let the thread end once the jobs queued so far are done."""
        if self._thread is not None:
            self._jobs.put(None)
            self._thread = None

    def _main(self) -> None:
        while True:
            item = self._jobs.get()
            if item is None:
                return
            job, on_done = item
            error: Exception | None = None
            try:
                job()
            except Exception as e:  # OSError from the disk, WalError/ValueError from the WAL
                error = e
            on_done(error)


class WalWriter:
    """Hands WAL appends and truncations to the append thread; what queues while it writes goes
    as the next group, with one fsync (group commit under load).

    kuduraft's Log::AsyncAppend (log.cc) puts the batch on the log's queue and wakes the append
    thread at once; the thread drains everything queued (Log::AppendThread::DoWork,
    BlockingDrainTo), appends it, syncs once and runs each batch's callback (HandleGroup). Here
    the queue lives on the loop: an append with nothing ahead of it and the thread idle is
    handed over in the call (issue #14: an Update's fsync, or the leader's own, no longer waits
    a loop turn for a writer task before it starts); otherwise it waits, and the outcome's
    hand-back submits everything waiting as the next group. One group is on the thread at a
    time, so the fault draws, which read the WAL's segment state, stay on the loop.

    Appends and truncations keep their order, so a follower's truncation of a conflicting
    suffix can never be overtaken by an older append.
    """

    def __init__(self, wal: Wal, flags: Flags, faults: FaultPoints, rng: random.Random,
                 logger: logging.Logger) -> None:
        self._wal = wal
        self._flags = flags
        self._faults = faults
        self._rng = rng
        self._logger = logger
        self._waiting: list[_Item] = []  # queued on the loop, not yet handed to the thread
        self._open: _Item | None = None  # a merge=True append still waiting, open to more entries
        self._busy: asyncio.Future[None] | None = None  # resolves when the group on the thread ends
        self._on_thread: list[_Item] = []
        self._stopped = False
        self._idle = True  # the thread went idle after its last group (lifecycle latency)
        self._idle_pause_ends = 0.0  # loop time when the going-idle pause of the thread ends
        self._thread = _AppendThread()
        self.batches = 0
        self.entries_written = 0

    def start(self) -> None:
        """Accept writes from now on (they are handed over on the running loop)."""
        self._stopped = False

    async def stop(self) -> None:
        """Hand nothing more to the thread, then wait for a write already on it to end, so the
        WAL can be closed after this returns. What still waits is never written."""
        self._stopped = True
        if self._busy is not None:
            await asyncio.shield(self._busy)
        self._thread.close()

    def append(self, entries: Sequence[LogEntry], merge: bool = False) -> asyncio.Future[None]:
        """Queue entries; the returned future resolves once they are fsynced.

        ``merge=True`` (the leader's own appends): while the previous merge=True append still
        waits for the thread, nothing queued after it, the entries join it and its future is
        returned, so the client writes that arrive while the thread writes become one append
        with one completion (one local vote), as one PeerMessageQueue::AppendOperations of
        several messages is one log append with one callback (consensus_queue.cc), and the
        append thread syncs each group it drained once (log.cc, HandleGroup). A caller that
        gets the same future again must not count on one completion per call. Fault points
        drawn on the way (a segment start, an injected IO error) may end the process here."""
        item = self._open
        if merge and item is not None and item.done is not None and not item.done.done():
            item.entries.extend(entries)
            return item.done
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        item = _Item(entries=list(entries), done=fut)
        self._waiting.append(item)
        self._open = item if merge else None
        self._kick()
        return fut

    def truncate_after(self, index: int) -> asyncio.Future[None]:
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiting.append(_Item(truncate_after=index, done=fut))
        self._open = None
        self._kick()
        return fut

    def on_durable(self, fut: asyncio.Future[None], fn: Callable[[], None]) -> None:
        """Run ``fn`` in the callback that brings the write of ``fut`` (a future ``append``
        returned, not yet resolved) back, right after ``fut`` resolves: one loop turn before a
        done-callback of ``fut`` would run (issue #14: the leader's own vote)."""
        for it in (*self._on_thread, *self._waiting):
            if it.done is fut:
                it.then.append(fn)
                return
        raise ValueError("on_durable: not a pending write of this writer")

    def _kick(self) -> None:
        """Hand the next group to the thread if it is idle."""
        if self._stopped or self._busy is not None or not self._waiting:
            return
        self._submit(self._take_group())

    def _take_group(self) -> list[_Item]:
        """The waiting items up to the first truncation (a truncation goes alone)."""
        first = self._waiting[0]
        n = 1
        if first.truncate_after is None:
            while n < len(self._waiting) and self._waiting[n].truncate_after is None:
                n += 1
        items, self._waiting = self._waiting[:n], self._waiting[n:]
        if self._open is not None and any(it is self._open for it in items):
            self._open = None  # on its way to the thread: no more entries may join it
        return items

    def _submit(self, items: list[_Item]) -> None:
        """A failed local append or truncation is fatal, as in kuduraft (log.cc): exit 74 (fatal
        storage) with a record, never 85 (the status of the fault_crash_* flags)."""
        truncate = items[0].truncate_after
        batch = [e for it in items for e in it.entries]
        if self._wal.next_write_starts_segment:
            self._new_segment_faults()
        if truncate is None and self._faults.hit("log_inject_io_error_on_append_fraction"):
            # log.cc, Log::DoAppend: MAYBE_RETURN_FAILURE(..., IOError), and the append fails.
            self._faults.storage_fatal("wal_append_io_error", "injected WAL IO error "
                                       "(log_inject_io_error_on_append_fraction)")
        lifecycle_s = 0.0
        loop = asyncio.get_running_loop()
        if self._idle:
            # log.cc, Log::AppendThread::GoIdle, then the wake-up: the thread's lifecycle
            # latency, slept on the thread before it writes. The going-idle pause began when the
            # last group ended (``_settle``): a write pays only what is left of it, plus the wake.
            lifecycle_s = max(0.0, self._idle_pause_ends - loop.time()) + self._lifecycle_latency_s()
        job: Callable[[], None]
        if truncate is not None:
            job = partial(self._truncate_blocking, truncate, lifecycle_s)
        else:
            job = partial(self._append_blocking, batch, self._sync_latency_s(), lifecycle_s)
        self._busy = loop.create_future()
        self._on_thread = items
        self._idle = False
        self._thread.run(job, lambda error: _call_soon_threadsafe(loop, self._settle, items, error))

    def _settle(self, items: list[_Item], error: Exception | None) -> None:
        """On the loop, in the callback that brings the outcome back: the group's waiters are
        released, and whatever waited meanwhile goes to the thread as the next group."""
        busy, self._busy = self._busy, None
        self._on_thread = []
        if busy is not None and not busy.done():
            busy.set_result(None)
        loop = asyncio.get_running_loop()
        try:
            if error is not None:
                # OSError from the disk, WalError/ValueError from a refused write. In the node
                # this does not return; after a test's fault stub that returns, the waiters are
                # released as on success.
                self._faults.storage_fatal("wal_write_failed", f"WAL write failed: {error!r}")
            for it in items:
                if it.done is not None and not it.done.done():
                    it.done.set_result(None)
                for fn in it.then:
                    try:
                        fn()
                    except Exception as e:  # reported as a future's callback would be
                        loop.call_exception_handler({"message": "WAL completion callback failed",
                                                     "exception": e})
            if items[0].truncate_after is None:
                self.batches += 1
                self.entries_written += sum(len(it.entries) for it in items)
        finally:
            self._idle = not self._waiting
            if self._idle:
                self._idle_pause_ends = loop.time() + self._lifecycle_latency_s()
            self._kick()

    def _new_segment_faults(self) -> None:
        """The fault points of starting a segment, drawn on the loop before the write.

        log.cc, Log::PreAllocateNewSegment fails with an injected IOError at
        log_inject_io_error_on_preallocate_fraction, and the roll-over that needs the segment
        then fails the append (fatal, exit 74). log_util.cc, WritableLogSegment::
        WriteHeaderAndOpen crashes at fault_crash_before_write_log_segment_header (exit 85)."""
        if self._faults.hit("log_inject_io_error_on_preallocate_fraction"):
            self._faults.storage_fatal("wal_preallocate_io_error", "injected IO error "
                                       "preallocating a WAL segment "
                                       "(log_inject_io_error_on_preallocate_fraction)")
        self._faults.maybe_fault("fault_crash_before_write_log_segment_header")

    def _lifecycle_latency_s(self) -> float:
        """log.cc, Log::AppendThread::GoIdle: MAYBE_INJECT_RANDOM_LATENCY(
        log_inject_thread_lifecycle_latency_ms), a random 0..N ms pause of the append thread
        each time it goes idle or wakes up again."""
        max_ms = int(self._flags["log_inject_thread_lifecycle_latency_ms"])
        return self._rng.uniform(0, max_ms) / 1000.0 if max_ms > 0 else 0.0

    def _sync_latency_s(self) -> float:
        if not self._flags["log_inject_latency"]:
            return 0.0
        ms = self._rng.gauss(float(self._flags["log_inject_latency_ms_mean"]),
                             float(self._flags["log_inject_latency_ms_stddev"]))
        return max(0.0, ms) / 1000.0

    def _append_blocking(self, batch: list[LogEntry], delay_s: float, lifecycle_s: float = 0.0) -> None:
        """Write the batch, sleep the injected sync latency (on the writer thread), then fsync:
        kuduraft sleeps inside ``Log::Sync``, after the batch was written (see ``Wal.append``)."""
        if lifecycle_s > 0:
            time.sleep(lifecycle_s)  # injected append-thread latency (a fault, not a wait)
        self._wal.append(batch, before_sync=(lambda: time.sleep(delay_s)) if delay_s > 0 else None)

    def _truncate_blocking(self, index: int, lifecycle_s: float) -> None:
        if lifecycle_s > 0:
            time.sleep(lifecycle_s)
        self._wal.truncate_after(index)


def _call_soon_threadsafe(loop: asyncio.AbstractEventLoop, fn: Callable[..., None], *args: object) -> None:
    """From the append thread; a loop already closed has nobody left to tell."""
    try:
        loop.call_soon_threadsafe(fn, *args)
    except RuntimeError:
        pass
