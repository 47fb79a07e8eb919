"""Windowed checker: success rate, latency, leader changes and per-peer request kinds before, during and after each fault."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from harness.checkers.degradation import MIN_WINDOW_P, WINDOWS, peer_windows
from harness.checkers.recovery import MIN_OK_BEFORE
from harness.checkers.verdict import Validity, Verdict
from harness.history import Event
from harness.history_views import (
    CLIENT,
    FAULTS,
    REQUEST_KINDS,
    SAMPLES,
    FaultWindow,
    Leadership,
    Op,
    client_ops,
    fault_windows,
    history_end,
    leader_changes,
    leaders_during,
    leaderships,
    node_samples,
    require_well_formed,
    run_timing,
)
from harness.timing import TimingProfile

NAME = "windows"
PERCENTILES = (50, 90, 99)


@dataclass(frozen=True)
class WindowStats:
    """One window around one fault: client outcomes of the ops invoked in [start, end), the
    percentiles (ms) of the ok ones' latency, leader changes and the request kinds the leader(s)
    sent each peer (counter increments between samples in (start, end]). ``fail`` counts every
    ``fail``; ``compare_failed`` the part of it that was a cas which executed and found another
    value (``error`` null) — the system served those."""

    window: str
    start_t: float
    end_t: float
    ok: int
    fail: int
    info: int
    compare_failed: int
    latency_ms: Mapping[str, float]
    leader_changes: int
    leaders: tuple[str, ...]
    peers: Mapping[str, Mapping[str, int]] = field(default_factory=dict)

    @property
    def success_rate(self) -> float | None:
        """Served / (ok + fail + info), served = ok + failed compares; None when no op was invoked.

        A cas whose compare failed was executed by the cluster (the linearizability checker keeps
        it as a constraint); counting it as a failure would make the rate follow the workload's
        contention on a key rather than the cluster's availability."""
        total = self.ok + self.fail + self.info
        return (self.ok + self.compare_failed) / total if total else None

    def to_dict(self) -> dict[str, Any]:
        rate = self.success_rate
        return {"start_t": round(self.start_t, 3), "end_t": round(self.end_t, 3),
                "seconds": round(self.end_t - self.start_t, 3),
                "ops": {"ok": self.ok, "fail": self.fail, "info": self.info,
                        "compare_failed": self.compare_failed},
                "success_rate": round(rate, 4) if rate is not None else None,
                "latency_ms": dict(self.latency_ms), "leader_changes": self.leader_changes,
                "leaders": list(self.leaders), "peers": {p: dict(c) for p, c in self.peers.items()}}


def percentiles_ms(latencies_s: Iterable[float], points: Sequence[int] = PERCENTILES) -> dict[str, float]:
    """Nearest-rank percentiles in milliseconds ({} when there are no values)."""
    values = sorted(latencies_s)
    if not values:
        return {}
    return {f"p{p}": round(values[max(0, math.ceil(p / 100 * len(values)) - 1)] * 1000, 3)
            for p in points}


def window_bounds(faults: Sequence[FaultWindow], index: int, last_t: float,
                  timing: TimingProfile) -> dict[str, tuple[float, float]]:
    """Before and after are as long as the fault but at least ``MIN_WINDOW_P`` heartbeats (the
    degradation checker's rule), cut at the previous fault's heal, the next fault's injection, the
    run's start and its last event. An unhealed fault lasts until the last event."""
    fault = faults[index]
    end = fault.end(last_t)
    width = max(end - fault.t_fault, MIN_WINDOW_P * timing.heartbeat_s)
    previous = faults[index - 1] if index > 0 else None
    floor = 0.0  # a previous fault never healed is still in place: no clean before window
    if previous is not None:
        floor = previous.t_heal if previous.t_heal is not None else fault.t_fault
    ceiling = faults[index + 1].t_fault if index + 1 < len(faults) else max(last_t, end)
    start = min(max(fault.t_fault - width, floor), fault.t_fault)
    return {"before": (start, fault.t_fault), "during": (fault.t_fault, end),
            "after": (end, max(min(end + width, ceiling), end))}


def _stats(name: str, bounds: tuple[float, float], ops: Sequence[Op], leaders: Sequence[Leadership],
           peers: Mapping[str, Mapping[str, int]]) -> WindowStats:
    """``leader_changes``: leaderships first seen in (start, end] (``harness.history_views``: a new
    term with a leader); ``leaders``: who led in the window, the one in force at its start included."""
    start, end = bounds
    inside = [op for op in ops if start <= op.invoke_t < end]
    ok = [op for op in inside if op.ok]
    latencies = [op.latency_s for op in ok if op.latency_s is not None]
    failed = [op for op in inside if op.kind == "fail"]
    return WindowStats(name, start, end, len(ok), len(failed), sum(1 for op in inside if op.indeterminate),
                       sum(1 for op in failed if op.f == "cas" and op.error is None),
                       percentiles_ms(latencies), leader_changes(leaders, start, end),
                       tuple(sorted({x.leader for x in leaders_during(leaders, start, end)})), peers)


def measure_windows(events: Iterable[Event], timing: TimingProfile) -> list[dict[str, Any]]:
    """One entry per fault: its label, times, whether it bit, and ``windows`` {before, during,
    after} as ``WindowStats.to_dict``. The harness's final reads are left out."""
    events = list(events)
    faults = fault_windows(events)
    ops = [op for op in client_ops(events) if not op.final]
    leaders = leaderships(node_samples(events))
    last_t = history_end(events)
    out = []
    for fault in faults:
        bounds = window_bounds(faults, fault.index, last_t, timing)
        rows, _ = peer_windows(events, fault.index, bounds=bounds)
        peers: dict[str, dict[str, dict[str, int]]] = {w: {} for w in WINDOWS}
        for row in rows:
            peers[row.window][row.peer] = {k: int(row.counters.get(k, 0)) for k in REQUEST_KINDS}
        stats = {w: _stats(w, bounds[w], ops, leaders, peers[w]).to_dict() for w in WINDOWS}
        out.append({"index": fault.index, "fault": fault.label(), "name": fault.fault,
                    "targets": list(fault.targets), "t_fault": round(fault.t_fault, 3),
                    "t_heal": round(fault.t_heal, 3) if fault.t_heal is not None else None,
                    "vacuous": fault.vacuous, "evidence": fault.evidence, "windows": stats})
    return out


def _exercised(events: Sequence[Event], faults: Sequence[FaultWindow], min_ok_before: int) -> str | None:
    """Why the run did not exercise the system (None: it did)."""
    ops = [op for op in client_ops(events) if not op.final]
    ok_before = sum(1 for op in ops if op.ok and op.complete_t is not None
                    and op.complete_t <= faults[0].t_fault)
    if ok_before < min_ok_before:
        return f"only {ok_before} successful op(s) before the first fault (need {min_ok_before})"
    missed = [f.label() for f in faults if not f.injected]
    if missed:
        return f"fault(s) not really injected (no resolved target, or an error): {', '.join(missed)}"
    if all(f.vacuous for f in faults):
        # A schedule exercised the system when any one of its faults bit (or may have: "cannot
        # tell" is not held against the run); a fault shown not to bite is then only a note in
        # ``details.not_bitten``. With every fault shown not to bite, nothing was exercised.
        vacuous = [f"{f.label()}" + (f" ({f.evidence})" if f.evidence else "") for f in faults]
        return f"fault(s) in place but did not bite: {'; '.join(vacuous)}"
    unhealed = [f.label() for f in faults if f.t_heal is None]
    if unhealed:
        return f"fault(s) never healed: {', '.join(unhealed)}"
    last_heal = max(f.t_heal for f in faults if f.t_heal is not None)
    if not any(op.ok and op.invoke_t >= last_heal for op in ops):
        return "no successful operation after the last heal"
    return None


def _pct(rate: float | None) -> str:
    return "–" if rate is None else f"{100 * rate:.0f}%"


def describe(entry: Mapping[str, Any]) -> str:
    """One line for one fault: success rate, p99 latency and leader changes before → during → after."""
    windows = [entry["windows"][w] for w in WINDOWS]
    p99 = ["–" if "p99" not in w["latency_ms"] else f"{w['latency_ms']['p99']:.0f}" for w in windows]
    return (f"{entry['fault']}: success {' → '.join(_pct(w['success_rate']) for w in windows)}, "
            f"p99 {' → '.join(p99)} ms, leader changes "
            f"{'/'.join(str(w['leader_changes']) for w in windows)}")


def check_windows(events: Iterable[Event], min_ok_before: int = MIN_OK_BEFORE) -> Verdict:
    """Measure each fault's before / during / after windows (``details.faults``; see
    ``measure_windows``). A measurement, so valid unless the run did not exercise the system:
    no fault, no timing flags recorded (the window lengths derive from them), fewer than
    ``min_ok_before`` ok ops before the first fault, a fault without resolved targets, every fault
    recorded as vacuous by its heal (one that bit is enough: the others are listed in
    ``details.not_bitten``), a fault never healed, or no ok op after the last heal: then unknown."""
    events = list(events)
    require_well_formed(events, CLIENT | FAULTS | SAMPLES)
    faults = fault_windows(events)
    timing = run_timing(events)

    def unknown(reason: str, details: dict[str, Any]) -> Verdict:
        return Verdict(NAME, Validity.UNKNOWN, f"the harness could not exercise the system: {reason}",
                       {**details, "reason": reason})

    if not faults:
        return unknown("no fault was injected", {"faults": []})
    if timing is None:
        return unknown("the history does not record the cluster's timing flags", {"faults": []})
    measured = measure_windows(events, timing)
    details: dict[str, Any] = {"min_window_s": round(MIN_WINDOW_P * timing.heartbeat_s, 3),
                               "min_ok_before": min_ok_before, "faults": measured,
                               "not_bitten": [f.label() for f in faults if f.vacuous]}
    reason = _exercised(events, faults, min_ok_before)
    if reason is not None:
        return unknown(reason, details)
    if len(measured) <= 2:
        summary = "; ".join(describe(entry) for entry in measured)
    else:
        during = [(entry["windows"]["during"]["success_rate"], entry["fault"]) for entry in measured]
        worst = min((d for d in during if d[0] is not None), default=None)
        summary = f"{len(measured)} faults measured" + (
            f"; lowest success during a fault {_pct(worst[0])} ({worst[1]})" if worst else "")
    if details["not_bitten"]:
        summary += f"; did not bite (the others did): {', '.join(details['not_bitten'])}"
    return Verdict(NAME, Validity.VALID, summary, details)
