"""Where two runs of the same schedule part ways: their observed Raft events (leaders, terms, crashes) compared."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from harness.history import Event, EventKind, NodeEventType
from harness.history_views import leader_timeline, run_nodes


@dataclass(frozen=True)
class RaftEvent:
    """One observed Raft-level event: ``leader`` (an agreed leader in a term) or ``exit`` (a node
    exited on its own with a code). ``t`` is not compared: only the order and what happened."""

    t: float
    what: str
    detail: tuple[Any, ...]

    def __str__(self) -> str:
        if self.what == "leader":
            return f"{self.detail[0]} leads term {self.detail[1]} (t={self.t:.2f} s)"
        return f"{self.detail[0]} exited with {self.detail[1]} (t={self.t:.2f} s)"


@dataclass(frozen=True)
class Divergence:
    index: int
    original: RaftEvent | None
    replay: RaftEvent | None

    def __str__(self) -> str:
        return (f"event #{self.index + 1}: original: {self.original or 'nothing more'}; "
                f"replay: {self.replay or 'nothing more'}")


def raft_events(events: Sequence[Event]) -> list[RaftEvent]:
    """Agreed leaders (each new (leader, term)) and nodes exiting on their own, in time order."""
    out = [RaftEvent(c.t, "leader", (c.leader, c.term))
           for c in leader_timeline(events, run_nodes(events)) if c.leader is not None]
    out += [RaftEvent(float(e["t"]), "exit", (e.get("node"), e.get("code"))) for e in events
            if e.get("kind") == EventKind.NODE.value and e.get("event") == NodeEventType.EXIT.value]
    return sorted(out, key=lambda r: r.t)


def first_divergence(original: Sequence[RaftEvent], replay: Sequence[RaftEvent]) -> Divergence | None:
    """The first position where the two sequences differ (None: the same events in the same order)."""
    for i in range(max(len(original), len(replay))):
        a = original[i] if i < len(original) else None
        b = replay[i] if i < len(replay) else None
        if a is None or b is None or (a.what, a.detail) != (b.what, b.detail):
            return Divergence(i, a, b)
    return None
