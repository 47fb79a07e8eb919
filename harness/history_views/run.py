"""The run's description as its history recorded it (the ``cluster starting`` note's spec)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from harness.history import Event, EventKind
from harness.timing import TimingProfile


def run_spec(events: Iterable[Event]) -> Mapping[str, Any] | None:
    """The cluster spec the run recorded in its ``cluster starting`` note (None if absent)."""
    for event in events:
        if event.get("kind") == EventKind.NOTE.value and isinstance(event.get("spec"), Mapping):
            return event["spec"]
    return None


def run_nodes(events: Iterable[Event]) -> tuple[str, ...] | None:
    """``n1..nN`` from the recorded spec's ``node_count`` (None when the history has no spec)."""
    spec = run_spec(events)
    count = spec.get("node_count") if spec is not None else None
    if type(count) is not int:
        return None
    return tuple(f"n{i}" for i in range(1, count + 1))


def run_timing(events: Iterable[Event]) -> TimingProfile | None:
    """The run's timing profile (every checker bound derives from it), if the history has it."""
    spec = run_spec(events)
    timing = spec.get("timing") if spec else None
    return TimingProfile(**timing) if isinstance(timing, Mapping) else None
