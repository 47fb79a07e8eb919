"""The in-memory Raft log (kuduraft's log cache over the WAL): indexes, terms, batched reads."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

from nodes.wal import LogEntry


@dataclass(frozen=True, order=True, slots=True)
class OpId:
    """(term, index); orders by term then index, as kuduraft compares OpIds."""

    term: int
    index: int

    def __iter__(self) -> Iterator[int]:
        return iter((self.term, self.index))

    @classmethod
    def of(cls, raw: object) -> OpId:
        if (isinstance(raw, list | tuple) and len(raw) == 2
                and all(isinstance(x, int) and not isinstance(x, bool) for x in raw)):
            return cls(int(raw[0]), int(raw[1]))
        raise ValueError(f"expected an OpId [term, index], got {raw!r}")


MIN_OPID = OpId(0, 0)


class LogGone(LookupError):
    """The entries needed were garbage-collected (kuduraft: NotFound, peer needs a copy)."""


class LogReadAhead(LookupError):
    """Asked to read past the end of the log (kuduraft: Incomplete)."""


def entry_size(entry: LogEntry) -> int:
    """Serialized size used against consensus_max_batch_size_bytes."""
    return len(entry.json_text())


class RaftLog:
    """Entries ``first_index..last_index``; index 0 is the empty prefix with term 0."""

    def __init__(self, entries: list[LogEntry] | None = None) -> None:
        self._entries: list[LogEntry] = []
        self._sizes: list[int] = []
        self._first = 1
        self._gc_term = 0
        self._listeners: list[Callable[[], None]] = []
        for e in entries or []:
            self.append(e)

    @property
    def first_index(self) -> int:
        return self._first

    @property
    def last_index(self) -> int:
        return self._first + len(self._entries) - 1

    @property
    def last_opid(self) -> OpId:
        if not self._entries:
            return OpId(self._gc_term, self._first - 1) if self._first > 1 else MIN_OPID
        e = self._entries[-1]
        return OpId(e.term, e.index)

    def term_at(self, index: int) -> int | None:
        """Term of the entry at ``index`` (0 for index 0), None when absent or collected."""
        if index == 0:
            return 0
        if index == self._first - 1:
            return self._gc_term if self._first > 1 else 0
        if self._first <= index <= self.last_index:
            return self._entries[index - self._first].term
        return None

    def has(self, opid: OpId) -> bool:
        return self.term_at(opid.index) == opid.term

    def get(self, index: int) -> LogEntry:
        if index < self._first:
            raise LogGone(f"entry {index} was garbage-collected (log starts at {self._first})")
        if index > self.last_index:
            raise LogReadAhead(f"entry {index} is past the end of the log ({self.last_index})")
        return self._entries[index - self._first]

    def append(self, entry: LogEntry) -> None:
        if entry.index != self.last_index + 1:
            raise ValueError(f"append of index {entry.index} after {self.last_index}")
        if self._entries and entry.term < self._entries[-1].term:
            raise ValueError(f"append of term {entry.term} after term {self._entries[-1].term}")
        self._entries.append(entry)
        self._sizes.append(entry_size(entry))
        for listener in list(self._listeners):
            listener()

    def truncate_after(self, index: int) -> list[LogEntry]:
        """Drop every entry above ``index``; returns what was dropped."""
        keep = max(0, index - self._first + 1)
        dropped = self._entries[keep:]
        del self._entries[keep:]
        del self._sizes[keep:]
        return dropped

    def read(self, from_index: int, max_bytes: int) -> list[LogEntry]:
        """Entries from ``from_index`` up to the byte budget, at least one when any exist."""
        if from_index < self._first:
            raise LogGone(f"entry {from_index} was garbage-collected (log starts at {self._first})")
        if from_index > self.last_index + 1:
            raise LogReadAhead(f"read from {from_index} past the end of the log ({self.last_index})")
        out: list[LogEntry] = []
        used = 0
        pos = from_index - self._first
        while pos < len(self._entries):
            size = self._sizes[pos]
            if out and used + size > max_bytes:
                break
            out.append(self._entries[pos])
            used += size
            pos += 1
        return out

    def gc_before(self, index: int) -> None:
        """Forget entries below ``index`` (kuduraft log GC); later reads of them raise LogGone."""
        drop = min(len(self._entries), max(0, index - self._first))
        if drop == 0:
            return
        self._gc_term = self._entries[drop - 1].term
        del self._entries[:drop]
        del self._sizes[:drop]
        self._first += drop

    def on_append(self, listener: Callable[[], None]) -> Callable[[], None]:
        """Register a callback run after each append; returns a function that unregisters it."""
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener) if listener in self._listeners else None

    def __len__(self) -> int:
        return len(self._entries)
