"""What only the reports derive from a history: request kinds per link and window, recoveries as
the report measures them, linearizability windows and latency percentiles, on top of the shared
read model.

Client ops, fault windows, node samples, leaderships and per-peer counter series are
``harness.history_views``'s, the same objects the checkers read, so a report cannot count
differently from the verdict beside it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from harness.checkers.windows import percentiles_ms as _nearest_rank_ms
from harness.history import Event
from harness.history_views import (
    REQUEST_KINDS,
    FaultWindow,
    Leadership,
    NodeEvent,
    NodeSample,
    Op,
    PeerPoint,
    agreed_after,
    client_ops,
    counts_between,
    fault_windows,
    history_end,
    leader_timeline,
    leaderships,
    node_events,
    node_samples,
    peer_series,
)

__all__ = ["REQUEST_KINDS", "REQUEST_KIND_LABELS", "LinWindow", "Recovery", "Timeline", "derive", "lin_windows",
           "percentiles_ms", "recoveries", "request_counts"]

REQUEST_KIND_LABELS = {"requests_with_ops": "with ops", "status_only_requests": "status-only",
                       "heartbeat_sends": "heartbeats"}


def request_counts(points: Sequence[PeerPoint], start: float, end: float) -> dict[str, int]:
    """The requests of each kind (``REQUEST_KINDS``) a leader sent one peer in (start, end]
    (``harness.history_views.counts_between``)."""
    counts = counts_between(points, start, end)
    return {k: counts[k] for k in REQUEST_KINDS}


@dataclass(frozen=True)
class Recovery:
    """After a heal, how long until: the first ok client op completed; a majority agreed on a leader
    (0 when one was agreed at the heal: ``harness.history_views.agreed_after``); every node
    committed what the most advanced node had committed at the heal. None: not within the run (or
    not observable: no samples)."""

    fault: str
    targets: tuple[str, ...]
    t_heal: float
    first_ok_s: float | None
    leader_s: float | None
    caught_up_s: float | None


def _caught_up_s(samples: Mapping[str, Sequence[NodeSample]], nodes: Sequence[str], heal: float) -> float | None:
    """Seconds from ``heal`` until every node's latest sample shows the commit index the most
    advanced node's latest sample showed at the heal (a node down in its latest sample is not)."""
    merged = sorted((s for series in samples.values() for s in series), key=lambda s: s.t)
    latest: dict[str, int] = {}
    target: int | None = None
    for s in merged:
        if s.t >= heal and target is None:
            target = max(latest.values(), default=0)
        latest[s.node] = s.commit_index if s.commit_index is not None else -1
        if target is not None and all(latest.get(n, -1) >= target for n in nodes):
            return s.t - heal
    return None


def recoveries(windows: Sequence[FaultWindow], ops: Sequence[Op], samples: Mapping[str, Sequence[NodeSample]],
               nodes: Sequence[str], events: Sequence[Event] = ()) -> list[Recovery]:
    """One row per healed fault; ``events`` give the agreed-leader timeline (none: not measured)."""
    timeline = leader_timeline(events, nodes) if events else []
    out = []
    for w in windows:
        if w.t_heal is None:
            continue
        heal = w.t_heal
        first_ok = min((op.complete_t for op in ops if op.ok and op.complete_t is not None
                        and op.complete_t >= heal), default=None)
        out.append(Recovery(w.fault, w.targets, heal, None if first_ok is None else first_ok - heal,
                            agreed_after(timeline, heal) if timeline else None,
                            _caught_up_s(samples, nodes, heal)))
    return out


@dataclass(frozen=True)
class LinWindow:
    """The ops a non-linearizable key's anomaly names, and the time span they cover."""

    key: str
    t_start: float
    t_end: float
    stuck_index: int
    ops: tuple[Op, ...]


def lin_windows(verdicts: Iterable[Mapping[str, Any]], ops: Sequence[Op]) -> list[LinWindow]:
    """From the linearizability verdict's anomalies (``window_indexes`` are invoke positions)."""
    by_index = {op.index: op for op in ops}
    out = []
    for v in verdicts:
        details = v.get("details") or {}
        if v.get("checker") != "linearizable" or v.get("validity") != "invalid":
            continue
        anomalies = details.get("anomalies") or ([details["anomaly"]] if details.get("anomaly") else [])
        for a in anomalies:
            stuck = (a.get("stuck_op") or {}).get("index", -1)
            chosen = [by_index[i] for i in a.get("window_indexes", []) if i in by_index]
            if not chosen:
                continue
            start = min(op.invoke_t for op in chosen)
            end = max(op.complete_t if op.complete_t is not None else op.invoke_t for op in chosen)
            out.append(LinWindow(str(a.get("key")), start, end, stuck, tuple(chosen)))
    return out


def percentiles_ms(latencies_s: Iterable[float], points: Sequence[int] = (50, 90, 99)) -> dict[str, float]:
    """The windows checker's nearest-rank percentiles (ms) and the max; empty when no values."""
    values = sorted(latencies_s)
    if not values:
        return {}
    return {**_nearest_rank_ms(values, points), "max": round(values[-1] * 1000, 3)}


@dataclass(frozen=True)
class Timeline:
    """Every derived series of one run, on the history's clock (seconds since the run started)."""

    duration_s: float
    nodes: list[str]
    ops: list[Op]
    faults: list[FaultWindow]
    samples: dict[str, list[NodeSample]]
    peers: dict[str, list[PeerPoint]]
    peer_resets: dict[str, int]
    leaders: list[Leadership]
    recoveries: list[Recovery]
    node_events: list[NodeEvent] = field(default_factory=list)
    lin: list[LinWindow] = field(default_factory=list)


def derive(events: Sequence[Event], nodes: Sequence[str], verdicts: Sequence[Mapping[str, Any]] = (),
           duration_s: float | None = None) -> Timeline:
    ops = client_ops(events)
    windows = fault_windows(events)
    samples = node_samples(events)
    peers, resets = peer_series(samples)
    if duration_s is None:
        duration_s = history_end(events)
    node_list = list(nodes) or sorted(samples)
    return Timeline(duration_s, node_list, ops, windows, samples, peers, resets, leaderships(samples),
                    recoveries(windows, ops, samples, node_list, events), node_events(events),
                    lin_windows(verdicts, ops))
