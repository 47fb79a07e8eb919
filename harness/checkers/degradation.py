"""Degradation checker: the leader's per-peer counters before, during and after a fault (kuduraft B6/B7)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from harness.checkers.verdict import Validity, Verdict
from harness.history import Event
from harness.history_views import (
    CLIENT,
    FAULTS,
    PEER_COUNTERS,
    SAMPLES,
    FaultWindow,
    client_ops,
    counts_between,
    fault_windows,
    history_end,
    node_samples,
    peer_series,
    require_well_formed,
    run_timing,
)

NAME = "degradation"
WINDOWS = ("before", "during", "after")
COUNTERS = PEER_COUNTERS
# A short fault still gets before/after windows of this many heartbeat periods P, so they hold samples.
MIN_WINDOW_P = 4


@dataclass(frozen=True)
class PeerWindow:
    """What the leader(s) did towards one peer in one window: counter increments, the largest
    ``failed_attempts`` seen, and how many leader samples covered it."""

    peer: str
    window: str
    start_t: float
    end_t: float
    counters: Mapping[str, int]
    failed_attempts_max: int
    samples: int

    @property
    def seconds(self) -> float:
        return self.end_t - self.start_t

    def to_dict(self) -> dict[str, Any]:
        return {"peer": self.peer, "window": self.window, "start_t": round(self.start_t, 3),
                "end_t": round(self.end_t, 3), "seconds": round(self.seconds, 3),
                "counters": dict(self.counters), "failed_attempts_max": self.failed_attempts_max,
                "samples": self.samples}


def _bounds(fault: FaultWindow, last_t: float, window_s: float | None,
            min_window_s: float) -> dict[str, tuple[float, float]]:
    end = fault.end(last_t)  # an unhealed fault lasts until the history's last event
    width = window_s if window_s is not None else max(end - fault.t_fault, min_window_s)
    return {"before": (fault.t_fault - width, fault.t_fault), "during": (fault.t_fault, end),
            "after": (end, end + width)}


def _window_of(t: float, bounds: Mapping[str, tuple[float, float]]) -> str | None:
    for name in WINDOWS:
        low, high = bounds[name]
        if low < t <= high:
            return name
    return None


def peer_windows(events: Iterable[Event], fault_index: int = 0, window_s: float | None = None,
                 bounds: Mapping[str, tuple[float, float]] | None = None
                 ) -> tuple[list[PeerWindow], list[str]]:
    """Per-peer counter increments in the windows around fault ``fault_index`` (before and after
    are as long as the fault, at least 4 P, unless ``window_s`` is given; ``bounds`` gives each
    window's (start, end] outright), and the nodes that led meanwhile.

    Increments come from the shared per-peer series (``harness.history_views.peers``: a new term
    or a counter going down is a reset, a missed sample is not); each counts in the window holding
    the later of its two samples. A peer's row sums every leader's link to it."""
    events = list(events)
    faults = fault_windows(events)
    if not 0 <= fault_index < len(faults):
        raise IndexError(f"fault index {fault_index} out of range ({len(faults)} fault(s))")
    samples = node_samples(events)
    timing = run_timing(events)
    min_window_s = MIN_WINDOW_P * timing.heartbeat_s if timing else 1.0
    if bounds is None:
        bounds = _bounds(faults[fault_index], history_end(events), window_s, min_window_s)
    leaders = sorted({s.node for series in samples.values() for s in series
                      if s.role == "LEADER" and _window_of(s.t, bounds) is not None})
    totals: dict[tuple[str, str], dict[str, int]] = {}
    gauges: dict[tuple[str, str], int] = {}
    counts: dict[tuple[str, str], int] = {}
    links, _ = peer_series(samples)
    for link, points in sorted(links.items()):
        peer = link.split("->", 1)[1]
        for window in WINDOWS:
            low, high = bounds[window]
            inside = [p for p in points if low < p.t <= high]
            if not inside:
                continue
            key = (peer, window)
            bucket = totals.setdefault(key, dict.fromkeys(COUNTERS, 0))
            for name, value in counts_between(points, low, high).items():
                bucket[name] += value
            gauges[key] = max(gauges.get(key, 0), *(p.failed_attempts for p in inside))
            counts[key] = counts.get(key, 0) + len(inside)
    rows = [PeerWindow(peer, window, *bounds[window], totals[(peer, window)], gauges[(peer, window)],
                       counts[(peer, window)])
            for peer, window in sorted(totals, key=lambda k: (k[0], WINDOWS.index(k[1])))]
    return rows, leaders


def _faulted_peers(fault: FaultWindow, leaders: Sequence[str]) -> list[str]:
    """The peers the fault cut from the leader: its node targets other than the leader(s)."""
    return sorted({t for t in fault.targets if "->" not in t and t not in leaders})


def check_degradation(events: Iterable[Event], fault_index: int = 0, window_s: float | None = None,
                      slack_requests: int = 3, max_requests_with_ops_during: int = 2) -> Verdict:
    """For a fault that cuts peers off the leader (isolate, cut-link): while it lasts the leader
    sends each cut peer at most one request per shortest heartbeat period (0.75 P) plus
    ``slack_requests`` (B6, write-driven signals cause no RPCs), and at most
    ``max_requests_with_ops_during`` of them carry ops (B7). P comes from the run's own flags.
    Unknown when the history lacks the fault, the timing, the leader's samples in every window,
    or a stable leader that is not itself a target. ``details.peers`` holds the full table."""
    events = list(events)
    require_well_formed(events, CLIENT | FAULTS | SAMPLES)
    faults = fault_windows(events)
    timing = run_timing(events)
    if not 0 <= fault_index < len(faults):
        return Verdict(NAME, Validity.UNKNOWN, f"no fault #{fault_index} in the history",
                       {"reason": "fault missing"})
    fault = faults[fault_index]
    rows, leaders = peer_windows(events, fault_index, window_s)
    peers = _faulted_peers(fault, leaders)
    details: dict[str, Any] = {"fault": fault.label(), "fault_index": fault_index, "leaders": leaders,
                               "faulted_peers": peers, "peers": [r.to_dict() for r in rows]}

    def unknown(reason: str) -> Verdict:
        return Verdict(NAME, Validity.UNKNOWN, f"the harness could not exercise the system: {reason}",
                       {**details, "reason": reason})

    if not fault.injected:
        return unknown(f"{fault.label()} was not really injected")
    if timing is None:
        return unknown("the history does not record the cluster's timing flags")
    if len(leaders) != 1:
        return unknown(f"no single stable leader around the fault (leaders: {leaders or 'none'})")
    if not peers:
        return unknown(f"{fault.label()} did not cut any peer off leader {leaders[0]}")
    by_key = {(r.peer, r.window): r for r in rows}
    missing = [f"{p}/{w}" for p in peers for w in WINDOWS if (p, w) not in by_key]
    if missing:
        return unknown(f"no leader samples for {', '.join(missing)}")
    ops_after = any(op.is_write and op.ok and fault.t_heal is not None and op.invoke_t >= fault.t_heal
                    for op in client_ops(events))
    problems = []
    for peer in peers:
        during = by_key[(peer, "during")]
        allowed = int(during.seconds / timing.jitter_window_s[0]) + slack_requests
        sent = during.counters["requests_sent"]
        if sent > allowed:
            problems.append(f"{peer}: {sent} requests during {during.seconds:.2f} s (at most {allowed}: "
                            "one per heartbeat)")
        with_ops = during.counters["requests_with_ops"]
        if with_ops > max_requests_with_ops_during:
            problems.append(f"{peer}: {with_ops} requests with ops during the fault "
                            f"(at most {max_requests_with_ops_during})")
        if ops_after and by_key[(peer, "after")].counters["requests_with_ops"] == 0:
            problems.append(f"{peer}: no request with ops after healing although writes went on")
    if problems:
        return Verdict(NAME, Validity.INVALID, "; ".join(problems), details)
    return Verdict(NAME, Validity.VALID, f"leader {leaders[0]} degraded to heartbeats towards "
                   f"{', '.join(peers)} during {fault.label()}", details)
