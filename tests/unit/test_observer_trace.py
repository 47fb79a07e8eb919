"""The observer copies each node's own trace (GET /events) into the history as ``trace`` events,
keeping the node's clock apart (``node_t``), fetching incrementally, following restarts, and
noting when it fell behind the node's ring."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from harness.history import History, load_history
from harness.observer import Observer
from nodes.events import NodeEvents


class _Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def now(self) -> float:
        return self.t

    def call_later(self, delay_s: float, fn: Any) -> Any:
        raise NotImplementedError


class _Client:
    def __init__(self, node: _Node) -> None:
        self.node = node

    def events(self, since: int = 0) -> dict[str, Any]:
        self.node.calls.append(since)
        return self.node.trace.read(since, limit=self.node.limit)


class _Node:
    def __init__(self) -> None:
        self.clock = _Clock()
        self.trace = NodeEvents(self.clock, peer_ring_size=4)
        self.trace.boot = "boot-1"
        self.calls: list[int] = []
        self.limit = 4096


class _Cluster:
    def __init__(self, history: History) -> None:
        self.history = history
        self.n1 = _Node()
        self.lock = threading.Lock()

    @property
    def nodes(self) -> tuple[str, ...]:
        return ("n1",)

    def status(self, node_id: str) -> dict[str, Any]:
        return {"uuid": node_id, "role": "LEADER"}

    def is_running(self, node_id: str) -> bool:
        return True

    def is_paused(self, node_id: str) -> bool:
        return False

    def reap(self) -> list[tuple[str, int]]:
        return []

    def node(self, node_id: str) -> _Client:
        return _Client(self.n1)


def _traces(path: Path) -> list[dict[str, Any]]:
    return [e for e in load_history(path) if e["kind"] == "trace"]


def test_observer_records_node_trace_events_with_the_node_clock_apart(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    with History(path) as history:
        cluster = _Cluster(history)
        n1 = cluster.n1
        n1.trace.record_node("became_leader", term=3)
        n1.clock.t += 0.25
        n1.trace.record_peer("n2", "request", term=3, req=1, request_kind="empty", ops=0,
                             trigger="signal", first=True, hop="n2", proxied=False)
        obs = Observer(cluster)
        obs._sample("n1", history)
        first = _traces(path)
        assert [e["event"] for e in first] == ["became_leader", "request"]
        assert first[1]["node_t"] - first[0]["node_t"] == 0.25  # the node's clock, kept apart
        assert all(e["node"] == "n1" and e["boot"] == "boot-1" and e["process"] == "observer"
                   for e in first)
        assert first[1]["request_kind"] == "empty" and first[1]["peer"] == "n2"
        # Incremental: the next sample asks from the last seq and records only what is new.
        n1.trace.record_peer("n2", "reply", term=3, req=1, outcome="ok")
        obs._sample("n1", history)
        assert n1.calls[-1] == 2
        assert [e["event"] for e in _traces(path)] == ["became_leader", "request", "reply"]
        # A restarted process: new boot, sequence from 1 again; the observer starts over.
        n1.trace = NodeEvents(n1.clock)
        n1.trace.boot = "boot-2"
        n1.trace.record_node("pre_election_started", term=3, ask_term=4, backoff_s=0.3, forced=False)
        obs._sample("n1", history)
        last = _traces(path)[-1]
        assert last["boot"] == "boot-2" and last["seq"] == 1 and last["event"] == "pre_election_started"


def test_observer_pages_through_a_long_trace_and_notes_a_gap(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    with History(path) as history:
        cluster = _Cluster(history)
        n1 = cluster.n1
        n1.limit = 2
        for i in range(6):  # the ring keeps 4: the first two are gone before the first fetch
            n1.trace.record_peer("n2", "request", term=1, req=i + 1)
        Observer(cluster)._sample("n1", history)
        events = load_history(path)
    assert [e["req"] for e in events if e["kind"] == "trace"] == [3, 4, 5, 6]
    gaps = [e for e in events if e["kind"] == "note" and e.get("gap")]
    assert gaps and gaps[0]["node"] == "n1"

