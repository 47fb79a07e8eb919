"""Durable consensus metadata (current term and vote), replaced atomically on every change, and
the writer that flushes it off the event loop."""

from __future__ import annotations

import asyncio
import json
import os
import zlib
from collections.abc import Callable
from pathlib import Path

from nodes.durable import fsync_dir, write_all

META_FILE = "consensus-meta.json"


class MetadataError(Exception):
    """The metadata file exists but cannot be read or trusted; the message names the file."""


def _check(term: int, voted_for: str | None) -> None:
    if not isinstance(term, int) or isinstance(term, bool) or term < 0:
        raise ValueError(f"term must be a non-negative int, got {term!r}")
    if voted_for is not None and not isinstance(voted_for, str):
        raise ValueError(f"voted_for must be a str or None, got {voted_for!r}")


def _canonical(term: int, voted_for: str | None) -> bytes:
    return json.dumps({"term": term, "voted_for": voted_for}, separators=(",", ":"),
                      sort_keys=True).encode("utf-8")


class MetadataStore:
    """``term`` and ``voted_for`` in ``directory/consensus-meta.json``, with a CRC.

    ``save`` is blocking (two fsyncs) and durable on return: a vote or term may be acknowledged
    only after it. A crash mid-save leaves either the old or the new file, never a mix.
    """

    def __init__(self, directory: Path) -> None:
        self._dir = Path(directory)
        self.path = self._dir / META_FILE
        self._tmp = self._dir / (META_FILE + ".tmp")
        self.flush_count = 0
        """Completed saves (kuduraft's tests count consensus-metadata flushes)."""

    @property
    def directory(self) -> Path:
        """The node's data directory (the metadata file lives at its top)."""
        return self._dir

    def load(self) -> tuple[int, str | None]:
        """(term, voted_for); (0, None) when never saved. MetadataError when unreadable or corrupt."""
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return 0, None
        except OSError as e:
            raise MetadataError(f"cannot read consensus metadata {self.path}: {e.strerror}") from None
        try:
            doc = json.loads(raw.decode("utf-8"))
        except ValueError as e:
            raise MetadataError(f"consensus metadata {self.path} is not JSON: {e}") from None
        if not isinstance(doc, dict) or set(doc) != {"term", "voted_for", "crc32"}:
            raise MetadataError(f"consensus metadata {self.path}: expected keys term, voted_for, crc32")
        term, voted_for, crc = doc["term"], doc["voted_for"], doc["crc32"]
        if not isinstance(term, int) or isinstance(term, bool) or term < 0:
            raise MetadataError(f"consensus metadata {self.path}: bad term {term!r}")
        if voted_for is not None and not isinstance(voted_for, str):
            raise MetadataError(f"consensus metadata {self.path}: bad voted_for {voted_for!r}")
        if crc != zlib.crc32(_canonical(term, voted_for)):
            raise MetadataError(f"consensus metadata {self.path}: checksum mismatch")
        return term, voted_for

    def save(self, term: int, voted_for: str | None) -> None:
        """Durably replace the metadata (write temp, fsync, rename, fsync directory).

        ValueError for a negative term; OSError from the disk propagates (the old file stays).
        """
        _check(term, voted_for)
        doc = {"term": term, "voted_for": voted_for, "crc32": zlib.crc32(_canonical(term, voted_for))}
        data = json.dumps(doc, separators=(",", ":")).encode("utf-8")
        self._dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(self._tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            write_all(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(self._tmp, self.path)
        fsync_dir(self._dir)
        self.flush_count += 1


class MetadataFlushFailed(Exception):
    """A flush a caller waited for failed (the node is exiting 74; only tests see this)."""


class MetadataWriter:
    """Flushes ``MetadataStore.save`` on a worker thread, one save at a time, newest state wins.

    The node has one thread, so a save on the loop (two fsyncs) stalled every timer, heartbeat
    and RPC while the disk was slow; kuduraft flushes under its consensus lock
    (consensus_meta.cc, ConsensusMetadata::Flush, called from raft_consensus.cc's
    SetCurrentTermUnlocked and SetVotedForCurrentTermUnlocked) while its reactor threads keep
    running. Each ``request`` gets a version; whoever sends something that depends on it awaits
    ``wait_durable(version)``. Changes made while a save runs are covered by one more save of the
    newest (term, voted_for), so a burst costs at most two saves, not one per change.

    A failed save is fatal (kuduraft's ``CHECK_OK(cmeta_->Flush())``): ``on_error`` runs on the
    loop and does not return in the node (exit 74).
    """

    def __init__(self, store: MetadataStore, on_error: Callable[[Exception], None]) -> None:
        self.store = store
        self._on_error = on_error
        self.requested = 0
        """Version of the newest in-memory (term, voted_for) handed to ``request``."""
        self.durable = 0
        """Highest version known to be on disk."""
        self._latest: tuple[int, str | None] | None = None
        self._waiters: list[tuple[int, asyncio.Future[None]]] = []
        self._task: asyncio.Task[None] | None = None
        self._failed: Exception | None = None

    def request(self, term: int, voted_for: str | None) -> int:
        """Schedule a flush of this state; returns its version. ValueError for a bad state."""
        _check(term, voted_for)
        self.requested += 1
        self._latest = (term, voted_for)
        if self._task is None and self._failed is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="cmeta-writer")
        return self.requested

    async def wait_durable(self, version: int | None = None) -> None:
        """Return once ``version`` (default: the newest requested) is on disk."""
        want = self.requested if version is None else version
        if self._failed is not None:
            raise MetadataFlushFailed(str(self._failed))
        if self.durable >= want:
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append((want, fut))
        await fut

    async def _run(self) -> None:
        try:
            while self.durable < self.requested:
                version, state = self.requested, self._latest
                assert state is not None
                try:
                    await asyncio.to_thread(self.store.save, *state)
                except Exception as e:  # OSError from the disk
                    self._failed = e
                    self._fail_waiters(e)
                    self._on_error(e)
                    return
                self.durable = version
                self._wake()
        finally:
            self._task = None

    def _wake(self) -> None:
        keep: list[tuple[int, asyncio.Future[None]]] = []
        for want, fut in self._waiters:
            if want <= self.durable:
                if not fut.done():
                    fut.set_result(None)
            else:
                keep.append((want, fut))
        self._waiters = keep

    def _fail_waiters(self, e: Exception) -> None:
        waiters, self._waiters = self._waiters, []
        for _, fut in waiters:
            if not fut.done():
                fut.set_exception(MetadataFlushFailed(f"consensus metadata flush failed: {e!r}"))

    async def close(self) -> None:
        """Wait for a flush under way, so its thread never outlives the loop that awaits it."""
        task = self._task
        if task is not None:
            try:
                await asyncio.shield(task)
            except Exception:  # already reported through on_error
                pass
