"""Frame encoding and incremental decoding (nodes/wire.py)."""

from __future__ import annotations

import asyncio
import struct
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nodes.wire import (
    MAX_FRAME_BYTES,
    MAX_FRAME_DEPTH,
    FrameDecoder,
    FrameError,
    decode_payload,
    encode_frame,
    read_frame,
)

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63)
    | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)
json_objects = st.dictionaries(st.text(max_size=8), json_values, max_size=5)
FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def frame(payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + payload


def test_round_trip_in_one_feed() -> None:
    objs: list[dict[str, Any]] = [{}, {"id": 1, "rpc": "UpdateConsensus", "body": {"ops": [1, 2]}},
                                  {"uni": "héllo ✓ \U0001f600", "lone": "\ud800"}]
    data = b"".join(encode_frame(o) for o in objs)
    assert FrameDecoder().feed(data) == objs


def test_round_trip_byte_by_byte() -> None:
    obj = {"id": 7, "body": {"x": [None, True, 1.5, "s"]}}
    dec = FrameDecoder()
    out: list[dict[str, Any]] = []
    for b in encode_frame(obj) * 2:
        out += dec.feed(bytes([b]))
    assert out == [obj, obj]
    assert dec.buffered == 0


def test_encoding_is_compact_big_endian() -> None:
    data = encode_frame({"a": 1, "b": [1, 2]})
    assert data == struct.pack(">I", 17) + b'{"a":1,"b":[1,2]}'


@pytest.mark.parametrize("obj", [[1, 2], "s", {"x": float("nan")}, {"x": object()}, {1: {2: set()}}])
def test_encode_rejects_what_is_not_a_json_object(obj: Any) -> None:
    with pytest.raises(FrameError):
        encode_frame(obj)


def test_encode_rejects_oversized() -> None:
    with pytest.raises(FrameError, match=r"oversized frame: length \d+ > max 10"):
        encode_frame({"k": "x" * 20}, max_bytes=10)


@pytest.mark.parametrize(("payload", "problem"), [
    (b"\xff\xfe{}", "not UTF-8"),
    (b"{not json", "not valid JSON"),
    (b"", "not valid JSON"),
    (b"[1, 2]", "not an object"),
    (b'"str"', "not an object"),
    (b'{"x": NaN}', "non-finite number NaN"),
    (b'{"x": Infinity}', "non-finite number Infinity"),
    (b'{"x": -Infinity}', "non-finite number -Infinity"),
    (b'{"x": 1e999}', "out of the finite float range"),   # parses to inf without a check
    (b'{"x": -1e400}', "out of the finite float range"),
    (b"[" * 100_000, "nests deeper than 80"),             # refused before parsing
    (b'{"a":' * 81 + b"1" + b"}" * 81, "nests deeper than 80"),
    (b'{"x": ' + b"9" * 5000 + b"}", "not valid JSON"),   # past Python's int digit limit
])
def test_bad_payloads_name_the_problem(payload: bytes, problem: str) -> None:
    with pytest.raises(FrameError, match=problem):
        FrameDecoder().feed(frame(payload))
    with pytest.raises(FrameError, match=problem):
        decode_payload(payload)


def test_oversized_length_is_rejected_from_the_header_alone() -> None:
    dec = FrameDecoder()
    with pytest.raises(FrameError, match=f"oversized frame: length {MAX_FRAME_BYTES + 1} > max {MAX_FRAME_BYTES}"):
        dec.feed(struct.pack(">I", MAX_FRAME_BYTES + 1))


def test_decoder_is_unusable_after_an_error() -> None:
    dec = FrameDecoder()
    with pytest.raises(FrameError):
        dec.feed(frame(b"nope"))
    with pytest.raises(FrameError, match="unusable"):
        dec.feed(encode_frame({"ok": True}))


def _reader(data: bytes, eof: bool = True) -> asyncio.StreamReader:
    reader = asyncio.StreamReader()
    reader.feed_data(data)
    if eof:
        reader.feed_eof()
    return reader


def test_read_frame() -> None:
    async def scenario() -> None:
        reader = _reader(encode_frame({"a": 1}) + encode_frame({"b": 2}))
        assert await read_frame(reader) == {"a": 1}
        assert await read_frame(reader) == {"b": 2}
        assert await read_frame(reader) is None  # clean EOF at a frame boundary

        with pytest.raises(FrameError, match="closed mid-frame"):
            await read_frame(_reader(b"\x00\x00"))
        with pytest.raises(FrameError, match="closed mid-frame"):
            await read_frame(_reader(encode_frame({"a": 1})[:-1]))
        with pytest.raises(FrameError, match="oversized frame: length 100 > max 50"):
            await read_frame(_reader(struct.pack(">I", 100), eof=False), max_bytes=50)
        with pytest.raises(FrameError, match="not an object"):
            await read_frame(_reader(frame(b"[]")))

    asyncio.run(asyncio.wait_for(scenario(), 5))


def _feed_chunks(data: bytes, cuts: list[int]) -> list[dict[str, Any]]:
    """Feed ``data`` split at ``cuts``; every outcome must be a dict list or FrameError."""
    dec = FrameDecoder()
    out: list[dict[str, Any]] = []
    bounds = [0, *sorted(c % (len(data) + 1) for c in cuts), len(data)]
    for lo, hi in zip(bounds, bounds[1:], strict=False):
        frames = dec.feed(data[lo:hi])
        assert isinstance(frames, list) and all(isinstance(f, dict) for f in frames)
        out += frames
    return out


@FUZZ
@given(st.lists(json_objects, max_size=4), st.lists(st.integers(min_value=0), max_size=8))
def test_fuzz_valid_streams_round_trip_under_any_chunking(objs: list[dict[str, Any]], cuts: list[int]) -> None:
    data = b"".join(encode_frame(o) for o in objs)
    assert _feed_chunks(data, cuts) == objs


@FUZZ
@given(st.binary(max_size=200), st.lists(st.integers(min_value=0), max_size=8))
def test_fuzz_arbitrary_bytes_decode_or_raise_frame_error(data: bytes, cuts: list[int]) -> None:
    try:
        _feed_chunks(data, cuts)
    except FrameError:
        pass


@FUZZ
@given(st.lists(json_objects, min_size=1, max_size=3), st.data())
def test_fuzz_corrupted_streams_decode_or_raise_frame_error(objs: list[dict[str, Any]], data: st.DataObject) -> None:
    stream = bytearray(b"".join(encode_frame(o) for o in objs))
    for _ in range(data.draw(st.integers(1, 4), label="mutations")):
        pos = data.draw(st.integers(0, len(stream)), label="pos")
        action = data.draw(st.sampled_from(["flip", "insert", "delete", "cut"]), label="action")
        if action == "flip" and pos < len(stream):
            stream[pos] ^= data.draw(st.integers(1, 255), label="mask")
        elif action == "insert":
            stream[pos:pos] = data.draw(st.binary(min_size=1, max_size=8), label="junk")
        elif action == "delete":
            del stream[pos:pos + data.draw(st.integers(1, 8), label="n")]
        else:
            del stream[pos:]
    cuts = data.draw(st.lists(st.integers(min_value=0), max_size=8), label="cuts")
    try:
        _feed_chunks(bytes(stream), cuts)
    except FrameError:
        pass


def test_nesting_up_to_the_frame_limit_is_accepted_and_brackets_in_strings_do_not_count() -> None:
    deep = b'{"a":' * MAX_FRAME_DEPTH + b"1" + b"}" * MAX_FRAME_DEPTH
    assert decode_payload(deep)["a"]["a"]
    assert decode_payload(b'{"s": "' + b"[" * 10_000 + b'\\\\"}')["s"].startswith("[[")


def test_whatever_decodes_can_be_encoded_again() -> None:
    """The WAL encodes with allow_nan=False: a decoded frame must always re-encode."""
    for raw in (b'{"x": 1.5e308, "y": -0.0, "z": "\\ud800"}', b'{"x": [[[[1e-400]]]]}'):
        encode_frame(decode_payload(raw))
