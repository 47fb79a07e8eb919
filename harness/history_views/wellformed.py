"""Reading an event's fields the views' way, and saying which events they cannot read (``malformed``)."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

from harness.errors import HarnessError
from harness.history import Event, EventKind

_NON_CLIENT_PROCESSES = frozenset({"nemesis", "observer", "harness"})  # Jepsen logs nemesis ops as info
# Event kinds by what they tell (``require_well_formed``'s argument).
CLIENT = frozenset({"invoke", "ok", "fail", "info"})
FAULTS = frozenset({EventKind.FAULT.value, EventKind.HEAL.value})
SAMPLES = frozenset({EventKind.SAMPLE.value})
NODES = frozenset({EventKind.NODE.value})


def number(value: Any) -> float | None:
    """``value`` as a float when it is a finite int or float (not a bool), else None."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return None
    return float(value)


def history_end(events: Iterable[Event]) -> float:
    """The history's last ``t`` (0.0 when empty): where an unhealed fault and the plots end."""
    return max((t for t in (number(e.get("t")) for e in events) if t is not None), default=0.0)


class MalformedHistory(HarnessError):
    """An event a view needs cannot be read: nothing can be concluded from the history."""


def _problem(e: Event) -> str | None:
    kind = e.get("kind")
    if number(e.get("t")) is None:
        return f"{kind} event without a finite number t ({e.get('t')!r})"
    if kind in CLIENT and type(e.get("process")) is not int and e.get("process") not in _NON_CLIENT_PROCESSES:
        return f"{kind} event whose process is not an int ({e.get('process')!r})"
    if kind in ("sample", "node") and not isinstance(e.get("node"), str):
        return f"{kind} event without a node"
    return None


def malformed(events: Sequence[Event], kinds: Iterable[str] | None = None) -> list[str]:
    """``event N: problem`` (N: 0-based position) for each event of ``kinds`` (None: the kinds these
    views read) that the views leave out or cannot pair: also, for client events, a process that
    invokes again before its op completed (the first op stays open) and a completion without an
    invoke, as the linearizability checker's strict reader (``history_ops.parse_history``) has it."""
    wanted = frozenset(kinds) if kinds is not None else CLIENT | FAULTS | SAMPLES | NODES
    out = []
    pending: dict[tuple[int, bool], int] = {}
    for i, e in enumerate(events):
        kind = e.get("kind")
        if kind not in wanted:
            continue
        problem = _problem(e)
        if problem is None and kind in CLIENT and type(e.get("process")) is int:
            pkey = (e["process"], bool(e.get("final")))
            if kind == "invoke":
                if pkey in pending:
                    problem = f"process {pkey[0]} invoked again before its op (event {pending[pkey]}) completed"
                pending[pkey] = i
            elif pending.pop(pkey, None) is None:
                problem = f"{kind} of process {pkey[0]} without an invoke"
        if problem is not None:
            out.append(f"event {i}: {problem}")
    return out


def require_well_formed(events: Sequence[Event], kinds: Iterable[str]) -> None:
    """MalformedHistory naming the first (and counting the) malformed events of ``kinds``: a
    checker calls this first, so a verdict never rests on a history it read only in part."""
    problems = malformed(events, kinds)
    if problems:
        more = f" (+{len(problems) - 1} more)" if len(problems) > 1 else ""
        raise MalformedHistory(f"malformed history: {problems[0]}{more}")
