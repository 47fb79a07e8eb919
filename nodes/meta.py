"""Durable consensus metadata (current term and vote), replaced atomically on every change."""

from __future__ import annotations

import json
import os
import zlib
from pathlib import Path

from nodes.durable import fsync_dir, write_all

META_FILE = "consensus-meta.json"


class MetadataError(Exception):
    """The metadata file exists but cannot be read or trusted; the message names the file."""


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
        if not isinstance(term, int) or isinstance(term, bool) or term < 0:
            raise ValueError(f"term must be a non-negative int, got {term!r}")
        if voted_for is not None and not isinstance(voted_for, str):
            raise ValueError(f"voted_for must be a str or None, got {voted_for!r}")
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
