"""The report's view of each new leader's first requests, from recorded trace events (node clock)."""

from __future__ import annotations

from typing import Any

from reports.trace import first_requests


def _trace(seq: int, t: float, node_t: float, event: str, node: str = "n2", boot: str = "b1",
           **fields: Any) -> dict[str, Any]:
    return {"kind": "trace", "t": t, "node": node, "boot": boot, "seq": seq, "node_t": node_t,
            "event": event, **fields}


def test_first_request_per_peer_after_each_leadership_on_the_leaders_clock() -> None:
    events = [
        _trace(1, 5.0, 100.0, "became_leader", term=2),
        _trace(2, 5.1, 100.09, "request", term=2, peer="n3", first=True, trigger="heartbeat", ops=0,
               request_kind="status_only"),
        _trace(3, 5.1, 100.10, "request", term=2, peer="n3", first=False, trigger="signal", ops=3,
               request_kind="ops"),
        _trace(4, 5.2, 100.12, "request", term=2, peer="n1", first=True, trigger="signal", ops=0,
               request_kind="status_only"),
        # the same node restarted (new boot): its sequence and clock start again, never mixed
        _trace(1, 9.0, 3.0, "became_leader", boot="b2", term=4),
        _trace(2, 9.1, 3.08, "request", boot="b2", term=4, peer="n1", first=True, trigger="heartbeat",
               ops=0, request_kind="status_only"),
        {"kind": "ok", "t": 6.0, "process": 1},  # not a trace event
    ]
    rows = first_requests(events)
    assert [(r["term"], r["peer"], r["trigger"], r["after_ms"]) for r in rows] == [
        (2, "n1", "signal", 120.0), (2, "n3", "heartbeat", 90.0), (4, "n1", "heartbeat", 80.0)]


def test_a_request_from_an_older_term_or_before_the_election_is_not_a_first_request() -> None:
    events = [_trace(1, 1.0, 10.0, "request", term=1, peer="n3", first=True, trigger="heartbeat", ops=0),
              _trace(2, 2.0, 11.0, "became_leader", term=3),
              _trace(3, 2.1, 11.1, "request", term=2, peer="n3", first=True, trigger="heartbeat", ops=0)]
    assert first_requests(events) == []
