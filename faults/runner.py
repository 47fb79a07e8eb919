"""One scenario run end to end: cluster, observer, workload, nemesis, final heal, final reads, verdicts, symptoms.

Used by ``raftchaos run``, ``reproduce`` and ``replay``. The final heal always runs (in the
nemesis, and again in ``finish``) before the checkers read the history. The run directory gets
``run.json`` beside the usual files (``harness.runinfo``, the one writer, shared with the pytest
plugin and ``up``): the workload, supervisor and schedule as they ran, duration and symptoms, so
``raftchaos replay`` can rebuild the same run around the recorded schedule. ``read_run_info`` /
``plan_from_info`` are its strict reader.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from faults.nemesis import Nemesis, check_steps
from faults.scenario import MAX_SECONDS, Scenario, WorkloadConfig
from harness.checkers.verdict import Verdict, compose
from harness.cluster import Cluster
from harness.errors import ConfigError, HarnessError
from harness.finish import final_heal, final_reads, standard_verdicts, verdicts_doc, write_verdicts
from harness.history import OpFn, load_history
from harness.observer import Observer
from harness.runinfo import RUN_INFO, RunRecord
from harness.schedule import Step, plan
from harness.spec import ClusterSpec
from harness.store import RunDir, new_run_dir
from harness.supervisor import CrashSupervisor
from harness.symptoms import SymptomResult, check_symptom, evaluate
from harness.workload import Workload, WorkloadSpec

__all__ = ["RUN_INFO", "RunOutcome", "RunPlan", "execute", "plan_from_info", "read_run_info", "scenario_plan"]


@dataclass
class RunOutcome:
    """What one run produced: its directory, seed, verdicts, symptoms and nemesis problems."""

    run: RunDir
    seed: int
    verdicts: list[Verdict]
    symptoms: list[SymptomResult]
    nemesis_errors: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)

    @property
    def overall(self) -> str:
        return compose(self.verdicts).value

    @property
    def reproduced(self) -> bool | None:
        """Every expected symptom held (None when the scenario expects none)."""
        return all(s.held for s in self.symptoms) if self.symptoms else None


@dataclass(frozen=True)
class Timeline:
    """When the workload starts, the schedule starts and the workload stops, in seconds after the
    first agreed leader. A scenario starts both at once; a suite test that waited for writes
    before its nemesis is replayed with the same lead (``run.json`` ``timeline``)."""

    workload_start_s: float = 0.0
    schedule_start_s: float = 0.0
    workload_stop_s: float | None = None  # None: at the end of the run

    def to_dict(self) -> dict[str, Any]:
        return {"workload_start_s": self.workload_start_s, "schedule_start_s": self.schedule_start_s,
                "workload_stop_s": self.workload_stop_s}


@dataclass(frozen=True)
class RunPlan:
    """Everything a run needs besides the cluster spec (a scenario, or a recorded run to replay).
    ``mix``/``op_timeout_s``/``restart_delay_s``/``poll_s`` None: the harness's defaults."""

    name: str
    duration_s: float
    supervisor: bool
    workload: WorkloadConfig
    steps: tuple[Step, ...]
    expect: tuple[tuple[str, dict[str, Any]], ...] = ()
    timeline: Timeline = Timeline()
    mix: Mapping[str, float] | None = None
    op_timeout_s: float | None = None
    restart_delay_s: float | None = None
    poll_s: float | None = None
    replay_of: str | None = None

    def info(self) -> dict[str, Any]:
        """The plan as ``plan_from_info`` reads it back (``up`` hands it to its supervisor process)."""
        workload = {**self.workload.to_dict(), "mix": dict(self.mix) if self.mix else None,
                    "op_timeout_s": self.op_timeout_s}
        supervisor = {"enabled": self.supervisor, "restart_delay_s": self.restart_delay_s, "poll_s": self.poll_s}
        return {"name": self.name, "duration_s": self.duration_s, "supervisor": supervisor, "workload": workload,
                "timeline": self.timeline.to_dict(), "expect": [[n, p] for n, p in self.expect]}

    def workload_spec(self) -> WorkloadSpec:
        w = self.workload
        extra: dict[str, Any] = {"op_timeout_s": self.op_timeout_s}
        if self.mix:
            extra["mix"] = {OpFn(f): weight for f, weight in self.mix.items()}
        return WorkloadSpec(clients=w.clients, rate_per_s=w.rate_hz, keys=w.keys, **extra)

    def crash_supervisor(self, cluster: Cluster) -> CrashSupervisor:
        supervisor = CrashSupervisor(cluster)
        if self.restart_delay_s is not None:
            supervisor.restart_delay_s = self.restart_delay_s
        if self.poll_s is not None:
            supervisor.poll_s = self.poll_s
        return supervisor


def scenario_plan(scenario: Scenario, seed: int) -> RunPlan:
    steps = plan(scenario.schedule(), seed)
    check_steps(steps)
    return RunPlan(scenario.name, scenario.duration_s, scenario.supervisor, scenario.workload, tuple(steps),
                   tuple((n, dict(p)) for n, p in scenario.expect))


def execute(spec: ClusterSpec, run_plan: RunPlan, runs_root: Path | None = None,
            on_started: Callable[[Cluster], None] | None = None) -> RunOutcome:
    """Run ``run_plan`` on a fresh cluster of ``spec``; returns after the cluster is stopped and
    the verdicts are written. Ctrl-C stops everything the run started (the cluster's exit stack)."""
    if spec.run_dir is None:
        spec = ClusterSpec.from_dict({**spec.to_dict(), "run_dir": str(new_run_dir(spec.test_name, spec.seed,
                                                                                   runs_root).path)})
    nemesis: Nemesis | None = None
    errors: list[str] = []
    with Cluster(spec) as cluster:
        record = RunRecord.of(cluster)
        Observer(cluster).start()
        if run_plan.supervisor:
            run_plan.crash_supervisor(cluster).start()
        cluster.wait_for_leader()
        record.begin(run_plan.name, run_plan.expect, run_plan.replay_of)
        record.write(cluster)
        if on_started is not None:
            on_started(cluster)
        start = record.start_t if record.start_t is not None else cluster.history.now()
        timeline = run_plan.timeline
        load = None
        if run_plan.workload.enabled:
            _wait_offset(cluster, start, timeline.workload_start_s, "the workload's start")
            load = Workload(cluster, run_plan.workload_spec()).start()
        _wait_offset(cluster, start, timeline.schedule_start_s, "the schedule's start")
        nemesis = Nemesis(cluster, run_plan.steps)
        nemesis.run()
        if load is not None and timeline.workload_stop_s is not None and timeline.workload_stop_s < run_plan.duration_s:
            _wait_offset(cluster, start, timeline.workload_stop_s, "the workload's stop")
            load.stop()
        _wait_offset(cluster, start, run_plan.duration_s, f"the run's {run_plan.duration_s:g} s")
        record.end(run_plan.duration_s)
        if load is not None:
            load.stop()
        record.write(cluster)
        for step in (lambda: final_heal(cluster), lambda: final_reads(cluster)):
            try:
                step()
            except Exception as exc:  # noqa: BLE001 - the checkers judge what is left
                errors.append(f"{type(exc).__name__}: {exc}")
        run = cluster.run
    events = load_history(run.events_path)
    verdicts = standard_verdicts(events, run_dir=run.path)
    symptoms = [evaluate(events, name, params) for name, params in run_plan.expect]
    write_verdicts(run, verdicts_doc(run, verdicts, {
        "test": run_plan.name, "seed": spec.seed, "outcome": "passed" if compose(verdicts).value == "valid" else "failed",
        "teardown_errors": errors + nemesis.errors, "symptoms": [s.to_dict() for s in symptoms],
        "schedule_steps": len(nemesis.executed)}))
    return RunOutcome(run, spec.seed, verdicts, symptoms, errors + nemesis.errors, list(nemesis.skipped))


def _wait_offset(cluster: Cluster, start: float, offset_s: float, what: str) -> None:
    """Wait (deadline-bounded, on the history clock) until ``offset_s`` after ``start``."""
    at = start + offset_s
    cluster.wait_until(lambda: cluster.history.now() >= at, what,
                       timeout_s=max(0.0, at - cluster.history.now()) + 5.0, poll_s=0.05)


def read_run_info(run: RunDir) -> dict[str, Any]:
    """The run's ``run.json``, checked: ConfigError (one line naming the file) when it is missing,
    not UTF-8 JSON, or of the wrong shape. A replay never falls back to made-up defaults: a run
    without a plan (a run older than run.json) cannot be rebuilt faithfully."""
    path = run.path / RUN_INFO
    if not path.exists():
        raise ConfigError(f"{path}: missing: the run recorded no plan (made before run.json was written "
                          "by every run), so it cannot be replayed faithfully")
    try:
        data = json.loads(path.read_bytes().decode("utf-8"))
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text (offset {exc.start})") from None
    except ValueError as exc:
        raise ConfigError(f"{path}: not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: must be a JSON object, got {type(data).__name__}")
    try:
        plan_from_info(data, (), "check")
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None
    return data


def _typed(doc: Mapping[str, Any], key: str, kinds: type | tuple[type, ...], default: Any, what: str) -> Any:
    value = doc.get(key, default)
    if isinstance(value, bool) is not (kinds is bool) or not isinstance(value, kinds):
        raise ConfigError(f"{what}{key} must be {getattr(kinds, '__name__', 'a number')}, got {value!r}")
    if isinstance(value, int | float) and not isinstance(value, bool) and (not math.isfinite(value) or value < 0):
        raise ConfigError(f"{what}{key} must be a finite number >= 0, got {value!r}")
    return value


def _optional(doc: Mapping[str, Any], key: str, what: str) -> float | None:
    """A finite number >= 0 or null/absent (None)."""
    return None if doc.get(key) is None else float(_typed(doc, key, (int, float), None, what))


def _section(info: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    value = info.get(key)
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ConfigError(f"{key} must be an object, got {value!r}")
    return value


def plan_from_info(info: Mapping[str, Any], steps: Sequence[Step], name: str) -> RunPlan:
    """The RunPlan of a recorded run (``run.json``, ``harness.runinfo``). Absent keys take the
    scenario defaults (older run.json files lack newer keys: ``supervisor`` was a bare boolean, no
    ``timeline``); present keys of the wrong type or range are a ConfigError. (Whether the run can
    be replayed at all is ``faults.replay.check_replayable``'s question.)"""
    w = _section(info, "workload")
    last = max((s.offset_s for s in steps), default=0.0)
    duration = float(_typed(info, "duration_s", (int, float), last + 2.0, ""))
    if duration > MAX_SECONDS:
        raise ConfigError(f"duration_s must be at most {MAX_SECONDS:g}, got {duration!r}")
    _typed(info, "workloads", int, 1, "")
    _typed(_section(info, "schedule"), "schedules", int, 1, "schedule.")
    workload = WorkloadConfig(_typed(w, "enabled", bool, True, "workload."),
                              _typed(w, "clients", int, 2, "workload."),
                              float(_typed(w, "rate_hz", (int, float), 20.0, "workload.")),
                              _typed(w, "keys", int, 4, "workload."))
    mix = w.get("mix")
    if mix is not None and not (isinstance(mix, Mapping) and all(
            isinstance(k, str) and isinstance(v, int | float) and not isinstance(v, bool) for k, v in mix.items())):
        raise ConfigError(f"workload.mix must map operations to weights, got {mix!r}")
    supervisor_doc = info.get("supervisor", False)
    sup: Mapping[str, Any] = (supervisor_doc if isinstance(supervisor_doc, Mapping)  # older files: a bool
                              else {"enabled": _typed(info, "supervisor", bool, False, "")})
    t = _section(info, "timeline")
    timeline = Timeline(_optional(t, "workload_start_s", "timeline.") or 0.0,
                        _optional(t, "schedule_start_s", "timeline.") or 0.0,
                        _optional(t, "workload_stop_s", "timeline."))
    expect = info.get("expect", [])
    if not isinstance(expect, list) or not all(
            isinstance(x, list) and len(x) == 2 and isinstance(x[0], str) and isinstance(x[1], dict)
            for x in expect):
        raise ConfigError(f"expect must be a list of [symptom, params], got {expect!r}")
    for symptom, params in expect:
        check_symptom(symptom, params)
    run_plan = RunPlan(name, duration, _typed(sup, "enabled", bool, False, "supervisor."), workload,
                       tuple(steps), tuple((n, dict(p)) for n, p in expect), timeline,
                       dict(mix) if mix else None, _optional(w, "op_timeout_s", "workload."),
                       _optional(sup, "restart_delay_s", "supervisor."), _optional(sup, "poll_s", "supervisor."))
    if workload.enabled:
        try:
            run_plan.workload_spec()
        except (ValueError, HarnessError) as exc:  # clients/keys/rate out of range, a bad mix
            raise ConfigError(f"workload: {exc}") from None
    return run_plan
