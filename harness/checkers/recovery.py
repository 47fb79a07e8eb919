"""Recovery checker: per fault, time to a new leader (observer samples) and to the next acknowledged write."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from harness.checkers.verdict import Validity, Verdict
from harness.history import Event
from harness.history_views import (
    CLIENT,
    FAULTS,
    SAMPLES,
    FaultWindow,
    LeaderChange,
    Op,
    client_ops,
    fault_windows,
    leader_at,
    leader_changes,
    leader_timeline,
    leaderships,
    node_samples,
    require_well_formed,
    run_nodes,
    run_timing,
)

NAME = "recovery"
MIN_OK_BEFORE = 3


def _round(value: float | None) -> float | None:
    return round(value, 3) if value is not None else None


def _new_leader_s(timeline: Sequence[LeaderChange], fault: FaultWindow) -> tuple[float | None, str | None]:
    """Seconds from the fault to the first agreed leader other than the one before it (another
    node, or the same node in a later term); None when leadership never changed."""
    before = leader_at(timeline, fault.t_fault)
    old = (before.leader, before.term) if before else (None, None)
    for change in timeline:
        if change.t <= fault.t_fault or change.leader is None:
            continue
        if (change.leader, change.term) != old:
            return change.t - fault.t_fault, change.leader
    return None, None


def _first_ack_s(ops: Sequence[Op], since: float, from_first_attempt: bool = False) -> float | None:
    """Seconds from ``since`` to the first acknowledgement of a write invoked at or after it.

    With ``from_first_attempt`` (used after a heal) the count starts at the first client op of any
    kind invoked at or after ``since`` when that is later: a suite that checks its invariants for a
    while before writing again is not charged for its own idleness, while a workload whose writes
    keep failing after the heal is (its failed attempts start the count)."""
    done = [op.complete_t for op in ops if op.is_write and op.ok and op.invoke_t >= since
            and op.complete_t is not None]
    if not done:
        return None
    start = since
    if from_first_attempt:
        start = max(since, min(op.invoke_t for op in ops if op.invoke_t >= since))
    return min(done) - start


def measure(events: Iterable[Event]) -> list[dict[str, Any]]:
    """One row per fault: name, targets, times (s since run start) and recovery durations (s)."""
    events = list(events)
    ops = [op for op in client_ops(events) if not op.final]
    timeline = leader_timeline(events, run_nodes(events))
    rows = []
    for fault in fault_windows(events):
        before = leader_at(timeline, fault.t_fault)
        leader_s, new_leader = _new_leader_s(timeline, fault)
        rows.append({
            "index": fault.index, "fault": fault.fault, "targets": list(fault.targets),
            "term": fault.term, "t_fault": _round(fault.t_fault), "t_heal": _round(fault.t_heal),
            "leader_before": before.leader if before else None, "new_leader": new_leader,
            "new_leader_s": _round(leader_s), "write_s": _round(_first_ack_s(ops, fault.t_fault)),
            "write_after_heal_s": _round(_first_ack_s(ops, fault.t_heal, from_first_attempt=True)
                                          if fault.t_heal is not None else None),
        })
    return rows


def check_recovery(events: Iterable[Event], max_after_heal_s: float | None = None,
                   min_ok_before: int = MIN_OK_BEFORE) -> Verdict:
    """Valid when every fault was followed by an acknowledged write within ``max_after_heal_s``
    of its heal (no bound: measure only). Unknown when the run did not exercise the system:
    no fault, fewer than ``min_ok_before`` ok ops before the first fault, a fault that did not
    really inject, or no successful op after the last heal."""
    events = list(events)
    require_well_formed(events, CLIENT | FAULTS | SAMPLES)
    ops = [op for op in client_ops(events) if not op.final]
    faults = fault_windows(events)
    rows = measure(events)
    details: dict[str, Any] = {"faults": rows, "leader_changes": leader_changes(leaderships(node_samples(events))),
                               "max_after_heal_s": max_after_heal_s}

    def unknown(reason: str) -> Verdict:
        return Verdict(NAME, Validity.UNKNOWN, f"the harness could not exercise the system: {reason}",
                       {**details, "reason": reason})

    if not faults:
        return unknown("no fault was injected")
    ok_before = sum(1 for op in ops if op.ok and op.complete_t is not None
                    and op.complete_t <= faults[0].t_fault)
    if ok_before < min_ok_before:
        return unknown(f"only {ok_before} successful op(s) before the first fault (need {min_ok_before})")
    failed = [f.label() for f in faults if not f.injected]
    if failed:
        return unknown(f"fault(s) not really injected: {', '.join(failed)}")
    unhealed = [f.label() for f in faults if f.t_heal is None]
    if unhealed:
        return unknown(f"fault(s) never healed: {', '.join(unhealed)}")
    last_heal = max(f.t_heal for f in faults if f.t_heal is not None)
    if not any(op.ok and op.invoke_t >= last_heal for op in ops):
        return unknown("no successful operation after the last heal")
    no_write = [f"{r['fault']}({', '.join(r['targets'])})" for r in rows if r["write_after_heal_s"] is None]
    if no_write:
        return unknown(f"no write acknowledged after healing {', '.join(no_write)}")
    slow = [f"{r['fault']}({', '.join(r['targets'])}): {r['write_after_heal_s']:.2f} s" for r in rows
            if max_after_heal_s is not None and r["write_after_heal_s"] > max_after_heal_s]
    times = [r["write_after_heal_s"] for r in rows if r["write_after_heal_s"] is not None]
    worst = max(times) if times else None
    if slow:
        return Verdict(NAME, Validity.INVALID, f"writes did not recover within {max_after_heal_s:.2f} s "
                       f"of healing: {'; '.join(slow)}", details)
    summary = (f"{len(rows)} fault(s); writes acknowledged at most {worst:.2f} s after heal"
               if worst is not None else f"{len(rows)} fault(s)")
    return Verdict(NAME, Validity.VALID, summary + f"; {details['leader_changes']} leader change(s)", details)


def heal_bound_s(events: Iterable[Event]) -> float | None:
    """The bound the plugin applies: one election plus one client op timeout, from the run's own
    timing flags (None when the history does not carry the spec)."""
    timing = run_timing(list(events))
    return timing.new_leader_within_s() + timing.client_timeout_s if timing else None
