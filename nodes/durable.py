"""Low-level durable-write primitives shared by the WAL and the metadata store, and the optional
sync ledger that lets the harness simulate a power loss.

The sync ledger is a test facility, not a kuduraft flag (``python -m nodes --sync-ledger``; the
harness passes it to every node it starts). After each successful fsync of a WAL segment or of a
directory, the node appends one JSON line to ``DATA/.sync-ledger`` saying what that fsync made
durable. The ledger itself is never fsynced: a SIGKILL keeps the page cache, so the harness reads
it after the kill and rewrites the data directory to what a power cut would have left
(``faults/ledger.py``). Lines (the format is shared with that reader; docs/node-api.md):

* ``{"f": "wal/wal-000001.log", "ino": 123, "size": 4096}``: that file's first ``size`` bytes are
  durable (its size taken *before* the fsync, so the claim never exceeds what the fsync covered);
* ``{"d": ".", "names": {"wal": 12, "consensus-meta.json": 130}, "contents": {"consensus-meta.json":
  "..."}}``: those directory entries (name -> inode) are durable; ``contents`` holds the text of
  the small files whose old content a power cut can bring back after a rename (the metadata).
"""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path

LEDGER_FILE = ".sync-ledger"
CONTENT_NAMES = frozenset({"consensus-meta.json"})
"""Files whose whole text a directory record carries (small, replaced by rename)."""
_CONTENT_MAX_BYTES = 4096


class SyncLedger:
    """Appends what each completed fsync made durable; thread-safe (the WAL syncs off the loop).

    Only the last line per file and per directory matters to a reader, so past ``compact_bytes``
    the ledger is rewritten to those lines (a new file renamed over it: a SIGKILL sees the old
    ledger or the new one, never a mix) and a long run's ledger stays small.
    """

    def __init__(self, data_dir: Path, compact_bytes: int = 1 << 20) -> None:
        self.root = Path(data_dir)
        self.root.mkdir(parents=True, exist_ok=True)
        self._path = self.root / LEDGER_FILE
        self._lock = threading.Lock()
        self._compact_bytes = compact_bytes
        self._last: dict[tuple[str, str], bytes] = {}
        self._written = 0
        self._load_previous()  # an earlier incarnation's claims still hold (a SIGKILL keeps them)
        self._fd = os.open(self._path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        self.compactions = 0

    def _load_previous(self) -> None:
        try:
            raw = self._path.read_bytes()
        except FileNotFoundError:
            return
        for line in raw.splitlines(keepends=True):
            try:
                doc = json.loads(line)
            except ValueError:
                continue  # the reader names a bad line; compaction must not invent one
            if isinstance(doc, dict):
                key = ("f", doc.get("f")) if "f" in doc else ("d", doc.get("d"))
                if isinstance(key[1], str):
                    self._last[(key[0], key[1])] = line if line.endswith(b"\n") else line + b"\n"

    def _rel(self, path: Path) -> str:
        try:
            return Path(os.path.relpath(path, self.root)).as_posix()
        except ValueError:
            return Path(path).as_posix()

    def _append(self, key: tuple[str, str], record: dict[str, object]) -> None:
        line = (json.dumps(record, separators=(",", ":"), sort_keys=True) + "\n").encode("utf-8")
        with self._lock:
            write_all(self._fd, line)  # one write: a SIGKILL cannot tear it
            self._last[key] = line
            self._written += len(line)
            if self._written > self._compact_bytes:
                self._compact()

    def _compact(self) -> None:
        """Rewrite the ledger to the last line per file and directory (their order kept)."""
        tmp = self._path.with_name(LEDGER_FILE + ".compact")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            write_all(fd, b"".join(self._last.values()))
        finally:
            os.close(fd)
        os.replace(tmp, self._path)
        os.close(self._fd)
        self._fd = os.open(self._path, os.O_WRONLY | os.O_APPEND)
        self._written = 0
        self.compactions += 1

    def file_synced(self, path: Path, ino: int, size: int) -> None:
        rel = self._rel(path)
        self._append(("f", rel), {"f": rel, "ino": ino, "size": size})

    def dir_synced(self, directory: Path, names: dict[str, int], contents: dict[str, str]) -> None:
        rel = self._rel(directory)
        self._append(("d", rel), {"d": rel, "names": names, "contents": contents})

    def close(self) -> None:
        with self._lock:
            if self._fd >= 0:
                os.close(self._fd)
                self._fd = -1


_ledger: SyncLedger | None = None


def install_ledger(ledger: SyncLedger | None) -> None:
    """Route every later fsync of this process through ``ledger`` (None: stop recording)."""
    global _ledger
    _ledger = ledger


def write_all(fd: int, data: bytes) -> None:
    """Write every byte of ``data`` to ``fd`` (looping over short writes); OSError propagates."""
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def fsync_file(fd: int, path: Path) -> None:
    """fsync ``fd`` (the open file ``path``) and, with a ledger installed, record its synced size."""
    ledger = _ledger
    if ledger is None:
        os.fsync(fd)
        return
    st = os.fstat(fd)
    os.fsync(fd)
    ledger.file_synced(path, st.st_ino, st.st_size)


def _entries(directory: Path) -> tuple[dict[str, int], dict[str, str]]:
    """The directory's names (-> inode) and the text of its small content-tracked files, read
    *before* the fsync: every name seen then is covered by it."""
    names: dict[str, int] = {}
    contents: dict[str, str] = {}
    with os.scandir(directory) as it:
        for entry in it:
            if entry.name == LEDGER_FILE:
                continue
            try:
                names[entry.name] = entry.inode()
                if entry.name in CONTENT_NAMES and entry.is_file(follow_symlinks=False):
                    raw = Path(entry.path).read_bytes()
                    if len(raw) <= _CONTENT_MAX_BYTES:
                        contents[entry.name] = raw.decode("utf-8", errors="surrogateescape")
            except OSError:
                names.pop(entry.name, None)  # gone meanwhile: not claimed durable
    return names, contents


def fsync_dir(directory: Path) -> None:
    """fsync ``directory`` itself, so a file created, renamed or removed in it survives a crash."""
    ledger = _ledger
    seen = _entries(directory) if ledger is not None else None
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    if ledger is not None and seen is not None:
        ledger.dir_synced(directory, *seen)
