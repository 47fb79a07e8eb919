"""Views of the nodes' own traces (``trace`` events, node clock) for the report.

A bound on when a node acted is only meaningful on that node's clock, so every duration here is a
difference of two ``node_t`` values of one node process (one ``boot``); the history's ``t`` is
kept only to place a row on the run's time axis.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from typing import Any

from harness.history import Event


def first_requests(events: Sequence[Event]) -> list[dict[str, Any]]:
    """One row per new leadership and peer: the first request that leader's Peer sent in its term
    (kind, ops, trigger) and how long after ``became_leader`` it left, on the leader's clock. This
    is where B4/B5 show: kuduraft's new leader sends each peer a first request with no ops, from
    its heartbeater one jittered period after Peer::Init, unless a write or commit signal comes
    first. Rows are ordered by the run's time axis, then peer."""
    by_process: dict[tuple[str, str], list[Event]] = defaultdict(list)
    for e in events:
        if e.get("kind") == "trace" and isinstance(e.get("seq"), int):
            by_process[(str(e.get("node")), str(e.get("boot")))].append(e)
    rows: list[dict[str, Any]] = []
    for (node, _), trace in by_process.items():
        trace.sort(key=lambda e: e["seq"])
        for won in (e for e in trace if e.get("event") == "became_leader"):
            firsts: dict[str, Event] = {}
            for e in trace:
                if (e["seq"] > won["seq"] and e.get("event") == "request" and e.get("first")
                        and e.get("term") == won.get("term") and e.get("peer") not in firsts):
                    firsts[str(e.get("peer"))] = e
            for peer, req in sorted(firsts.items()):
                after = (req["node_t"] - won["node_t"]) * 1000 if _both_num(req, won) else None
                rows.append({"t": won.get("t"), "leader": node, "term": won.get("term"), "peer": peer,
                             "trigger": req.get("trigger"), "ops": req.get("ops"),
                             "request_kind": req.get("request_kind"),
                             "after_ms": None if after is None else round(after, 1)})
    rows.sort(key=lambda r: (r["t"] if isinstance(r["t"], int | float) else 0.0, r["peer"]))
    return rows


def _both_num(a: Event, b: Event) -> bool:
    return all(isinstance(e.get("node_t"), int | float) and not isinstance(e.get("node_t"), bool)
               for e in (a, b))
