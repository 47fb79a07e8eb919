"""History: schema constructors, thread-safe appends, reading back (torn last line)."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest

from harness.errors import HarnessError
from harness.history import EventKind, History, NodeEventType, OpFn, load_history


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_round_trip_of_every_kind(tmp_path: Path) -> None:
    clock = FakeClock()
    path = tmp_path / "events.jsonl"
    with History(path, clock) as h:
        h.invoke(1, OpFn.WRITE, "k1", "c0-1", "n1")
        clock.now += 0.25
        h.complete(EventKind.OK, 1, OpFn.WRITE, "k1", "c0-1", "n1", 0.25)
        h.fault("partition", {"isolate": "n2"}, ["n2"], 3)
        h.heal("partition", {"isolate": "n2"}, ["n2"])
        h.node_event("n2", NodeEventType.EXIT, 85)
        h.node_event("n1", NodeEventType.FLAG, flag="x", value=1.0)
        h.sample("n1", {"role": "LEADER"})
        h.note("hello", node="n3", extra=1)
    events = load_history(path)
    assert [e["kind"] for e in events] == ["invoke", "ok", "fault", "heal", "node", "node", "sample", "note"]
    assert events[0]["t"] == 0.0 and events[1]["t"] == 0.25
    assert events[1]["latency_s"] == 0.25 and events[1]["error"] is None
    assert events[2] == {"t": 0.25, "kind": "fault", "process": "nemesis", "node": None,
                         "fault": "partition", "params": {"isolate": "n2"}, "targets": ["n2"], "term": 3}
    assert events[4]["event"] == "exit" and events[4]["code"] == 85
    assert events[5]["flag"] == "x" and events[5]["value"] == 1.0
    assert events[6]["process"] == "observer" and events[6]["status"] == {"role": "LEADER"}
    assert events[7]["text"] == "hello" and events[7]["node"] == "n3"


def test_completion_kind_is_checked(tmp_path: Path) -> None:
    with History(tmp_path / "e.jsonl") as h, pytest.raises(HarnessError):
        h.complete(EventKind.FAULT, 1, OpFn.READ, "k", None, "n1", 0.1)


def test_torn_last_line_is_dropped(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    with History(path) as h:
        h.note("a")
        h.note("b")
    with path.open("a") as fh:
        fh.write('{"t": 1.0, "kind": "no')
    assert [e["text"] for e in load_history(path)] == ["a", "b"]


def test_bad_line_in_the_middle_raises(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    path.write_text('{"t": 0, "kind": "note"}\nnot json\n{"t": 1, "kind": "note"}\n')
    with pytest.raises(HarnessError, match=":2:"):
        load_history(path)


def test_concurrent_appends_never_interleave(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    h = History(path)
    per_thread, threads = 200, 8

    def writer(i: int) -> None:
        for n in range(per_thread):
            h.invoke(i, OpFn.READ, f"k{n}", None, "n1")

    workers = [threading.Thread(target=writer, args=(i,)) for i in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    h.close()
    lines = path.read_text().splitlines()
    assert len(lines) == per_thread * threads
    assert all(json.loads(line)["kind"] == "invoke" for line in lines)
    times = [json.loads(line)["t"] for line in lines]
    assert times == sorted(times)  # appended under one lock, on one monotonic clock


def test_events_are_flushed_per_line(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    h = History(path)
    h.note("visible before close")
    assert load_history(path)[0]["text"] == "visible before close"
    h.close()
    with pytest.raises(HarnessError, match="closed"):
        h.note("late")
