"""Re-running the checkers over a saved history, so any old run can be re-judged without a cluster."""

from __future__ import annotations

import importlib
import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from harness.history import Event
from reports.run_data import RunData, normalise_verdicts, overall_validity

# Checkers are imported defensively: a checker missing from this checkout is reported as skipped
# rather than breaking the report (reports depend on harness.checkers as a data model only).
LINEARIZABLE_TIME_LIMIT_S = 60.0


def _load(module: str, name: str) -> Callable[..., Any] | None:
    try:
        return getattr(importlib.import_module(f"harness.checkers.{module}"), name, None)
    except ImportError:
        return None


def _as_dict(verdict: Any) -> dict[str, Any]:
    return verdict.to_dict() if hasattr(verdict, "to_dict") else dict(verdict)


def _guarded(name: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> dict[str, Any]:
    """A checker's verdict as a dict; a checker that raises becomes unknown, like ``guarded``."""
    guard = _load("verdict", "guarded")
    if guard is not None and not kwargs:
        return _as_dict(guard(name, fn, *args))
    try:
        return _as_dict(fn(*args, **kwargs))
    except Exception as exc:  # a checker failing says nothing about the system under test
        return {"checker": name, "validity": "unknown", "summary": f"checker {name} raised "
                f"{type(exc).__name__}: {exc}", "details": {"reason": "checker raised"}}


def recheck_verdicts(events: Sequence[Event], previous: Sequence[dict[str, Any]],
                     run_dir: Path | None = None) -> tuple[list[dict[str, Any]], list[str]]:
    """(verdicts, skipped checker names). Runs what the plugin runs at the end of a test
    (durability, crashes, invariants; recovery and the fault windows when a fault was injected), linearizability on
    the client ops, and degradation again for each fault a saved degradation verdict named. Saved
    verdicts of other checkers (a suite's own) are kept as they were, since only the suite can
    recompute them."""
    verdicts: list[dict[str, Any]] = []
    skipped: list[str] = []
    rechecked: set[str] = set()

    def run(name: str, module: str, fn_name: str, *args: Any, **kwargs: Any) -> None:
        rechecked.add(name)
        fn = _load(module, fn_name)
        if fn is None:
            skipped.append(name)
        else:
            verdicts.append(_guarded(name, fn, *args, **kwargs))

    run("durability", "durability", "check_durability", events)
    run("crashes", "crashes", "check_crashes", events, run_dir)
    run("invariants", "invariants", "check_invariants", events)
    if any(e.get("kind") == "fault" for e in events):
        bound = _load("recovery", "heal_bound_s")
        run("recovery", "recovery", "check_recovery", events, bound(events) if bound else None)
        run("windows", "windows", "check_windows", events)
    run("linearizable", "linearizable", "check_linearizable", list(events),
        time_limit_s=LINEARIZABLE_TIME_LIMIT_S)
    for old in previous:
        if old["checker"] == "degradation":
            index = old["details"].get("fault_index", 0)
            run("degradation", "degradation", "check_degradation", events,
                index if isinstance(index, int) else 0)
    verdicts += [v for v in previous if v["checker"] not in rechecked]
    return normalise_verdicts(verdicts), skipped


def write_verdicts(data: RunData, verdicts: list[dict[str, Any]]) -> Path:
    """Replace the verdicts in ``verdicts.json``, keeping every other field the plugin wrote (test id,
    outcome, seed); atomically, so a concurrent reader never sees half a file."""
    path = data.run.verdicts_path
    try:
        doc = json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}
    except (OSError, ValueError):
        doc = {}
    if not isinstance(doc, dict):
        doc = {}
    doc.setdefault("schema", 1)
    doc.setdefault("run_id", data.run_id)
    doc["verdict"] = overall_validity(verdicts)
    doc["verdicts"] = verdicts
    doc["rechecked"] = True
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(doc, indent=2, sort_keys=True, default=str), encoding="utf-8")
    tmp.replace(path)
    return path
