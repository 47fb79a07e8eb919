"""Replaying a recorded run: its schedule.jsonl re-executed on a fresh cluster of its spec, then compared.

The replay injects at the recorded offsets with the recorded *resolutions* (partition groups,
link ends and jitter draws, the node ids a ``leader`` target resolved to), so the replayed
schedule equals the recorded one step for step; what may differ is how the system reacted. That
is reported as the first divergence of the observed Raft events (agreed leaders and terms, nodes
exiting on their own) between the original history and the replay's.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from faults.catalog import replay_params
from faults.nemesis import read_schedule
from faults.runner import RunOutcome, execute, plan_from_info, read_run_info
from harness.divergence import Divergence, first_divergence, raft_events
from harness.errors import ConfigError
from harness.history import load_history
from harness.schedule import FaultSpec, Step, StepOp
from harness.spec import BackendName, ClusterSpec
from harness.store import open_run_dir

# The fields of an executed step that must match between a run and its replay.
COMPARED = ("step", "op", "slot", "fault", "targets", "skipped")
COMPARED_RESOLVED = ("groups", "links", "drawn_ms")


def replay_steps(executed: Sequence[Mapping[str, Any]]) -> list[Step]:
    """Steps that re-execute ``executed`` (schedule.jsonl lines) at their recorded offsets."""
    steps = []
    for line in executed:
        op = StepOp(line["op"])
        offset = float(line.get("at_s", line.get("offset_s", 0.0)))
        fault = None
        if op is StepOp.INJECT:
            params = replay_params(line["fault"], line.get("params") or {}, line.get("resolved") or {},
                                   line.get("targets") or [])
            fault = FaultSpec(line["fault"], params)
        elif op is StepOp.HEAL and line.get("fault"):
            fault = FaultSpec(line["fault"], line.get("params") or {})
        steps.append(Step(offset, op, int(line["slot"]), fault))
    return steps


def comparable(line: Mapping[str, Any]) -> dict[str, Any]:
    """The part of an executed step that a faithful replay reproduces exactly."""
    out = {k: line.get(k) for k in COMPARED}
    resolved = line.get("resolved") or {}
    out.update({k: resolved.get(k) for k in COMPARED_RESOLVED})
    return out


def schedule_differences(original: Sequence[Mapping[str, Any]], replay: Sequence[Mapping[str, Any]]) -> list[str]:
    """Steps whose fault, targets or resolution differ (empty: the replay executed the same schedule)."""
    out = []
    for i in range(max(len(original), len(replay))):
        a = comparable(original[i]) if i < len(original) else None
        b = comparable(replay[i]) if i < len(replay) else None
        if a != b:
            out.append(f"step {i}: original {a}, replay {b}")
    return out


@dataclass
class ReplayOutcome:
    original: Path
    outcome: RunOutcome
    schedule_differences: list[str]
    divergence: Divergence | None
    original_events: int
    replay_events: int


def recorded_spec(run_dir: Path | str) -> ClusterSpec:
    """The spec a recorded run ran with (its ``spec.json``); ConfigError when there is none."""
    original = open_run_dir(run_dir)
    if not original.spec_path.exists():
        raise ConfigError(f"{run_dir}: no spec.json")
    return ClusterSpec.from_json(original.spec_path.read_text())


def replay_run(run_dir: Path | str, runs_root: Path | None = None,
               backend: BackendName | None = None) -> ReplayOutcome:
    """Re-execute ``run_dir``'s schedule on a fresh cluster of its spec (same seed) and compare;
    ``backend`` (when given) replaces the recorded spec's backend."""
    original = open_run_dir(run_dir)
    if not original.schedule_path.exists():
        raise ConfigError(f"{run_dir}: no schedule.jsonl: the run recorded no nemesis schedule")
    executed = read_schedule(original.schedule_path)
    spec_doc = recorded_spec(run_dir).to_dict()
    spec = ClusterSpec.from_dict({**spec_doc, "run_dir": None, "test_name": f"replay-{spec_doc['test_name']}"[:80],
                                  "backend": backend if backend is not None else spec_doc["backend"]})
    steps = replay_steps(executed)
    run_plan = plan_from_info(read_run_info(original), steps, spec.test_name)
    outcome = execute(spec, run_plan, runs_root)
    replayed = read_schedule(outcome.run.schedule_path) if outcome.run.schedule_path.exists() else []
    a = raft_events(load_history(original.events_path))
    b = raft_events(load_history(outcome.run.events_path))
    return ReplayOutcome(original.path, outcome, schedule_differences(executed, replayed),
                         first_divergence(a, b), len(a), len(b))
