"""Fault windows: each ``fault`` event and the ``heal`` that closed it (rules: ``harness.history_views``)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from harness.history import Event, EventKind
from harness.history_views.wellformed import number


@dataclass(frozen=True)
class FaultWindow:
    """One injected fault (the ``index``-th ``fault`` event) and its heal. ``vacuous`` is the heal's
    finding: True = in place but did not bite, None = not told (or not healed)."""

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
    def healed(self) -> bool:
        return self.t_heal is not None

    @property
    def injected(self) -> bool:
        """The fault really hit something (no error while injecting, at least one target)."""
        return bool(self.targets) and "error" not in self.params

    def end(self, last_t: float) -> float:
        """When the fault stopped: its heal, else the history's last event (``history_end``)."""
        return self.t_heal if self.t_heal is not None else max(last_t, self.t_fault)

    def label(self) -> str:
        return f"{self.fault}({', '.join(self.targets)})"


def fault_windows(events: Sequence[Event]) -> list[FaultWindow]:
    """Every ``fault`` event in order, each closed by the first later ``heal`` of the same fault and
    targets (module docstring)."""
    opened: list[dict[str, Any]] = []
    for e in events:
        kind, t = e.get("kind"), number(e.get("t"))
        if kind not in (EventKind.FAULT.value, EventKind.HEAL.value) or t is None:
            continue
        name, targets = str(e.get("fault")), tuple(str(x) for x in e.get("targets") or ())
        if kind == EventKind.FAULT.value:
            term = e.get("term")
            params = e.get("params")
            opened.append({"index": len(opened), "fault": name, "t_fault": t, "t_heal": None,
                           "targets": targets, "term": term if type(term) is int else None,
                           "params": dict(params) if isinstance(params, Mapping) else {}})
            continue
        match = next((w for w in opened if w["t_heal"] is None and w["fault"] == name
                      and w["targets"] == targets), None)
        if match is not None:
            vacuous, evidence = e.get("vacuous"), e.get("evidence")
            match.update(t_heal=t, vacuous=vacuous if isinstance(vacuous, bool) else None,
                         evidence=str(evidence) if evidence is not None else None)
    return [FaultWindow(**w) for w in opened]
