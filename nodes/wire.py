"""RPC framing: a 4-byte big-endian length, then that many bytes of a UTF-8 JSON object."""

from __future__ import annotations

import asyncio
import json
import struct
from typing import Any

from nodes.jsonsafe import MAX_VALUE_DEPTH, JsonInputError, loads

MAX_FRAME_BYTES = 16 * 1024 * 1024
"""Largest payload (bytes, header excluded) either side accepts; larger frames are protocol errors."""

MAX_FRAME_DEPTH = MAX_VALUE_DEPTH + 16
"""Deepest nesting a frame may have: a client value (MAX_VALUE_DEPTH) inside the request envelope
(frame, body, ops list, op, payload) with room to spare. Deeper frames are protocol errors, so a
peer cannot hand the WAL a value the HTTP edge would have refused."""

_HEADER = struct.Struct(">I")
HEADER_BYTES = _HEADER.size


class FrameError(Exception):
    """A frame cannot be encoded or decoded; the message names what is wrong.

    On the receiving side the stream is then out of sync, so the connection must be closed.
    """


def encode_frame(obj: dict[str, Any], max_bytes: int = MAX_FRAME_BYTES) -> bytes:
    """Serialize ``obj`` as one frame (compact JSON, ASCII-escaped so any str round-trips).

    Raises FrameError when ``obj`` is not a dict, is not JSON-serializable (including NaN or
    infinite floats) or its payload exceeds ``max_bytes``.
    """
    if not isinstance(obj, dict):
        raise FrameError(f"frame must be a JSON object, got {type(obj).__name__}")
    try:
        payload = json.dumps(obj, separators=(",", ":"), allow_nan=False).encode("ascii")
    except (TypeError, ValueError, RecursionError) as e:
        raise FrameError(f"frame is not JSON-serializable: {e}") from None
    if len(payload) > max_bytes:
        raise FrameError(f"oversized frame: length {len(payload)} > max {max_bytes}")
    return _HEADER.pack(len(payload)) + payload


def decode_payload(payload: bytes) -> dict[str, Any]:
    """Parse one frame payload; FrameError when it is not UTF-8, not strict JSON or not an object.

    Strict as in ``nodes.jsonsafe``: no NaN/Infinity, no float overflow (``1e999``), nesting at
    most MAX_FRAME_DEPTH. Whatever this accepts, the WAL can encode.
    """
    try:
        obj = loads(payload, MAX_FRAME_DEPTH, what="frame payload")
    except JsonInputError as e:
        raise FrameError(str(e)) from None
    if not isinstance(obj, dict):
        raise FrameError(f"frame JSON is not an object (got {type(obj).__name__})")
    return obj


def _check_length(length: int, max_bytes: int) -> None:
    if length > max_bytes:
        raise FrameError(f"oversized frame: length {length} > max {max_bytes}")


class FrameDecoder:
    """Incremental decoder for a byte stream of frames, fed in arbitrary chunks.

    After it raises FrameError once, the stream position is unknown and every later ``feed``
    raises FrameError too: the owner must drop the connection.
    """

    def __init__(self, max_bytes: int = MAX_FRAME_BYTES) -> None:
        self._max_bytes = max_bytes
        self._buf = bytearray()
        self._failed: str | None = None

    @property
    def buffered(self) -> int:
        """Bytes received but not yet part of a complete frame."""
        return len(self._buf)

    def feed(self, data: bytes) -> list[dict[str, Any]]:
        """Add ``data``; return every frame it completes, in order.

        Raises FrameError on the first bad frame; frames completed before it in the same call
        are lost with the connection, which is what a protocol error means anyway.
        """
        if self._failed is not None:
            raise FrameError(f"decoder unusable after an earlier error: {self._failed}")
        self._buf += data
        frames: list[dict[str, Any]] = []
        pos = 0
        try:
            while len(self._buf) - pos >= HEADER_BYTES:
                (length,) = _HEADER.unpack_from(self._buf, pos)
                _check_length(length, self._max_bytes)
                end = pos + HEADER_BYTES + length
                if len(self._buf) < end:
                    break
                frames.append(decode_payload(bytes(self._buf[pos + HEADER_BYTES:end])))
                pos = end
        except FrameError as e:
            self._failed = str(e)
            self._buf.clear()
            raise
        del self._buf[:pos]
        return frames


async def read_frame(reader: asyncio.StreamReader, max_bytes: int = MAX_FRAME_BYTES) -> dict[str, Any] | None:
    """Read one frame from ``reader``.

    Returns None on a clean EOF between frames. Raises FrameError for an oversized or
    undecodable frame and for EOF in the middle of a frame. Socket errors (ConnectionError,
    OSError) propagate unchanged.
    """
    try:
        header = await reader.readexactly(HEADER_BYTES)
    except asyncio.IncompleteReadError as e:
        if not e.partial:
            return None
        raise FrameError(f"connection closed mid-frame ({len(e.partial)} of {HEADER_BYTES} "
                         "header bytes)") from None
    (length,) = _HEADER.unpack(header)
    _check_length(length, max_bytes)
    try:
        payload = await reader.readexactly(length)
    except asyncio.IncompleteReadError as e:
        raise FrameError(f"connection closed mid-frame ({len(e.partial)} of {length} "
                         "payload bytes)") from None
    return decode_payload(payload)
