"""The fast reader of a history file's operations: records decoded straight into the fields the checker reads.

``read_history`` builds every event's dict and then pairs them; on a 100k-op history that was
most of the reading time. Here msgspec decodes each line into a small struct of the nine fields
the checker reads (the others are skipped while decoding, never built), and one loop pairs them
into ``Op``s. It takes only the plain case: every line one JSON object, every record well formed.
Anything else (blank lines, bad UTF-8, a record or pairing the general reader would refuse) is
handed to ``read_history`` from the start, so the answer and every error message are the general
reader's.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from harness.checkers.history_ops import (
    _OTHER_KINDS,
    _OTHER_PROCESSES,
    CLIENT_KINDS,
    FUNCTIONS,
    Op,
    OpStatus,
    gc_paused,
    read_history,
)

try:  # a compiled decoder into structs; without it every file is read the general way
    import msgspec
except ImportError:  # pragma: no cover - msgspec is a declared dependency
    msgspec = None  # type: ignore[assignment]

__all__ = ["read_ops"]


def read_ops(path: Path | str) -> list[Op]:
    """The operations of a JSONL history file, without keeping its events (what a checker needs):
    the same answer, and the same errors, as ``read_history(path)[1]``."""
    with gc_paused():
        data = Path(path).read_bytes()
        ops = _read_plain(data)
        del data
        return ops if ops is not None else read_history(path)[1]


if msgspec is not None:
    _UNSET: Any = msgspec.UNSET

    class _Record(msgspec.Struct, gc=False):
        """The fields of a record the checker reads; one absent from the line stays ``_UNSET``, so
        absent and null differ as they do in a dict."""

        type: Any = _UNSET
        kind: Any = _UNSET
        process: Any = _UNSET
        f: Any = _UNSET
        key: Any = _UNSET
        value: Any = _UNSET
        time: Any = _UNSET
        t: Any = _UNSET
        error: Any = _UNSET

    _decode_lines: Any = msgspec.json.Decoder(_Record).decode_lines
    _DecodeError: Any = msgspec.DecodeError  # ValidationError (a line not an object) is one
else:  # pragma: no cover
    _UNSET = _decode_lines = _DecodeError = None


class _Unusual(Exception):
    """Not the plain case: ``read_history`` reads the file (and explains what is wrong)."""


def _read_plain(data: bytes) -> list[Op] | None:
    records = _records(data)
    if records is None:
        return None
    try:
        return _pair(records)
    except (_Unusual, TypeError):  # TypeError: an unhashable kind, f or process, say
        return None


def _records(data: bytes) -> list[Any] | None:
    """The records of a JSONL file, or None unless each line is one JSON object (a torn last line,
    as a crashed run leaves, is dropped as ``read_history`` drops it): then record k is line k + 1.

    The test, at C speed over the whole file: every line ends with ``}`` and the next begins with
    ``{``, so no record crosses from one line to the next (JSON never has ``}`` and ``{`` side by
    side, with only a newline between, inside one value); there are as many newlines as line
    breaks between records, so no record spans lines; and as many records as lines, so no line
    holds two.
    """
    if _decode_lines is None:
        return None
    body = data
    try:
        records = _decode_lines(body)
    except _DecodeError:
        stripped = data.rstrip(b"\n")
        cut = stripped.rfind(b"\n") + 1
        try:  # the general reader's test of a torn last line
            json.loads(stripped[cut:].decode("utf-8", errors="replace"))
        except json.JSONDecodeError:
            body = data[:cut]
        else:
            return None  # the error is elsewhere
        try:
            records = _decode_lines(body)
        except _DecodeError:
            return None
    n = len(records)
    if n == 0:
        return records if not body.strip() else None
    if body.endswith(b"\n"):
        body_end = len(body) - 1
        newlines = n
    else:
        body_end = len(body)
        newlines = n - 1
    if not (body.startswith(b"{") and body[body_end - 1:body_end] == b"}"
            and body.count(b"\n") == newlines and body.count(b"}\n{") == n - 1):
        return None
    return records


def _pair(records: list[Any]) -> list[Op]:
    """``parse_history`` for plain records: pairs each invoke with its completion in one pass, with
    the general reader's reading of each field (an absent field reads as ``dict.get`` reads it);
    raises _Unusual where ``parse_history`` would explain something (or skip it, a nemesis
    record of Jepsen's schema and our run's non-client kinds excepted)."""
    unset = _UNSET
    new = tuple.__new__
    ok_status, info_status = OpStatus.OK, OpStatus.INFO
    failed, failed_cas = OpStatus.FAILED, OpStatus.FAILED_CAS
    open_: dict[int, tuple[int, str, str, Any, Any, int]] = {}  # process -> its invoke, its slot
    ops: list[Any] = []
    timed: bool | None = None
    for pos, rec in enumerate(records):
        kind = rec.type
        if kind is unset:
            kind = rec.kind
            if kind in _OTHER_KINDS:
                continue
        process, f = rec.process, rec.f
        if type(process) is not int:
            if type(process) is str and process in _OTHER_PROCESSES and kind in CLIENT_KINDS:
                continue
            raise _Unusual
        key, t = rec.key, rec.time
        if key is unset:
            key = ""
        elif type(key) is not str:
            raise _Unusual
        if t is unset:
            t = rec.t
            if t is unset:
                t = None
        if t is None:
            if timed is None:
                timed = False
            elif timed:
                raise _Unusual
            t = pos
        elif (type(t) is float or type(t) is int) and timed is not False:
            timed = True
        else:
            raise _Unusual
        if f not in FUNCTIONS:
            raise _Unusual
        value = rec.value
        if value is unset:
            value = None
        if kind == "invoke":
            if process in open_:
                raise _Unusual
            if f == "cas":
                if not (type(value) is list and len(value) == 2):
                    raise _Unusual
            elif f == "append" and type(value) is not str:
                raise _Unusual
            open_[process] = (pos, f, key, value, t, len(ops))
            ops.append(None)
            continue
        inv = open_.pop(process, None)
        if inv is None:
            raise _Unusual
        ipos, if_, ikey, ivalue, call, slot = inv
        if if_ != f or ikey != key or t < call:
            raise _Unusual
        error = rec.error
        if error is unset:
            error = None
        if f != "read":
            value = ivalue
        if kind == "ok":
            status, ret = ok_status, t
        elif kind == "info":
            status, ret = info_status, None
        elif kind == "fail":
            status, ret = (failed_cas if f == "cas" and error is None else failed), t
        else:
            raise _Unusual
        ops[slot] = new(Op, (ipos, ipos + 1, pos, process, f, key, value, status, call, ret, error))
    for _process, (ipos, f, key, value, call, slot) in open_.items():
        ops[slot] = Op(ipos, ipos + 1, None, _process, f, key, value, info_status, call, None)
    return ops
