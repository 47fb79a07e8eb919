"""Seeded disk corruption of a stopped node's WAL or metadata: plan (pure, over the bytes) and apply.

Where the damage lands decides what a correct node must do (``nodes/wal.py``, after kuduraft's
``ReadableLogSegment``/``LogReader`` and ``ConsensusMetadata::Load``):

* ``wal`` ``tail``: bytes inside the *payload* of the last record of the last segment. Its
  checksum fails with nothing after it: a torn tail, cut off on start (the node recovers and
  catches up from the leader). The header is left alone on purpose: a damaged header with a
  payload after it is not a torn write and is refused.
* ``wal`` ``mid``: bytes inside a record that has another record after it: corruption in the
  middle of the log; cutting there would silently drop acknowledged entries, so the node must
  refuse to start (exit 3).
* ``meta`` (``mid``: a byte inside the file; ``tail``: its last bytes): the term/vote file's CRC
  or JSON fails; the node must refuse to start (exit 3), never come up with a forgotten vote.

``flip`` XORs each byte with a nonzero mask drawn from the seed; ``zero`` writes zero bytes (only
ever over JSON text, which holds none, so it always changes something). The plan (file, offset,
length, mask) is recorded and replays byte for byte.
"""

from __future__ import annotations

import random
import struct
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

from harness.errors import FaultError

_HEADER = struct.Struct(">III")  # payload length, crc32(payload), crc32(first 8 bytes): docs/node-api.md
META_FILE = "consensus-meta.json"
REFUSED_STORAGE_EXIT = 3


class StorageFile(StrEnum):
    WAL = "wal"
    META = "meta"


class Where(StrEnum):
    MID = "mid"
    TAIL = "tail"


class Mode(StrEnum):
    FLIP = "flip"
    ZERO = "zero"


@dataclass(frozen=True)
class CorruptionPlan:
    """Bytes ``offset .. offset+length`` of ``path`` (relative to the data dir), XOR ``mask`` (0: zero them)."""

    path: str
    offset: int
    length: int
    mask: int
    expect: str  # "refuse" (exit 3) | "repair" (torn tail cut on start)

    def to_json(self) -> dict[str, Any]:
        return {"path": self.path, "offset": self.offset, "length": self.length, "mask": self.mask,
                "expect": self.expect}

    @classmethod
    def from_json(cls, raw: Any) -> CorruptionPlan:
        """A recorded plan; FaultError naming the bad field."""
        if not isinstance(raw, dict):
            raise FaultError(f"corruption plan must be an object, got {raw!r}")
        path, expect = raw.get("path"), raw.get("expect")
        if not isinstance(path, str) or not path or path.startswith("/") or ".." in Path(path).parts:
            raise FaultError(f"corruption plan: bad path {path!r} (relative, inside the data dir)")
        if expect not in ("refuse", "repair"):
            raise FaultError(f"corruption plan: expect must be 'refuse' or 'repair', got {expect!r}")
        values = []
        for key, low, high in (("offset", 0, 2**40), ("length", 1, 4096), ("mask", 0, 255)):
            value = raw.get(key)
            if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
                raise FaultError(f"corruption plan: {key} must be an int in [{low}, {high}], got {value!r}")
            values.append(value)
        return cls(path, values[0], values[1], values[2], expect)


def records(segment: bytes) -> list[tuple[int, int]]:
    """(offset, payload length) of each whole record of a segment, in order."""
    out, pos = [], 0
    while pos + _HEADER.size <= len(segment):
        length = _HEADER.unpack_from(segment, pos)[0]
        if pos + _HEADER.size + length > len(segment):
            break
        out.append((pos, length))
        pos += _HEADER.size + length
    return out


def _span(rng: random.Random, start: int, size: int, nbytes: int) -> tuple[int, int]:
    length = max(1, min(nbytes, size))
    return start + rng.randrange(size - length + 1), length


def plan_corruption(data_dir: Path, file: StorageFile, where: Where, mode: Mode, nbytes: int,
                    rng: random.Random) -> CorruptionPlan | None:
    """Where to damage ``data_dir`` (None: nothing there to damage, e.g. an empty WAL)."""
    mask = 0 if mode is Mode.ZERO else rng.randrange(1, 256)
    if file is StorageFile.META:
        path = Path(data_dir) / META_FILE
        if not path.is_file() or path.stat().st_size == 0:
            return None
        size = path.stat().st_size
        if where is Where.TAIL:
            length = min(nbytes, size)
            return CorruptionPlan(META_FILE, size - length, length, mask, "refuse")
        offset, length = _span(rng, 0, size, nbytes)
        return CorruptionPlan(META_FILE, offset, length, mask, "refuse")
    segments = sorted((Path(data_dir) / "wal").glob("wal-*.log"))
    found = [(seg, off, length) for seg in segments for off, length in records(seg.read_bytes())]
    if where is Where.TAIL:
        if not found or found[-1][0] != segments[-1]:
            return None
        seg, off, length = found[-1]
        expect = "repair"
    else:
        if len(found) < 2:
            return None
        seg, off, length = found[rng.randrange(len(found) - 1)]  # any record but the very last
        expect = "refuse"
    offset, span = _span(rng, off + _HEADER.size, length, nbytes)
    return CorruptionPlan(f"wal/{seg.name}", offset, span, mask, expect)


def apply_corruption(data_dir: Path, plan: CorruptionPlan) -> None:
    """Damage the bytes in place (same file, same size); FaultError when they are not there."""
    path = Path(data_dir) / plan.path
    try:
        with path.open("r+b") as fh:
            fh.seek(plan.offset)
            old = fh.read(plan.length)
            if len(old) != plan.length:
                raise FaultError(f"corrupt: {path} has no bytes {plan.offset}..{plan.offset + plan.length}")
            new = bytes(b ^ plan.mask for b in old) if plan.mask else bytes(plan.length)
            fh.seek(plan.offset)
            fh.write(new)
    except OSError as exc:
        raise FaultError(f"corrupt: cannot damage {path}: {exc.strerror}") from None
