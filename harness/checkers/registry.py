"""The one checker registry: which checkers judge a run, and in what order.

The end of a run (``harness.finish.standard_verdicts``: the pytest plugin, ``raftchaos run`` /
``reproduce`` / ``replay`` / ``up``) and ``raftchaos report`` (``reports.recheck``, which re-judges a
saved run with a longer linearizability budget) both run ``STANDARD`` from here, by plain imports,
so the two lists cannot drift and import-linter sees every edge. ``RERUNNABLE`` names the suite
checkers a re-check can run again from a saved verdict's details (degradation: its fault index);
any other suite verdict is kept as saved, since only the suite can recompute it.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.checkers.crashes import check_crashes
from harness.checkers.degradation import check_degradation
from harness.checkers.durability import check_durability
from harness.checkers.invariants import check_invariants
from harness.checkers.linearizable import check_linearizable
from harness.checkers.recovery import check_recovery, heal_bound_s
from harness.checkers.verdict import Verdict, guarded
from harness.checkers.windows import check_windows
from harness.history import Event, EventKind

__all__ = ["LINEARIZABLE_BUDGET_S", "MEMORY_LIMIT_ENV", "RERUNNABLE", "STANDARD", "TIME_LIMIT_ENV",
           "CheckContext", "Checker", "rerun", "run_standard"]

# Wall-clock budget of the linearizability search at teardown: past it the verdict is unknown (the
# search looks at the clock every few thousand steps). `raftchaos report DIR` re-checks with more.
LINEARIZABLE_BUDGET_S = 5.0
# Nightly runs bound the search without code changes: seconds and MB.
TIME_LIMIT_ENV, MEMORY_LIMIT_ENV = "RAFTCHAOS_CHECK_TIME_LIMIT", "RAFTCHAOS_CHECK_MEMORY_LIMIT"


@dataclass(frozen=True)
class CheckContext:
    """What a checker may need beside the events. Limits None: $RAFTCHAOS_CHECK_TIME_LIMIT /
    $RAFTCHAOS_CHECK_MEMORY_LIMIT, else ``LINEARIZABLE_BUDGET_S`` / the checker's own memory bound."""

    run_dir: Path | None = None
    linearizable_time_limit_s: float | None = None
    linearizable_memory_mb: float | None = None


@dataclass(frozen=True)
class Checker:
    """One standard checker: ``applies`` says whether the run gives it anything to judge."""

    name: str
    check: Callable[[Sequence[Event], CheckContext], Verdict]
    applies: Callable[[Sequence[Event]], bool] = lambda events: True


def _faulted(events: Sequence[Event]) -> bool:
    return any(e.get("kind") == EventKind.FAULT.value for e in events)


def _limit(name: str, given: float | None) -> float | None:
    """A positive limit: given, else from the environment variable ``name``, else None. A bad value
    raises inside the guarded checker, so it makes that verdict unknown, naming the variable."""
    if given is not None:
        return given
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return None
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not value > 0:
        raise ValueError(f"${name} must be a positive number, got {raw!r}")
    return value


def _linearizable(events: Sequence[Event], ctx: CheckContext) -> Verdict:
    time_limit_s = _limit(TIME_LIMIT_ENV, ctx.linearizable_time_limit_s)
    return check_linearizable(list(events),
                              time_limit_s=LINEARIZABLE_BUDGET_S if time_limit_s is None else time_limit_s,
                              memory_limit_mb=_limit(MEMORY_LIMIT_ENV, ctx.linearizable_memory_mb))


STANDARD: tuple[Checker, ...] = (
    Checker("durability", lambda events, ctx: check_durability(events)),
    Checker("crashes", lambda events, ctx: check_crashes(events, ctx.run_dir)),
    Checker("invariants", lambda events, ctx: check_invariants(events)),
    Checker("recovery", lambda events, ctx: check_recovery(events, heal_bound_s(events)), _faulted),
    Checker("windows", lambda events, ctx: check_windows(events), _faulted),
    Checker("linearizable", _linearizable),
)


def _degradation(events: Sequence[Event], details: Mapping[str, Any]) -> Verdict:
    index = details.get("fault_index", 0)
    return check_degradation(events, index if isinstance(index, int) and not isinstance(index, bool) else 0)


RERUNNABLE: Mapping[str, Callable[[Sequence[Event], Mapping[str, Any]], Verdict]] = {"degradation": _degradation}


def run_standard(events: Sequence[Event], ctx: CheckContext | None = None) -> list[Verdict]:
    """Every standard checker that applies, each guarded (a checker that raises yields unknown)."""
    ctx = ctx or CheckContext()
    return [guarded(c.name, c.check, events, ctx) for c in STANDARD if c.applies(events)]


def rerun(name: str, events: Sequence[Event], details: Mapping[str, Any]) -> Verdict | None:
    """A saved suite verdict judged again from its details, or None when only its suite can."""
    fn = RERUNNABLE.get(name)
    return None if fn is None else guarded(name, fn, events, details)
