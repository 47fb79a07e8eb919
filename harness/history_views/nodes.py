"""What the observer saw of the nodes: samples, leaderships, the agreed-leader timeline, and the
harness's node process events (rules: ``harness.history_views``)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from harness.history import Event, EventKind
from harness.history_views.wellformed import number
from harness.waits import agreed_leader

DOWN = "DOWN"


@dataclass(frozen=True)
class NodeSample:
    """One observer sample of one node; ``role`` is ``DOWN`` when the node did not answer."""

    t: float
    node: str
    role: str
    term: int | None
    commit_index: int | None
    leader: str | None
    status: Mapping[str, Any] | None
    error: str | None = None


def node_samples(events: Sequence[Event]) -> dict[str, list[NodeSample]]:
    """Each node's samples in time order."""
    out: dict[str, list[NodeSample]] = {}
    for e in events:
        t, node = number(e.get("t")), e.get("node")
        if e.get("kind") != EventKind.SAMPLE.value or t is None or not isinstance(node, str):
            continue
        st = e.get("status") if isinstance(e.get("status"), dict) else None
        if st is None:
            sample = NodeSample(t, node, DOWN, None, None, None, None, str(e.get("error") or ""))
        else:
            term, commit = st.get("term"), st.get("commit_index")
            sample = NodeSample(t, node, str(st.get("role", "?")), term if type(term) is int else None,
                                commit if type(commit) is int else None, st.get("leader"), st)
        out.setdefault(node, []).append(sample)
    for series in out.values():
        series.sort(key=lambda s: s.t)
    return out


@dataclass(frozen=True)
class Leadership:
    """The leader of one term, as the observer first saw it (at ``t``)."""

    t: float
    leader: str
    term: int


def leaderships(samples: Mapping[str, Sequence[NodeSample]]) -> list[Leadership]:
    """One per term in which some node reported itself ``LEADER``, in term order (module docstring).
    A leader sampled late (after a later term's) still counts; a deposed leader still claiming its
    term adds nothing."""
    first: dict[int, Leadership] = {}
    for series in samples.values():
        for s in series:
            if s.role == "LEADER" and s.term is not None:
                seen = first.get(s.term)
                if seen is None or (s.t, s.node) < (seen.t, seen.leader):
                    first[s.term] = Leadership(s.t, s.node, s.term)
    return [first[term] for term in sorted(first)]


def leader_changes(leaders: Sequence[Leadership], start: float | None = None, end: float | None = None) -> int:
    """Leader changes: leaderships after the first (by term), or with ``start``/``end`` those of them
    first seen in (start, end]."""
    if start is None and end is None:
        return max(0, len(leaders) - 1)
    low = -math.inf if start is None else start
    high = math.inf if end is None else end
    return sum(1 for x in leaders[1:] if low < x.t <= high)


def leaders_during(leaders: Sequence[Leadership], start: float, end: float) -> list[Leadership]:
    """The leadership in force at ``start`` (the latest term first seen by then) and every one first
    seen in (start, end]."""
    before = [x for x in leaders if x.t <= start]
    current = [max(before, key=lambda x: x.term)] if before else []
    return current + [x for x in leaders if start < x.t <= end]


@dataclass(frozen=True)
class LeaderChange:
    """From ``t`` on, a majority agreed on ``leader`` in ``term`` (None: no agreed leader)."""

    t: float
    leader: str | None
    term: int | None


def leader_timeline(events: Sequence[Event], nodes: Sequence[str] | None = None) -> list[LeaderChange]:
    """The agreed leader over time (``harness.waits.agreed_leader`` over the latest sample of each
    node): who a majority followed, not how often leadership changed (``leaderships``)."""
    latest: dict[str, Mapping[str, Any] | None] = {n: None for n in (nodes or ())}
    timeline: list[LeaderChange] = []
    for e in events:
        t = number(e.get("t"))
        if e.get("kind") != EventKind.SAMPLE.value or not isinstance(e.get("node"), str) or t is None:
            continue
        status = e.get("status")
        latest[e["node"]] = status if isinstance(status, dict) else None
        leader = agreed_leader(latest, len(nodes) if nodes else len(latest))
        own = latest.get(leader) if leader else None
        term = own.get("term") if own else None
        term = term if type(term) is int else None
        if not timeline or (timeline[-1].leader, timeline[-1].term) != (leader, term):
            timeline.append(LeaderChange(t, leader, term))
    return timeline


def leader_at(timeline: Sequence[LeaderChange], t: float) -> LeaderChange | None:
    """The timeline entry in force at ``t`` (None before the first sample)."""
    current = None
    for change in timeline:
        if change.t > t:
            break
        current = change
    return current


def agreed_after(timeline: Sequence[LeaderChange], t: float) -> float | None:
    """Seconds from ``t`` until a majority agreed on a leader: 0 when one was agreed at ``t``, None
    when none was agreed afterwards within the history."""
    current = leader_at(timeline, t)
    if current is not None and current.leader is not None:
        return 0.0
    return next((c.t - t for c in timeline if c.t > t and c.leader is not None), None)


@dataclass(frozen=True)
class NodeEvent:
    """One ``node`` event: a process start, exit, kill, pause, flag change... (``harness.history``).
    ``code`` is the exit status (None when not an int); ``fatal`` the node's fatal record."""

    t: float
    node: str
    event: str
    code: int | None = None
    cause: str | None = None
    fatal: Mapping[str, Any] | None = None


def node_events(events: Sequence[Event]) -> list[NodeEvent]:
    out = []
    for e in events:
        t, node = number(e.get("t")), e.get("node")
        if e.get("kind") != EventKind.NODE.value or t is None or not isinstance(node, str):
            continue
        code, cause, fatal = e.get("code"), e.get("cause"), e.get("fatal")
        out.append(NodeEvent(t, node, str(e.get("event")), code if type(code) is int else None,
                             str(cause) if cause is not None else None,
                             fatal if isinstance(fatal, Mapping) else None))
    return out
