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
    """Appends what each completed fsync made durable; thread-safe (the WAL syncs off the loop)."""

    def __init__(self, data_dir: Path) -> None:
        self.root = Path(data_dir)
        self.root.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._fd = os.open(self.root / LEDGER_FILE, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)

    def _rel(self, path: Path) -> str:
        try:
            return Path(os.path.relpath(path, self.root)).as_posix()
        except ValueError:
            return Path(path).as_posix()

    def _append(self, record: dict[str, object]) -> None:
        line = (json.dumps(record, separators=(",", ":"), sort_keys=True) + "\n").encode("utf-8")
        with self._lock:
            write_all(self._fd, line)  # one write: a SIGKILL cannot tear it

    def file_synced(self, path: Path, ino: int, size: int) -> None:
        self._append({"f": self._rel(path), "ino": ino, "size": size})

    def dir_synced(self, directory: Path, names: dict[str, int], contents: dict[str, str]) -> None:
        self._append({"d": self._rel(directory), "names": names, "contents": contents})

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
