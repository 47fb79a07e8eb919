"""Write-ahead log: checksummed entry and truncation records in numbered segment files."""

from __future__ import annotations

import json
import logging
import os
import re
import struct
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nodes.durable import fsync_dir, fsync_file, write_all

KINDS = frozenset({"NO_OP", "WRITE", "CONFIG"})

# Record header: payload length, crc32(payload), crc32(the first 8 header bytes). The header CRC
# means a damaged length is reported as corruption instead of looking like a torn last record
# (which recovery would cut off, silently dropping every good record after it).
_HEADER = struct.Struct(">III")
HEADER_BYTES = _HEADER.size
_SEGMENT_RE = re.compile(r"^wal-(\d{6,})\.log$")


@dataclass(frozen=True)
class LogEntry:
    """One Raft log entry; ``payload`` is the operation (None for NO_OP)."""

    term: int
    index: int
    kind: str  # "NO_OP" | "WRITE" | "CONFIG"
    payload: dict[str, Any] | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"term": self.term, "index": self.index, "kind": self.kind}
        if self.payload is not None:
            out["payload"] = self.payload
        return out

    def json_text(self) -> str:
        """``to_json()`` as compact ASCII JSON, encoded once per entry: the log cache's size
        accounting and the WAL record both need it (issue #14: it was encoded twice per entry on
        every node). The payload is never mutated once the entry exists."""
        text: str | None = self.__dict__.get("_json_text")
        if text is None:
            text = json.dumps(self.to_json(), separators=(",", ":"), allow_nan=False)
            self.__dict__["_json_text"] = text  # a cache beside the frozen fields, not a field
        return text

    @classmethod
    def from_json(cls, raw: Any) -> LogEntry:
        """Inverse of ``to_json``; ValueError naming the bad field for anything malformed."""
        if not isinstance(raw, dict):
            raise ValueError(f"log entry must be an object, got {type(raw).__name__}")
        term, index, kind, payload = raw.get("term"), raw.get("index"), raw.get("kind"), raw.get("payload")
        if not isinstance(term, int) or isinstance(term, bool) or term < 0:
            raise ValueError(f"log entry: bad term {term!r}")
        if not isinstance(index, int) or isinstance(index, bool) or index < 1:
            raise ValueError(f"log entry: bad index {index!r}")
        if kind not in KINDS:
            raise ValueError(f"log entry: unknown kind {kind!r}")
        if payload is not None and not isinstance(payload, dict):
            raise ValueError(f"log entry: payload must be an object or absent, got {type(payload).__name__}")
        return cls(term, index, kind, payload)


class WalError(Exception):
    """The WAL cannot be used: closed, not recovered yet, or an earlier write failed."""


class WalCorruption(WalError):
    """A record that cannot be trusted and is not a torn tail; the message names file and offset."""


@dataclass
class WalStats:
    """Counters since construction, for benchmarks and tests."""

    appends: int = 0
    entries: int = 0
    truncations: int = 0
    fsyncs: int = 0
    bytes: int = 0
    segments_created: int = 0
    torn_tails_repaired: int = 0


def encode_record(obj: dict[str, Any]) -> bytes:
    """One record: header + compact JSON payload."""
    payload = json.dumps(obj, separators=(",", ":"), allow_nan=False).encode("ascii")
    head = struct.pack(">II", len(payload), zlib.crc32(payload))
    return head + struct.pack(">I", zlib.crc32(head)) + payload


def encode_entry(entry: LogEntry) -> bytes:
    """``encode_record(entry.to_json())``, from the entry's cached JSON text."""
    payload = entry.json_text().encode("ascii")
    head = struct.pack(">II", len(payload), zlib.crc32(payload))
    return head + struct.pack(">I", zlib.crc32(head)) + payload


def segment_name(number: int) -> str:
    return f"wal-{number:06d}.log"


@dataclass(frozen=True)
class _Torn:
    """The rest of the last segment, from ``offset``, is a torn tail (``what`` says why)."""

    offset: int
    what: str


def _only_zeros(data: bytes, start: int) -> bool:
    """True when nothing but zero bytes follows ``start``.

    A crash can leave a file extended with zeros past the last completed write. No record can
    hide in zeros (an all-zero header fails its checksum), so a damaged record followed only by
    zeros is still the tail.
    """
    return not data[start:].strip(b"\0")


def _scan(path: Path, data: bytes, is_last: bool) -> tuple[list[tuple[int, dict[str, Any]]], _Torn | None]:
    """Decode the records of one segment as (offset, payload object), plus any torn tail.

    In the last segment, a damaged record with nothing but zeros (or nothing) after it is a
    torn tail. Any other damage raises WalCorruption.
    """
    out: list[tuple[int, dict[str, Any]]] = []
    pos, size = 0, len(data)

    def damaged(what: str, torn_ok: bool) -> _Torn:
        if is_last and torn_ok:
            return _Torn(pos, what)
        where = "" if is_last else " (not the last segment)"
        raise WalCorruption(f"{path}: offset {pos}: {what}{where}")

    while pos < size:
        if size - pos < HEADER_BYTES:
            return out, damaged(f"incomplete record header ({size - pos} bytes)", torn_ok=True)
        length, crc, head_crc = _HEADER.unpack_from(data, pos)
        if zlib.crc32(data[pos:pos + 8]) != head_crc:
            return out, damaged("record header checksum mismatch",
                                torn_ok=_only_zeros(data, pos + HEADER_BYTES))
        end = pos + HEADER_BYTES + length
        if end > size:
            return out, damaged(f"record of {length} bytes runs past end of file "
                                f"({size - pos - HEADER_BYTES} present)", torn_ok=True)
        payload = data[pos + HEADER_BYTES:end]
        if zlib.crc32(payload) != crc:
            return out, damaged("record checksum mismatch", torn_ok=_only_zeros(data, end))
        try:
            obj = json.loads(payload)
        except ValueError as e:
            raise WalCorruption(f"{path}: offset {pos}: checksum ok but payload is not JSON: {e}") from None
        if not isinstance(obj, dict):
            raise WalCorruption(f"{path}: offset {pos}: record is not a JSON object")
        out.append((pos, obj))
        pos = end
    return out, None


class _Replay:
    """Applies records in order, keeping the entries contiguous (the recovery invariant)."""

    def __init__(self) -> None:
        self.entries: list[LogEntry] = []
        self.last_index = 0

    def apply(self, path: Path, offset: int, obj: dict[str, Any]) -> None:
        if "truncate_after" in obj:
            cut = obj["truncate_after"]
            if not isinstance(cut, int) or isinstance(cut, bool) or cut < 0:
                raise WalCorruption(f"{path}: offset {offset}: bad truncation marker {cut!r}")
            if self.entries:
                del self.entries[max(0, cut - self.entries[0].index + 1):]
            self.last_index = min(self.last_index, cut)
            return
        try:
            entry = LogEntry.from_json(obj)
        except ValueError as e:
            raise WalCorruption(f"{path}: offset {offset}: {e}") from None
        if (self.entries or self.last_index) and entry.index != self.last_index + 1:
            raise WalCorruption(f"{path}: offset {offset}: entry index {entry.index} does not follow "
                                f"{self.last_index} (log not contiguous)")
        self.entries.append(entry)
        self.last_index = entry.index


class Wal:
    """The node's durable log. ``recover()`` first, then ``append``/``truncate_after``.

    Blocking and not thread-safe: the node calls it from one worker thread at a time
    (``asyncio.to_thread``). After a failed write or fsync the WAL refuses further use (WalError):
    what reached the disk is unknown, so the node must stop and recover on restart.
    """

    def __init__(self, directory: Path, segment_bytes: int = 64 * 2**20, fsync: bool = True,
                 log: logging.Logger | None = None) -> None:
        if segment_bytes <= 0:
            raise ValueError(f"segment_bytes must be positive, got {segment_bytes}")
        self._dir = Path(directory)
        self._segment_bytes = segment_bytes
        self._fsync = fsync
        self._log = log or logging.getLogger("nodes.wal")
        self._fd: int | None = None
        self._segment_no = 0
        self._segment_size = 0
        self._last_index = 0
        self._state = "new"  # new -> open -> closed | failed
        self._failure = ""
        self.stats = WalStats()

    @property
    def last_index(self) -> int:
        """Index of the last durable entry (0 when empty)."""
        return self._last_index

    @property
    def next_write_starts_segment(self) -> bool:
        """Whether the next append or truncation creates a new segment file first (kuduraft
        writes a segment header then, and preallocates the segment before)."""
        return self._fd is None or self._segment_size >= self._segment_bytes

    def segment_paths(self) -> list[Path]:
        """The segment files, oldest first."""
        return [p for _, p in self._segments()]

    def _segments(self) -> list[tuple[int, Path]]:
        if not self._dir.is_dir():
            return []
        found = [(int(m.group(1)), self._dir / m.group(0))
                 for m in map(_SEGMENT_RE.match, os.listdir(self._dir)) if m]
        return sorted(found)

    def recover(self) -> list[LogEntry]:
        """Replay every segment; return the log's entries in index order.

        A torn last record of the last segment is cut off (the file is truncated and fsynced,
        a warning logged). Any other damage, a missing segment or a gap in indexes raises
        WalCorruption and leaves the files untouched. Call once, before any write.
        """
        if self._state != "new":
            raise WalError(f"recover() called on a WAL that is {self._state}")
        self._dir.mkdir(parents=True, exist_ok=True)
        segments = self._segments()
        for (prev, _), (no, path) in zip(segments, segments[1:], strict=False):
            if no != prev + 1:
                raise WalCorruption(f"{path}: segment {segment_name(prev + 1)} is missing before it")
        replay = _Replay()
        torn: _Torn | None = None
        for i, (_, path) in enumerate(segments):
            data = path.read_bytes()
            records, torn = _scan(path, data, is_last=i == len(segments) - 1)
            for offset, obj in records:
                replay.apply(path, offset, obj)
            self._segment_size = len(data) if torn is None else torn.offset
        if torn is not None:
            # Only now that the whole log replayed cleanly: never modify a log we refuse.
            self._repair(segments[-1][1], torn)
        self._last_index = replay.last_index
        if segments:
            self._segment_no, path = segments[-1]
            self._fd = os.open(path, os.O_WRONLY | os.O_APPEND)
        self._state = "open"
        return replay.entries

    def _repair(self, path: Path, torn: _Torn) -> None:
        self._log.warning("wal: %s: cutting torn tail at offset %d (%d bytes dropped): %s",
                          path, torn.offset, path.stat().st_size - torn.offset, torn.what)
        fd = os.open(path, os.O_WRONLY)
        try:
            os.ftruncate(fd, torn.offset)
            fsync_file(fd, path)
        finally:
            os.close(fd)
        self.stats.torn_tails_repaired += 1

    def append(self, entries: Sequence[LogEntry], before_sync: Callable[[], None] | None = None) -> None:
        """Write ``entries`` (contiguous, following ``last_index``) and fsync once (group commit).

        ``before_sync`` runs between the write and the fsync: the injected sync latency sits
        there, as in kuduraft (log.cc, ``Log::Sync`` sleeps for ``log_inject_latency`` after
        ``Log::AppendThread::HandleGroup`` wrote the batch), so during it the records are in the
        page cache but not durable: a SIGKILL keeps them, a power cut does not.
        ValueError for a non-contiguous batch (nothing written); OSError from the disk
        propagates and makes the WAL unusable.
        """
        self._check_open()
        if not entries:
            return
        expected = self._last_index + 1 if self._last_index else entries[0].index
        for entry in entries:
            if entry.index != expected:
                raise ValueError(f"wal append: entry index {entry.index}, expected {expected}")
            expected += 1
        self._write(b"".join(encode_entry(e) for e in entries), before_sync)
        self._last_index = entries[-1].index
        self.stats.appends += 1
        self.stats.entries += len(entries)

    def truncate_after(self, index: int) -> None:
        """Durably drop every entry with index > ``index`` (a marker record, fsynced).

        A no-op when nothing lies above ``index``.
        """
        self._check_open()
        if index < 0:
            raise ValueError(f"wal truncate_after: negative index {index}")
        if index >= self._last_index:
            return
        self._write(encode_record({"truncate_after": index}))
        self._last_index = index
        self.stats.truncations += 1

    def close(self) -> None:
        """Release the file; idempotent. Everything appended was already fsynced."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        if self._state in ("new", "open"):
            self._state = "closed"

    def __enter__(self) -> Wal:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _check_open(self) -> None:
        if self._state == "failed":
            raise WalError(f"WAL in {self._dir} is unusable after a failed write: {self._failure}")
        if self._state != "open":
            raise WalError(f"WAL in {self._dir} is {self._state}; call recover() before writing")

    def _write(self, blob: bytes, before_sync: Callable[[], None] | None = None) -> None:
        try:
            if self._fd is None or self._segment_size >= self._segment_bytes:
                self._roll()
            assert self._fd is not None
            start = self._segment_size
            try:
                write_all(self._fd, blob)
                if before_sync is not None:
                    before_sync()
                if self._fsync:
                    fsync_file(self._fd, self._dir / segment_name(self._segment_no))
                    self.stats.fsyncs += 1
            except OSError:
                # Best effort: do not leave a partial record that a later append would bury.
                try:
                    os.ftruncate(self._fd, start)
                except OSError:
                    pass
                raise
        except OSError as e:
            self._state, self._failure = "failed", str(e)
            raise
        self._segment_size += len(blob)
        self.stats.bytes += len(blob)

    def _roll(self) -> None:
        """Start the next segment file (and make its directory entry durable)."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        self._segment_no += 1
        path = self._dir / segment_name(self._segment_no)
        self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND, 0o644)
        self._segment_size = 0
        self.stats.segments_created += 1
        if self._fsync:
            fsync_dir(self._dir)
