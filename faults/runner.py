"""One scenario run end to end: cluster, observer, workload, nemesis, final heal, final reads, verdicts, symptoms.

Used by ``raftchaos run``, ``reproduce`` and ``replay``. The final heal always runs (in the
nemesis, and again in ``finish``) before the checkers read the history. The run directory gets
``run.json`` beside the usual files: the scenario's workload, duration, supervisor and symptoms,
so ``raftchaos replay`` can rebuild the same run around the recorded schedule.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from faults.nemesis import Nemesis, check_steps
from faults.scenario import Scenario, WorkloadConfig
from harness.checkers.verdict import Verdict, compose
from harness.cluster import Cluster
from harness.finish import final_heal, final_reads, standard_verdicts, verdicts_doc, write_verdicts
from harness.history import load_history
from harness.observer import Observer
from harness.schedule import Step, plan
from harness.spec import ClusterSpec
from harness.store import RunDir, new_run_dir
from harness.supervisor import CrashSupervisor
from harness.symptoms import SymptomResult, evaluate
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
    verdicts = standard_verdicts(events)
    symptoms = [evaluate(events, name, params) for name, params in run_plan.expect]
    write_verdicts(run, verdicts_doc(run, verdicts, {
        "test": run_plan.name, "seed": spec.seed, "outcome": "passed" if compose(verdicts).value == "valid" else "failed",
        "teardown_errors": errors + nemesis.errors, "symptoms": [s.to_dict() for s in symptoms]}))
    return RunOutcome(run, spec.seed, verdicts, symptoms, errors + nemesis.errors, list(nemesis.skipped))


def read_run_info(run: RunDir) -> dict[str, Any]:
    path = run.path / RUN_INFO
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def plan_from_info(info: dict[str, Any], steps: Sequence[Step], name: str) -> RunPlan:
    """The RunPlan of a recorded run (defaults where ``run.json`` is missing)."""
    w = info.get("workload") or {}
    last = max((s.offset_s for s in steps), default=0.0)
    return RunPlan(name, float(info.get("duration_s", last + 2.0)), bool(info.get("supervisor", False)),
                   WorkloadConfig(bool(w.get("enabled", True)), int(w.get("clients", 2)),
                                  float(w.get("rate_hz", 20.0)), int(w.get("keys", 4))),
                   tuple(steps), tuple((n, dict(p)) for n, p in info.get("expect", [])))
