"""Replaying a recorded run, its faults' side: reading and checking what a replay needs, the steps that
re-execute a recorded schedule, and what a faithful replay must reproduce.

The run itself (a fresh cluster of the recorded spec around the recorded plan) is driven by the
entry layer, ``harness.entry.cli.runs.replay_run``: ``faults`` does not own run orchestration. The
replay injects at the recorded offsets with the recorded *resolutions* (partition groups,
link ends and jitter draws, the node ids a ``leader`` target resolved to), so the replayed
schedule equals the recorded one step for step; what may differ is how the system reacted. That
is reported as the first divergence of the observed Raft events (agreed leaders and terms, nodes
exiting on their own) between the original history and the replay's.

Around the schedule the replay rebuilds the run from its ``run.json`` (``harness.runinfo``, written
by every entry point, the pytest plugin included): the workload's clients, rate, keys and mix, the
supervisor's settings, and when the workload and the schedule started after the first leader, as
the original ran them, never the defaults; the replay's own ``run.json`` names the original in
``replay_of`` and otherwise equals it but for the measured ``timeline``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from faults.catalog import replay_params
from harness.errors import ConfigError, HarnessError, read_utf8
from harness.history import load_history
from harness.runplan import read_run_info
from harness.schedule import FaultSpec, Step, StepOp, read_executed
from harness.spec import ClusterSpec
from harness.store import RunDir, open_run_dir

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


def recorded_spec(run_dir: Path | str) -> ClusterSpec:
    """The spec a recorded run ran with (its ``spec.json``); ConfigError naming the file when it is
    missing, unreadable or not a valid spec."""
    original = open_run_dir(run_dir)
    path = original.spec_path
    if not path.exists():
        raise ConfigError(f"{path}: missing")
    try:
        return ClusterSpec.from_json(read_utf8(path))
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{path}: not a valid cluster spec: {exc}") from None


def _recorded_steps(run: RunDir) -> int | None:
    """How many steps the run's own verdicts.json says its nemesis executed (None: not recorded)."""
    try:
        doc = json.loads(read_utf8(run.verdicts_path))
    except (ConfigError, ValueError):
        return None
    count = doc.get("schedule_steps") if isinstance(doc, dict) else None
    return count if isinstance(count, int) and not isinstance(count, bool) else None


@dataclass(frozen=True)
class Recorded:
    """A run directory's files, read and checked before a replay starts anything."""

    run: RunDir
    spec: ClusterSpec
    info: dict[str, Any]
    executed: list[dict[str, Any]]
    steps: list[Step]


def check_replayable(run_dir: Path | str) -> Recorded:
    """Read and check every file a replay needs (spec.json, run.json, schedule.jsonl,
    events.jsonl); ConfigError naming the file and the problem. A torn or truncated schedule is an
    error here: "replayed identically" may only ever be said of the whole recorded schedule."""
    original = open_run_dir(run_dir)
    spec = recorded_spec(run_dir)
    info = read_run_info(original)
    for count, what in ((info.get("workloads", 1), "workloads"),
                        ((info.get("schedule") or {}).get("schedules", 1), "nemesis schedules")):
        if count > 1:  # a replay rebuilding one of them would not be that run
            raise ConfigError(f"{original.path / 'run.json'}: the run used {count} {what}; "
                              "a replay rebuilds a run with at most one")
    if not original.schedule_path.exists():
        raise ConfigError(f"{original.schedule_path}: missing: the run recorded no nemesis schedule")
    executed = read_executed(original.schedule_path, _recorded_steps(original))
    try:
        steps = replay_steps(executed)
    except (KeyError, ValueError, TypeError, HarnessError) as exc:
        raise ConfigError(f"{original.schedule_path}: a step cannot be replayed: {exc}") from None
    try:
        read_utf8(original.events_path)  # UTF-8 (load_history would replace bad bytes silently)
        load_history(original.events_path)
    except OSError as exc:
        raise ConfigError(f"{original.events_path}: cannot read: {exc.strerror or exc}") from None
    except HarnessError as exc:
        raise ConfigError(str(exc)) from None
    return Recorded(original, spec, info, executed, steps)
