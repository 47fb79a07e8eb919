"""What a power cut leaves of a node's data directory, from the node's sync ledger.

The node (``python -m nodes --sync-ledger``, ``nodes/durable.py``) appends a line after every
fsync saying what it made durable: a file's first N bytes, or a directory's entries (name ->
inode) plus the text of its metadata file. A SIGKILL keeps the page cache, so after the kill
the ledger is complete, and ``power_cut`` rewrites the directory to the durable state only, as
Jepsen's LazyFS does with its "clear cache" fault: unsynced bytes dropped (each file truncated to
its last synced size), entries whose directory was not fsynced after they appeared removed, and a
metadata file renamed over but not made durable by a directory fsync put back to its old text.

Only the node's own storage is rewritten: ``wal/`` and its ``wal-NNNNNN.log`` segments,
``consensus-meta.json`` (and its ``.tmp``). The node's log, ``fatal.json`` and the ledger stay.
An entry deleted after it was made durable would come back on real hardware; the node never
deletes one, so that is not modelled. The format is shared with ``nodes/durable.py`` (faults may
not import the node): LEDGER_FILE and CONTENT_NAMES below are the same names.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.errors import FaultError

LEDGER_FILE = ".sync-ledger"
META_FILE = "consensus-meta.json"
WAL_DIR = "wal"
_MANAGED_TOP = re.compile(r"^(consensus-meta\.json(\.tmp)?|wal)$")
_SEGMENT = re.compile(r"^wal-\d{6,}\.log$")


class LedgerError(FaultError):
    """The ledger is missing or unreadable: the power cut cannot be simulated (one line)."""


@dataclass(frozen=True)
class DirRecord:
    names: dict[str, int]
    contents: dict[str, str]


@dataclass
class Ledger:
    """The last durable claim per file (path -> (inode, size)) and per directory."""

    files: dict[str, tuple[int, int]] = field(default_factory=dict)
    dirs: dict[str, DirRecord] = field(default_factory=dict)
    lines: int = 0


def _int(value: Any, what: str, where: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise LedgerError(f"{where}: bad {what} {value!r}")
    return value


def parse_ledger(text: str, source: str = LEDGER_FILE) -> Ledger:
    """The ledger's lines folded into the last claim per file and directory; LedgerError naming
    the line for anything malformed (a ledger is never guessed at)."""
    ledger = Ledger()
    for number, line in enumerate(text.splitlines(), 1):
        where = f"{source}:{number}"
        if not line.strip():
            continue
        try:
            doc = json.loads(line)
        except ValueError as exc:
            raise LedgerError(f"{where}: not JSON ({exc})") from None
        if not isinstance(doc, dict):
            raise LedgerError(f"{where}: not an object")
        if isinstance(doc.get("f"), str):
            ledger.files[doc["f"]] = (_int(doc.get("ino"), "ino", where), _int(doc.get("size"), "size", where))
        elif isinstance(doc.get("d"), str):
            names, contents = doc.get("names"), doc.get("contents", {})
            if not isinstance(names, dict) or not isinstance(contents, dict) or not all(
                    isinstance(v, str) for v in contents.values()):
                raise LedgerError(f"{where}: bad directory record")
            ledger.dirs[doc["d"]] = DirRecord({str(k): _int(v, "inode", where) for k, v in names.items()},
                                              dict(contents))
        else:
            raise LedgerError(f"{where}: neither a file ('f') nor a directory ('d') record")
        ledger.lines += 1
    return ledger


def read_ledger(data_dir: Path) -> Ledger:
    path = Path(data_dir) / LEDGER_FILE
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise LedgerError(f"{path}: no sync ledger (node not started with --sync-ledger)") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise LedgerError(f"{path}: unreadable sync ledger: {exc}") from None
    return parse_ledger(text, str(path))


@dataclass
class CutReport:
    """What the power cut took: bytes dropped per file, entries removed, files reverted."""

    dropped_bytes: dict[str, int] = field(default_factory=dict)
    removed: list[str] = field(default_factory=list)
    reverted: list[str] = field(default_factory=list)
    ledger_lines: int = 0

    @property
    def total_dropped(self) -> int:
        return sum(self.dropped_bytes.values())

    @property
    def bit(self) -> bool:
        """Whether the cut lost anything at all (False: everything written had been synced)."""
        return bool(self.total_dropped or self.removed or self.reverted)

    def to_json(self) -> dict[str, Any]:
        return {"dropped_bytes": dict(self.dropped_bytes), "removed": list(self.removed),
                "reverted": list(self.reverted), "total_dropped_bytes": self.total_dropped,
                "ledger_lines": self.ledger_lines}


def _size(path: Path) -> int:
    if path.is_dir() and not path.is_symlink():
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    return path.stat().st_size


def _remove(path: Path, rel: str, report: CutReport) -> None:
    report.dropped_bytes[rel] = _size(path)
    report.removed.append(rel)
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink()


def _truncate(path: Path, rel: str, size: int, report: CutReport) -> None:
    current = path.stat().st_size
    if current > size:
        with path.open("r+b") as fh:
            fh.truncate(size)
        report.dropped_bytes[rel] = current - size


def _revert(path: Path, rel: str, text: str, report: CutReport) -> None:
    old = text.encode("utf-8", errors="surrogateescape")
    report.dropped_bytes[rel] = path.stat().st_size
    tmp = path.with_name(path.name + ".powercut")
    tmp.write_bytes(old)
    os.replace(tmp, path)
    report.reverted.append(rel)


def _cut_dir(root: Path, rel_dir: str, managed: re.Pattern[str], ledger: Ledger, report: CutReport) -> None:
    directory = root / rel_dir
    if not directory.is_dir():
        return
    durable = ledger.dirs.get(rel_dir)
    for name in sorted(os.listdir(directory)):
        if not managed.match(name):
            continue
        path = directory / name
        rel = name if rel_dir == "." else f"{rel_dir}/{name}"
        ino = path.lstat().st_ino
        if durable is None or name not in durable.names:
            _remove(path, rel, report)  # its directory entry never reached the disk
        elif durable.names[name] != ino:
            if path.is_file() and name in durable.contents and path.read_bytes() == durable.contents[
                    name].encode("utf-8", errors="surrogateescape"):
                continue  # replaced by the same text (e.g. an earlier cut's revert): nothing lost
            if name not in durable.contents:
                raise LedgerError(f"{rel}: replaced since its directory was synced and the ledger "
                                  "holds no earlier content to restore")
            _revert(path, rel, durable.contents[name], report)
        elif path.is_file():
            if name in durable.contents:
                if path.read_bytes() != durable.contents[name].encode("utf-8", errors="surrogateescape"):
                    _revert(path, rel, durable.contents[name], report)
                continue
            synced = ledger.files.get(rel)
            _truncate(path, rel, synced[1] if synced and synced[0] == ino else 0, report)


def power_cut(data_dir: Path, ledger: Ledger | None = None) -> CutReport:
    """Rewrite a stopped node's ``data_dir`` to what its ledger says was durable; the report says
    what was lost. LedgerError (nothing touched) when there is no readable ledger."""
    root = Path(data_dir)
    ledger = ledger if ledger is not None else read_ledger(root)
    report = CutReport(ledger_lines=ledger.lines)
    _cut_dir(root, ".", _MANAGED_TOP, ledger, report)
    _cut_dir(root, WAL_DIR, _SEGMENT, ledger, report)
    restart_ledger(root)
    return report


def _baseline_lines(root: Path) -> list[str]:
    lines: list[str] = []
    for rel_dir, managed in ((".", _MANAGED_TOP), (WAL_DIR, _SEGMENT)):
        directory = root / rel_dir
        if not directory.is_dir():
            continue
        names: dict[str, int] = {}
        contents: dict[str, str] = {}
        for name in sorted(os.listdir(directory)):
            if not managed.match(name):
                continue
            path = directory / name
            st = path.lstat()
            names[name] = st.st_ino
            rel = name if rel_dir == "." else f"{rel_dir}/{name}"
            if name == META_FILE and path.is_file():
                contents[name] = path.read_bytes().decode("utf-8", errors="surrogateescape")
            elif path.is_file():
                lines.append(json.dumps({"f": rel, "ino": st.st_ino, "size": st.st_size}, sort_keys=True))
        lines.append(json.dumps({"d": rel_dir, "names": names, "contents": contents}, sort_keys=True))
    return lines


def restart_ledger(data_dir: Path) -> None:
    """After the cut everything on disk is durable (it is what the machine booted with): the
    ledger starts again from that state, so a later cut never takes back what this one left."""
    root = Path(data_dir)
    text = "".join(line + "\n" for line in _baseline_lines(root))
    tmp = root / (LEDGER_FILE + ".new")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, root / LEDGER_FILE)
