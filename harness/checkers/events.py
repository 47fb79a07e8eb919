"""Typed views of a saved history for the checkers: client operations, fault windows, leader timeline."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from harness.history import COMPLETIONS, Event, EventKind
from harness.timing import TimingProfile
from harness.waits import agreed_leader

WRITE_FNS = frozenset({"write", "cas", "append"})


@dataclass(frozen=True)
class Op:
    """One client operation: its invoke and (if any) completion. ``kind`` is ``ok``/``fail``/``info``,
    or None when the history ended before it completed (as indeterminate as ``info``).
    ``final`` marks the harness's own reads after the final heal."""

    process: Any
    f: str
    key: str
    invoke_value: Any
    invoke_t: float
    node: str | None
    kind: str | None = None
    value: Any = None
    complete_t: float | None = None
    error: str | None = None
    final: bool = False

    @property
    def ok(self) -> bool:
        return self.kind == EventKind.OK.value

    @property
    def indeterminate(self) -> bool:
        return self.kind in (EventKind.INFO.value, None)

    @property
    def is_write(self) -> bool:
        return self.f in WRITE_FNS


def client_ops(events: Iterable[Event]) -> list[Op]:
    """Pair each ``invoke`` with the next completion of the same process, in invoke order."""
    open_ops: dict[Any, Event] = {}
    done: list[tuple[Event, Event | None]] = []
    for event in events:
        kind = event.get("kind")
        if kind == EventKind.INVOKE.value:
            previous = open_ops.pop(_pkey(event), None)
            if previous is not None:  # a process invoked twice: the first never completed
                done.append((previous, None))
            open_ops[_pkey(event)] = event
        elif kind in {k.value for k in COMPLETIONS}:
            invoke = open_ops.pop(_pkey(event), None)
            if invoke is not None:
                done.append((invoke, event))
    done.extend((inv, None) for inv in open_ops.values())
    done.sort(key=lambda pair: float(pair[0]["t"]))
    return [_op(inv, comp) for inv, comp in done]


def _pkey(event: Event) -> tuple[Any, bool]:
    return (event.get("process"), bool(event.get("final")))


def _op(inv: Event, comp: Event | None) -> Op:
    op = Op(process=inv.get("process"), f=str(inv.get("f")), key=str(inv.get("key")),
            invoke_value=inv.get("value"), invoke_t=float(inv["t"]), node=inv.get("node"),
            final=bool(inv.get("final")))
    if comp is None:
        return op
    return replace(op, kind=str(comp["kind"]), value=comp.get("value"), complete_t=float(comp["t"]),
                   error=comp.get("error"))


@dataclass(frozen=True)
class FaultWindow:
    """One injected fault and its heal (``t_heal`` None if the history has none). ``vacuous`` is
    the heal's verdict on whether the fault bit (True: in place but did not bite; None: not told)."""

    index: int
    fault: str
    t_fault: float
    t_heal: float | None
    targets: tuple[str, ...]
    term: int | None
    params: Mapping[str, Any] = field(default_factory=dict)
    vacuous: bool | None = None
    evidence: str | None = None

    @property
    def injected(self) -> bool:
        """The fault really hit something (no error while injecting, at least one target)."""
        return bool(self.targets) and "error" not in self.params

    def label(self) -> str:
        return f"{self.fault}({', '.join(self.targets)})"


def fault_windows(events: Iterable[Event]) -> list[FaultWindow]:
    """Every ``fault`` event matched with the first later ``heal`` of the same fault and targets."""
    faults: list[Event] = []
    heals: list[Event] = []
    for event in events:
        if event.get("kind") == EventKind.FAULT.value:
            faults.append(event)
        elif event.get("kind") == EventKind.HEAL.value:
            heals.append(event)
    used: set[int] = set()
    windows = []
    for index, fault in enumerate(faults):
        matched: Event | None = None
        for j, heal in enumerate(heals):
            if (j not in used and heal.get("fault") == fault.get("fault")
                    and heal.get("targets") == fault.get("targets") and heal["t"] >= fault["t"]):
                used.add(j)
                matched = heal
                break
        vacuous = matched.get("vacuous") if matched is not None else None
        evidence = matched.get("evidence") if matched is not None else None
        windows.append(FaultWindow(index, str(fault.get("fault")), float(fault["t"]),
                                   float(matched["t"]) if matched is not None else None,
                                   tuple(fault.get("targets") or ()), fault.get("term"),
                                   dict(fault.get("params") or {}),
                                   vacuous if isinstance(vacuous, bool) else None,
                                   str(evidence) if evidence is not None else None))
    return windows


@dataclass(frozen=True)
class LeaderChange:
    """From ``t`` on, a majority agreed on ``leader`` in ``term`` (None: no agreed leader)."""

    t: float
    leader: str | None
    term: int | None


def leader_timeline(events: Iterable[Event], nodes: Sequence[str] | None = None) -> list[LeaderChange]:
    """The agreed leader over time, from observer samples (the latest sample of each node counts)."""
    latest: dict[str, Mapping[str, Any] | None] = {n: None for n in (nodes or ())}
    timeline: list[LeaderChange] = []
    for event in events:
        if event.get("kind") != EventKind.SAMPLE.value or event.get("node") is None:
            continue
        latest[str(event["node"])] = event.get("status")
        size = len(nodes) if nodes else len(latest)
        leader = agreed_leader(latest, size)
        status = latest.get(leader) if leader else None
        term = int(status["term"]) if status and "term" in status else None
        if not timeline or (timeline[-1].leader, timeline[-1].term) != (leader, term):
            timeline.append(LeaderChange(float(event["t"]), leader, term))
    return timeline


def leader_at(timeline: Sequence[LeaderChange], t: float) -> LeaderChange | None:
    """The timeline entry in force at ``t`` (None before the first sample)."""
    current = None
    for change in timeline:
        if change.t > t:
            break
        current = change
    return current


def leader_changes(timeline: Sequence[LeaderChange]) -> int:
    """How many times a different (leader, term) took over after the first one."""
    elected = [(c.leader, c.term) for c in timeline if c.leader is not None]
    distinct = [pair for i, pair in enumerate(elected) if i == 0 or pair != elected[i - 1]]
    return max(0, len(distinct) - 1)


def run_spec(events: Iterable[Event]) -> Mapping[str, Any] | None:
    """The cluster spec the run recorded in its ``cluster starting`` note (None if absent)."""
    for event in events:
        if event.get("kind") == EventKind.NOTE.value and isinstance(event.get("spec"), Mapping):
            return event["spec"]
    return None


def run_nodes(events: Iterable[Event]) -> tuple[str, ...] | None:
    spec = run_spec(events)
    if spec is None or "node_count" not in spec:
        return None
    return tuple(f"n{i}" for i in range(1, int(spec["node_count"]) + 1))


def run_timing(events: Iterable[Event]) -> TimingProfile | None:
    """The run's timing profile (every checker bound derives from it), if the history has it."""
    spec = run_spec(events)
    timing = spec.get("timing") if spec else None
    return TimingProfile(**timing) if isinstance(timing, Mapping) else None
