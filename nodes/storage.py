"""Durable writes off the event loop: group-committed WAL appends and truncations, in order."""

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
    """One writer task: consecutive appends merge into one fsync (group commit under load).

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
        self._queue: asyncio.Queue[_Item] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None
        self._open: _Item | None = None  # a merge=True append still queued, open to more entries
        self._thread = _AppendThread()
        self.batches = 0
        self.entries_written = 0

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="wal-writer")

    async def stop(self) -> None:
        """Cancel the writer task, then wait for a write already on the append thread to end,
        so the WAL can be closed after this returns."""
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None
        if self._thread.started:
            loop = asyncio.get_running_loop()
            idle: asyncio.Future[None] = loop.create_future()
            self._thread.run(lambda: None, lambda _: _call_soon_threadsafe(loop, idle.set_result, None))
            await idle
            self._thread.close()

    def append(self, entries: Sequence[LogEntry], merge: bool = False) -> asyncio.Future[None]:
        """Queue entries; the returned future resolves once they are fsynced.

        ``merge=True`` (the leader's own appends): while the previous merge=True append is still
        queued, nothing queued after it, the entries join it and its future is returned, so the
        client writes that arrive in one loop turn become one append with one completion, as
        one PeerMessageQueue::AppendOperations of several messages is one log append with one
        callback (consensus_queue.cc; log.cc, Log::AppendThread::HandleGroup syncs each group
        once). A caller that gets the same future again must not count on one completion per
        call."""
        item = self._open
        if merge and item is not None and item.done is not None and not item.done.done():
            item.entries.extend(entries)
            return item.done
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        item = _Item(entries=list(entries), done=fut)
        self._queue.put_nowait(item)
        self._open = item if merge else None
        return fut

    def truncate_after(self, index: int) -> asyncio.Future[None]:
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait(_Item(truncate_after=index, done=fut))
        self._open = None
        return fut

    def _take(self, item: _Item) -> _Item:
        """The writer took ``item`` off the queue: no more entries may join it."""
        if item is self._open:
            self._open = None
        return item

    async def _run(self) -> None:
        while True:
            if self._queue.empty():  # going idle, then woken by the next append
                await self._pause(self._lifecycle_latency_s())
                first = self._take(await self._queue.get())
                await self._pause(self._lifecycle_latency_s())
            else:
                first = self._take(self._queue.get_nowait())
            items = [first]
            while not self._queue.empty() and first.truncate_after is None:
                nxt = self._take(self._queue.get_nowait())
                if nxt.truncate_after is not None:
                    await self._write(items)
                    items = [nxt]
                    break
                items.append(nxt)
            await self._write(items)

    async def _write(self, items: list[_Item]) -> None:
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
        job: Callable[[], None]
        if truncate is not None:
            job = partial(self._wal.truncate_after, truncate)
        else:
            job = partial(self._append_blocking, batch, self._sync_latency_s())
        loop = asyncio.get_running_loop()
        written: asyncio.Future[None] = loop.create_future()

        def settle(error: Exception | None) -> None:
            """On the loop, in the callback that brings the outcome back: the batch's waiters are
            released here, not one turn later by this task."""
            if written.done():
                return  # this task was cancelled (the node is stopping)
            if error is not None:
                written.set_exception(error)
                return
            for it in items:
                if it.done is not None and not it.done.done():
                    it.done.set_result(None)
            written.set_result(None)

        self._thread.run(job, lambda error: _call_soon_threadsafe(loop, settle, error))
        try:
            await written
        except Exception as e:  # OSError from the disk, WalError/ValueError from a refused write
            self._faults.storage_fatal("wal_write_failed", f"WAL write failed: {e!r}")
            # settle released the waiters on success; after a failure that did not end the
            # process (a test's fault stub), they are released here as before.
            for it in items:
                if it.done is not None and not it.done.done():
                    it.done.set_result(None)
        if truncate is None:
            self.batches += 1
            self.entries_written += len(batch)

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

    @staticmethod
    async def _pause(delay_s: float) -> None:
        if delay_s > 0:
            await asyncio.sleep(delay_s)  # injected writer latency (a fault, not a wait)

    def _append_blocking(self, batch: list[LogEntry], delay_s: float) -> None:
        """Write the batch, sleep the injected sync latency (on the writer thread), then fsync:
        kuduraft sleeps inside ``Log::Sync``, after the batch was written (see ``Wal.append``)."""
        self._wal.append(batch, before_sync=(lambda: time.sleep(delay_s)) if delay_s > 0 else None)


def _call_soon_threadsafe(loop: asyncio.AbstractEventLoop, fn: Callable[..., None], *args: object) -> None:
    """From the append thread; a loop already closed has nobody left to tell."""
    try:
        loop.call_soon_threadsafe(fn, *args)
    except RuntimeError:
        pass
