"""Re-running the checkers over a saved history, so any old run can be re-judged without a cluster."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from harness.checkers.registry import CheckContext, rerun, run_standard
from harness.history import Event
from reports.run_data import RunData, normalise_verdicts, overall_validity

# A re-check has time the end of a run did not: a longer linearizability search.
LINEARIZABLE_TIME_LIMIT_S = 60.0


def recheck_verdicts(events: Sequence[Event], previous: Sequence[dict[str, Any]],
                     run_dir: Path | None = None) -> tuple[list[dict[str, Any]], list[str]]:
    """(verdicts, skipped checker names). Runs the registry's standard checkers, the ones the end
    of every run runs (``harness.checkers.registry.STANDARD``), with a longer linearizability
    budget, and again each saved suite verdict the registry can re-run (degradation, for the fault
    its details name). Saved verdicts of other checkers (a suite's own) are kept as they were,
    since only the suite can recompute them. ``skipped`` is kept for the report's layout; with one
    registry imported directly no checker can be missing, so it is always empty."""
    verdicts = [v.to_dict() for v in run_standard(events, CheckContext(run_dir, LINEARIZABLE_TIME_LIMIT_S))]
    rechecked = {v["checker"] for v in verdicts}
    kept: list[dict[str, Any]] = []
    for old in normalise_verdicts(list(previous)):
        again = rerun(old["checker"], events, old["details"])
        if again is not None:
            verdicts.append(again.to_dict())
            rechecked.add(old["checker"])
        elif old["checker"] not in rechecked:
            kept.append(old)
    return normalise_verdicts(verdicts + kept), []


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
