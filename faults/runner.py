"""One scenario run end to end: cluster, observer, workload, nemesis, final heal, final reads, verdicts, symptoms.

Used by ``raftchaos run``, ``reproduce`` and ``replay``. The final heal always runs (in the
nemesis, and again in ``finish``) before the checkers read the history. The run directory gets
``run.json`` beside the usual files: the scenario's workload, duration, supervisor and symptoms,
so ``raftchaos replay`` can rebuild the same run around the recorded schedule.
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
from harness.errors import ConfigError
from harness.finish import final_heal, final_reads, standard_verdicts, verdicts_doc, write_verdicts
from harness.history import load_history
from harness.observer import Observer
from harness.schedule import Step, plan
from harness.spec import ClusterSpec
from harness.store import RunDir, new_run_dir
from harness.supervisor import CrashSupervisor
from harness.symptoms import SymptomResult, check_symptom, evaluate
from harness.workload import Workload, WorkloadSpec

RUN_INFO = "run.json"


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
class RunPlan:
    """Everything a run needs besides the cluster spec (a scenario, or a recorded run to replay)."""

    name: str
    duration_s: float
    supervisor: bool
    workload: WorkloadConfig
    steps: tuple[Step, ...]
    expect: tuple[tuple[str, dict[str, Any]], ...] = ()

    def info(self) -> dict[str, Any]:
        return {"name": self.name, "duration_s": self.duration_s, "supervisor": self.supervisor,
                "workload": self.workload.to_dict(), "expect": [[n, p] for n, p in self.expect]}


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
        (cluster.run.path / RUN_INFO).write_text(json.dumps(run_plan.info(), indent=2, sort_keys=True))
        Observer(cluster).start()
        if run_plan.supervisor:
            CrashSupervisor(cluster).start()
        cluster.wait_for_leader()
        if on_started is not None:
            on_started(cluster)
        start = cluster.history.now()
        load = None
        if run_plan.workload.enabled:
            w = run_plan.workload
            load = Workload(cluster, WorkloadSpec(clients=w.clients, rate_per_s=w.rate_hz, keys=w.keys)).start()
        nemesis = Nemesis(cluster, run_plan.steps)
        nemesis.run()
        end = start + run_plan.duration_s
        cluster.wait_until(lambda: cluster.history.now() >= end, f"the run's {run_plan.duration_s:g} s",
                           timeout_s=max(0.0, end - cluster.history.now()) + 5.0, poll_s=0.05)
        if load is not None:
            load.stop()
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


def read_run_info(run: RunDir) -> dict[str, Any]:
    """The run's ``run.json``, checked: ConfigError (one line naming the file) when it is missing,
    not UTF-8 JSON, or of the wrong shape. A replay never falls back to made-up defaults: a run
    without a plan (a pytest run writes none) cannot be rebuilt faithfully."""
    path = run.path / RUN_INFO
    if not path.exists():
        raise ConfigError(f"{path}: missing: only runs of raftchaos run/reproduce/replay/up record "
                          "their plan and can be replayed")
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


def plan_from_info(info: Mapping[str, Any], steps: Sequence[Step], name: str) -> RunPlan:
    """The RunPlan of a recorded run (``run.json``). Absent keys take the scenario defaults (older
    run.json files lack newer keys); present keys of the wrong type or range are a ConfigError."""
    w = info.get("workload", {})
    if not isinstance(w, Mapping):
        raise ConfigError(f"workload must be an object, got {w!r}")
    last = max((s.offset_s for s in steps), default=0.0)
    duration = float(_typed(info, "duration_s", (int, float), last + 2.0, ""))
    if duration > MAX_SECONDS:
        raise ConfigError(f"duration_s must be at most {MAX_SECONDS:g}, got {duration!r}")
    workload = WorkloadConfig(_typed(w, "enabled", bool, True, "workload."),
                              _typed(w, "clients", int, 2, "workload."),
                              float(_typed(w, "rate_hz", (int, float), 20.0, "workload.")),
                              _typed(w, "keys", int, 4, "workload."))
    expect = info.get("expect", [])
    if not isinstance(expect, list) or not all(
            isinstance(x, list) and len(x) == 2 and isinstance(x[0], str) and isinstance(x[1], dict)
            for x in expect):
        raise ConfigError(f"expect must be a list of [symptom, params], got {expect!r}")
    for symptom, params in expect:
        check_symptom(symptom, params)
    return RunPlan(name, duration, _typed(info, "supervisor", bool, False, ""), workload,
                   tuple(steps), tuple((n, dict(p)) for n, p in expect))
