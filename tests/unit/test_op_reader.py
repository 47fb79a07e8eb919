"""The fast reader of a history's operations (harness/checkers/op_reader.py) gives exactly what the
general reader gives: the same operations on plain files, and on anything else the general reader's
answer or error (it hands such files over rather than reading them its own way)."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import pytest

import harness.checkers.op_reader as op_reader
from harness.checkers.history_ops import HistoryError, read_history
from harness.checkers.op_reader import read_ops


def _history(seed: int, n: int = 40) -> list[dict[str, Any]]:
    """Both schemas' records: client ops of every outcome (some never complete), Jepsen nemesis
    records and our run's non-client kinds in between."""
    rng = random.Random(seed)
    print(f"seed {seed}")
    events: list[dict[str, Any]] = [{"t": 0.0, "kind": "note", "process": "harness", "text": "start"}]
    open_: dict[int, dict[str, Any]] = {}
    t = 0.0
    for _ in range(n):
        t += rng.random()
        p = rng.randrange(5)
        if rng.random() < 0.1:
            events.append({"t": t, "kind": "trace", "process": "observer", "node": "n1", "seq": 3, "event": "reply"})
        if p in open_:
            inv = open_.pop(p)
            kind = rng.choice(["ok", "ok", "fail", "info"])
            done = {**inv, "kind": kind, "t": t, "error": None if rng.random() < 0.5 else "timeout"}
            if inv["f"] == "read":
                done["value"] = rng.choice([None, "", 1, [1, 2], {"a": True}])
            events.append(done)
        else:
            f = rng.choice(["read", "write", "cas", "append"])
            value = {"read": None, "write": rng.randrange(3), "cas": [rng.randrange(3), rng.randrange(3)],
                     "append": rng.choice(["x", "y"])}[f]
            inv = {"t": t, "kind": "invoke", "process": p, "f": f, "key": rng.choice(["a", "b"]), "value": value}
            if rng.random() < 0.2:
                del inv["key"]  # a single-register history
            open_[p] = inv
            events.append(dict(inv))
    return events


def _jepsen(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for ev in events:
        if ev["kind"] in ("note", "trace"):
            out.append({"type": "info", "process": "nemesis", "f": "start", "value": None, "time": ev["t"]})
            continue
        rec = {k: v for k, v in ev.items() if k not in ("t", "kind")}
        out.append({**rec, "type": ev["kind"], "time": int(ev["t"] * 1e9)})
    return out


def _write(path: Path, text: str | bytes) -> Path:
    path.write_bytes(text.encode() if isinstance(text, str) else text)
    return path


def _lines(events: list[dict[str, Any]]) -> str:
    return "".join(json.dumps(ev) + "\n" for ev in events)


def _same(path: Path) -> None:
    """read_ops answers as read_history does: the same ops, or the same error."""
    try:
        expected = read_history(path)[1]
    except HistoryError as exc:
        with pytest.raises(HistoryError) as got:
            read_ops(path)
        assert str(got.value) == str(exc)
        return
    assert read_ops(path) == expected


@pytest.mark.parametrize("seed", range(6))
def test_plain_files_are_read_fast_and_alike(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, seed: int) -> None:
    for events in (_history(seed), _jepsen(_history(seed))):
        path = _write(tmp_path / "h.jsonl", _lines(events))
        general = read_history(path)[1]
        monkeypatch.setattr(op_reader, "read_history", None)  # the fast path alone must answer
        assert read_ops(path) == general
        path = _write(tmp_path / "h.jsonl", _lines(events).rstrip("\n"))  # no final newline
        assert read_ops(path) == general
        monkeypatch.undo()


def test_a_torn_last_line_is_dropped_on_the_fast_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    events = _history(1)
    path = _write(tmp_path / "h.jsonl", _lines(events) + '{"process": 1, "kind": "inv')
    general = read_history(path)[1]
    monkeypatch.setattr(op_reader, "read_history", None)
    assert read_ops(path) == general


@pytest.mark.parametrize("text", [
    '{"kind": "invoke", "process": 1, "f": "read", "key": "a", "value": null}\n\n   \n',  # blank lines
    '{"kind": "invoke", "process": 1, "f": "read"} {"kind": "ok", "process": 1, "f": "read"}\n\n',  # two on a line
    '{"kind": "invoke", "process": 1,\n "f": "read"}\n',  # one record over two lines
    '{"kind": "invoke", "process": 1, "f": "read"}\n[1]\n',  # not an object
    '{"kind": "invoke", "process": 1, "f": "read"}\n{"kind": "ok", "process": 2, "f": "read"}\n',  # no invoke
    '{"kind": "invoke", "process": 1, "f": "read"}\n{"kind": "invoke", "process": 1, "f": "read"}\n',
    '{"kind": "invoke", "process": true, "f": "read"}\n',
    '{"kind": "invoke", "process": 1, "f": "read", "key": 7}\n',  # a number as key: general reader's
    '{"kind": "invoke", "process": 1, "f": "read", "key": null}\n',
    '{"kind": "invoke", "process": 1, "f": ["read"]}\n',  # unhashable
    '{"type": ["ok"], "process": 1, "f": "read"}\n',
    '{"type": null, "kind": "invoke", "process": 1, "f": "read"}\n',
    '{"kind": "invoke", "process": 1, "f": "cas", "value": [1]}\n',
    '{"kind": "invoke", "process": 1, "f": "read", "t": 1}\n{"kind": "ok", "process": 1, "f": "read", "t": 0}\n',
    '{"kind": "invoke", "process": 1, "f": "read", "t": 1}\n{"kind": "ok", "process": 1, "f": "read"}\n',
    '{"kind": "invoke", "process": 1, "f": "read", "time": null, "t": 1}\n',
    '{"kind": "invoke", "process": 1, "f": "read", "t": NaN}\n',
    '{"kind": "invoke", "process": 1, "f": "read"}\n{not json\n{"kind": "note"}\n',
    '{"kind": "invoke", "process": 1, "f": "read"}\n123\n',  # a last line that is JSON but no object
    '{"kind": "invoke", "process": 1, "f": "read", "key": "\\ud800"}\n',
    '\ufeff{"kind": "invoke", "process": 1, "f": "read"}\n',
    '{"kind": "invoke", "process": 1, "f": "read"}\r\n{"kind": "ok", "process": 1, "f": "read"}\r\n',
    '', '\n\n',
])
def test_anything_else_reads_as_the_general_reader_reads_it(tmp_path: Path, text: str) -> None:
    _same(_write(tmp_path / "h.jsonl", text))


def test_bad_utf8_is_replaced_as_by_the_general_reader(tmp_path: Path) -> None:
    path = _write(tmp_path / "h.jsonl", b'{"kind": "invoke", "process": 1, "f": "write", "key": "\xff", "value": 1}\n'
                                        b'{"kind": "ok", "process": 1, "f": "write", "key": "\xff", "value": 1, "x": "\xfe"}\n')
    assert read_ops(path)[0].key == "\ufffd"
    _same(path)
