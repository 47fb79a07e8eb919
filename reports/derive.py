"""Series derived from a saved history for the reports: client ops, fault windows, node state, peer requests."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from harness.history import Event

CLIENT_KINDS = frozenset({"invoke", "ok", "fail", "info"})
OUTCOMES = ("ok", "fail", "info", "open")
# The per-peer counters that say what kind of request a leader sent (see docs/node-api.md).
REQUEST_KINDS = ("requests_with_ops", "status_only_requests", "heartbeat_sends")
REQUEST_KIND_LABELS = {"requests_with_ops": "with ops", "status_only_requests": "status-only",
                       "heartbeat_sends": "heartbeats"}
DOWN = "DOWN"


def _num(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return None
    return float(value)


@dataclass(frozen=True)
class ClientOp:
    """One client operation: an invoke and its completion. ``index`` is the invoke's 0-based position
    in ``events.jsonl``, which is also the op's index in the linearizability checker's anomalies.
    ``outcome`` is ``ok``/``fail``/``info``, or ``open`` when the run ended before it completed.
    ``observed`` is what a cas whose compare failed found instead (``fail`` without ``error``)."""

    index: int
    process: int
    f: str
    key: str
    value: Any
    node: str | None
    t_invoke: float
    t_complete: float | None
    outcome: str
    error: Any = None
    latency_s: float | None = None
    observed: Any = None

    @property
    def remark(self) -> str:
        """The error, or for a failed compare the value found (the report's last column)."""
        if self.error:
            return str(self.error)
        if self.f == "cas" and self.outcome == "fail":
            return f"compare failed: found {self.observed!r}"
        return ""


def client_ops(events: Sequence[Event]) -> list[ClientOp]:
    """Pair invokes with completions by process; completions without an invoke are ignored (the
    linearizability checker is the one that rejects malformed histories)."""
    open_: dict[int, tuple[int, Event]] = {}
    ops: list[ClientOp] = []
    for i, e in enumerate(events):
        kind, process = e.get("kind"), e.get("process")
        if kind not in CLIENT_KINDS or isinstance(process, bool) or not isinstance(process, int):
            continue
        if kind == "invoke":
            open_[process] = (i, e)
            continue
        start = open_.pop(process, None)
        if start is None:
            continue
        index, inv = start
        t0, t1 = _num(inv.get("t")) or 0.0, _num(e.get("t"))
        latency = _num(e.get("latency_s"))
        if latency is None and t1 is not None:
            latency = max(0.0, t1 - t0)
        value = e.get("value") if inv.get("f") == "read" else inv.get("value")
        ops.append(ClientOp(index, process, str(inv.get("f")), str(inv.get("key")), value,
                            inv.get("node"), t0, t1, str(kind), e.get("error"), latency, e.get("observed")))
    for index, inv in open_.values():
        ops.append(ClientOp(index, int(inv["process"]), str(inv.get("f")), str(inv.get("key")),
                            inv.get("value"), inv.get("node"), _num(inv.get("t")) or 0.0, None, "open"))
    return sorted(ops, key=lambda op: op.index)


@dataclass(frozen=True)
class FaultWindow:
    """A fault from its ``fault`` event to the matching ``heal`` (None: never healed in this run)."""

    name: str
    targets: tuple[str, ...]
    params: dict[str, Any]
    term: int | None
    t_inject: float
    t_heal: float | None
    vacuous: bool | None = None  # from the heal event: True = in place but did not bite
    evidence: str | None = None

    def end(self, duration_s: float) -> float:
        return self.t_heal if self.t_heal is not None else max(duration_s, self.t_inject)

    @property
    def label(self) -> str:
        return f"{self.name} {','.join(self.targets)}".strip()


def fault_windows(events: Sequence[Event]) -> list[FaultWindow]:
    """Each heal closes the earliest open fault with the same name and targets (then the same name)."""
    opened: list[dict[str, Any]] = []
    for e in events:
        kind, t = e.get("kind"), _num(e.get("t"))
        if kind not in ("fault", "heal") or t is None:
            continue
        name, targets = str(e.get("fault", "?")), tuple(str(x) for x in e.get("targets") or ())
        if kind == "fault":
            opened.append({"name": name, "targets": targets, "params": dict(e.get("params") or {}),
                           "term": e.get("term"), "t_inject": t, "t_heal": None})
            continue
        candidates = [w for w in opened if w["t_heal"] is None and w["name"] == name]
        exact = [w for w in candidates if w["targets"] == targets]
        if exact or candidates:
            (exact or candidates)[0].update(t_heal=t, vacuous=e.get("vacuous"), evidence=e.get("evidence"))
    return [FaultWindow(**w) for w in opened]


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
    out: dict[str, list[NodeSample]] = {}
    for e in events:
        t, node = _num(e.get("t")), e.get("node")
        if e.get("kind") != "sample" or t is None or not isinstance(node, str):
            continue
        st = e.get("status") if isinstance(e.get("status"), dict) else None
        if st is None:
            sample = NodeSample(t, node, DOWN, None, None, None, None, str(e.get("error") or ""))
        else:
            term, commit = st.get("term"), st.get("commit_index")
            sample = NodeSample(t, node, str(st.get("role", "?")), term if isinstance(term, int) else None,
                                commit if isinstance(commit, int) else None, st.get("leader"), st)
        out.setdefault(node, []).append(sample)
    for series in out.values():
        series.sort(key=lambda s: s.t)
    return out


@dataclass(frozen=True)
class PeerPoint:
    """Cumulative requests one leader sent one peer, by kind, since the run started. The node resets
    its counters whenever a new leadership rebuilds its peers (B5); here they are carried over."""

    t: float
    term: int | None
    counts: tuple[int, ...]


def peer_series(samples: Mapping[str, list[NodeSample]]) -> tuple[dict[str, list[PeerPoint]], dict[str, int]]:
    """Per directed link ``leader->peer``: reset-corrected cumulative counts of ``REQUEST_KINDS``, and
    how many counter resets were seen. A reset is a new term or any counter going down."""
    series: dict[str, list[PeerPoint]] = {}
    resets: dict[str, int] = {}
    last: dict[str, tuple[int | None, tuple[int, ...], tuple[int, ...]]] = {}  # term, raw, offset
    for node, node_series in sorted(samples.items()):
        for s in node_series:
            if s.role != "LEADER" or s.status is None or not isinstance(s.status.get("peers"), dict):
                continue
            for peer, info in sorted(s.status["peers"].items()):
                counters = info.get("counters") if isinstance(info, dict) else None
                if not isinstance(counters, dict):
                    continue
                raw = tuple(int(counters.get(k) or 0) for k in REQUEST_KINDS)
                key = f"{node}->{peer}"
                offset = tuple(0 for _ in REQUEST_KINDS)
                if key in last:
                    term, prev_raw, offset = last[key]
                    if term != s.term or any(a < b for a, b in zip(raw, prev_raw, strict=True)):
                        offset = tuple(o + p for o, p in zip(offset, prev_raw, strict=True))
                        resets[key] = resets.get(key, 0) + 1
                last[key] = (s.term, raw, offset)
                series.setdefault(key, []).append(
                    PeerPoint(s.t, s.term, tuple(o + r for o, r in zip(offset, raw, strict=True))))
                resets.setdefault(key, 0)
    return series, resets


def counts_at(points: Sequence[PeerPoint], t: float) -> tuple[int, ...]:
    """The cumulative counts at time ``t`` (the last point at or before it; zeros before the first)."""
    best: tuple[int, ...] = tuple(0 for _ in REQUEST_KINDS)
    for p in points:
        if p.t > t:
            break
        best = p.counts
    return best


def counts_between(points: Sequence[PeerPoint], start: float, end: float) -> dict[str, int]:
    a, b = counts_at(points, start), counts_at(points, end)
    return {k: y - x for k, x, y in zip(REQUEST_KINDS, a, b, strict=True)}


@dataclass(frozen=True)
class Leadership:
    """A leader first seen by the observer at ``t`` (one per term that had an observed leader)."""

    t: float
    leader: str
    term: int


def leaderships(samples: Mapping[str, list[NodeSample]]) -> list[Leadership]:
    seen = sorted((s.t, s.node, s.term) for series in samples.values() for s in series
                  if s.role == "LEADER" and s.term is not None)
    out: list[Leadership] = []
    for t, node, term in seen:
        if not out or term > out[-1].term:
            out.append(Leadership(t, node, term))
    return out


@dataclass(frozen=True)
class Recovery:
    """After a heal, how long until: the first ok client op completed; a majority agreed on a leader;
    every node committed what the most advanced node had committed at the heal. None: not within the
    run (or not observable: no samples)."""

    fault: str
    targets: tuple[str, ...]
    t_heal: float
    first_ok_s: float | None
    leader_s: float | None
    caught_up_s: float | None


def _agreed(latest: Mapping[str, NodeSample], majority: int) -> bool:
    votes: dict[tuple[Any, Any], int] = {}
    for s in latest.values():
        if s.status is not None and s.leader:
            votes[(s.leader, s.term)] = votes.get((s.leader, s.term), 0) + 1
    for (leader, term), n in votes.items():
        own = latest.get(leader)
        if n >= majority and own is not None and own.role == "LEADER" and own.term == term:
            return True
    return False


def _commit(latest: Mapping[str, NodeSample], node: str) -> int:
    s = latest.get(node)
    return s.commit_index if s is not None and s.commit_index is not None else -1


def recoveries(windows: Sequence[FaultWindow], ops: Sequence[ClientOp],
               samples: Mapping[str, list[NodeSample]], nodes: Sequence[str]) -> list[Recovery]:
    merged = sorted((s for series in samples.values() for s in series), key=lambda s: s.t)
    majority = len(nodes) // 2 + 1
    out = []
    for w in windows:
        if w.t_heal is None:
            continue
        heal = w.t_heal
        first_ok = min((op.t_complete for op in ops if op.outcome == "ok" and op.t_complete is not None
                        and op.t_complete >= heal), default=None)
        latest: dict[str, NodeSample] = {}
        leader_s = caught_s = None
        target: int | None = None
        for s in merged:
            if s.t >= heal and target is None:
                target = max((x.commit_index for x in latest.values() if x.commit_index is not None),
                             default=0)
            latest[s.node] = s
            if s.t < heal:
                continue
            if leader_s is None and _agreed(latest, majority):
                leader_s = s.t - heal
            if caught_s is None and target is not None and all(
                    _commit(latest, n) >= target for n in nodes):
                caught_s = s.t - heal
            if leader_s is not None and caught_s is not None:
                break
        out.append(Recovery(w.name, w.targets, heal, None if first_ok is None else first_ok - heal,
                            leader_s, caught_s))
    return out


@dataclass(frozen=True)
class LinWindow:
    """The ops a non-linearizable key's anomaly names, and the time span they cover."""

    key: str
    t_start: float
    t_end: float
    stuck_index: int
    ops: tuple[ClientOp, ...]


def lin_windows(verdicts: Iterable[Mapping[str, Any]], ops: Sequence[ClientOp]) -> list[LinWindow]:
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
            start = min(op.t_invoke for op in chosen)
            end = max(op.t_complete if op.t_complete is not None else op.t_invoke for op in chosen)
            out.append(LinWindow(str(a.get("key")), start, end, stuck, tuple(chosen)))
    return out


def percentiles_ms(latencies_s: Iterable[float], points: Sequence[int] = (50, 90, 99)) -> dict[str, float]:
    """Nearest-rank percentiles (and max) in milliseconds; empty when there are no values."""
    values = sorted(latencies_s)
    if not values:
        return {}
    out = {f"p{p}": round(values[max(0, math.ceil(p / 100 * len(values)) - 1)] * 1000, 3) for p in points}
    out["max"] = round(values[-1] * 1000, 3)
    return out


@dataclass(frozen=True)
class Timeline:
    """Every derived series of one run, on the history's clock (seconds since the run started)."""

    duration_s: float
    nodes: list[str]
    ops: list[ClientOp]
    faults: list[FaultWindow]
    samples: dict[str, list[NodeSample]]
    peers: dict[str, list[PeerPoint]]
    peer_resets: dict[str, int]
    leaders: list[Leadership]
    recoveries: list[Recovery]
    node_events: list[Event] = field(default_factory=list)
    lin: list[LinWindow] = field(default_factory=list)


def derive(events: Sequence[Event], nodes: Sequence[str], verdicts: Sequence[Mapping[str, Any]] = (),
           duration_s: float | None = None) -> Timeline:
    ops = client_ops(events)
    windows = fault_windows(events)
    samples = node_samples(events)
    peers, resets = peer_series(samples)
    if duration_s is None:
        duration_s = max((float(e["t"]) for e in events if _num(e.get("t")) is not None), default=0.0)
    node_list = list(nodes) or sorted(samples)
    return Timeline(duration_s, node_list, ops, windows, samples, peers, resets, leaderships(samples),
                    recoveries(windows, ops, samples, node_list),
                    [e for e in events if e.get("kind") == "node"], lin_windows(verdicts, ops))
