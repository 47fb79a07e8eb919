"""Driving a plan on a ``Run``: a scenario (``raftchaos run``/``reproduce``) or a recorded run (``replay``).

The lifecycle (run directory, cluster, run.json, final heal and reads, verdicts, close) is
``harness.run.Run``; this module adds what a plan asks for on top of it, on the plan's timeline
counted from the first agreed leader: the workload (started and stopped at its offsets), the
nemesis executing the plan's steps (``faults.nemesis``: it records ``schedule.jsonl`` and ends
with the final heal), the run's planned duration, and the expected symptoms judged over the
history. It lives in the entry layer because it composes ``faults`` with the core; ``faults``
itself keeps faults, schedules and the reading of recorded schedules (``faults.replay``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from faults.nemesis import Nemesis, check_steps
from faults.replay import Recorded, check_replayable, schedule_differences
from faults.scenario import Scenario
from harness.checkers.verdict import Verdict, compose
from harness.cluster import Cluster
from harness.divergence import Divergence, first_divergence, raft_events
from harness.history import Event, load_history
from harness.run import ReportHook, Run
from harness.runplan import RunPlan, plan_from_info
from harness.schedule import plan, read_executed
from harness.spec import BackendName, ClusterSpec
from harness.store import RunDir, new_run_dir
from harness.symptoms import SymptomResult, evaluate
from harness.workload import Workload

__all__ = ["ReplayOutcome", "RunOutcome", "execute", "replay_run", "scenario_plan"]


@dataclass
class RunOutcome:
    """What one run produced: its directory, seed, verdicts, symptoms and nemesis problems."""

    run: RunDir
    seed: int
    verdicts: list[Verdict]
    symptoms: list[SymptomResult]
    nemesis_errors: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    report_error: str | None = None

    @property
    def overall(self) -> str:
        return compose(self.verdicts).value

    @property
    def reproduced(self) -> bool | None:
        """Every expected symptom held (None when the scenario expects none)."""
        return all(s.held for s in self.symptoms) if self.symptoms else None


def scenario_plan(scenario: Scenario, seed: int) -> RunPlan:
    """The scenario's plan: its schedule expanded over the seed, checked step by step."""
    steps = plan(scenario.schedule(), seed)
    check_steps(steps)
    return RunPlan(scenario.name, scenario.duration_s, scenario.supervisor, scenario.workload, tuple(steps),
                   tuple((n, dict(p)) for n, p in scenario.expect))


def execute(spec: ClusterSpec, run_plan: RunPlan, runs_root: Path | None = None,
            report: ReportHook | None = None) -> RunOutcome:
    """Run ``run_plan`` on a fresh cluster of ``spec``; returns after the cluster is stopped and
    the verdicts are written. Ctrl-C stops everything the run started. A cluster whose cleanup
    failed raises HarnessError once the verdicts are written (the CLI's answer is then unknown)."""
    symptoms: list[SymptomResult] = []

    def judge_symptoms(events: Sequence[Event], verdicts: Sequence[Verdict]) -> dict[str, Any]:
        symptoms.extend(evaluate(events, name, params) for name, params in run_plan.expect)
        return {"symptoms": [s.to_dict() for s in symptoms], "schedule_steps": len(nemesis.executed)}

    with Run.for_plan(spec, run_plan, runs_root=runs_root, report=report) as run:
        cluster = run.cluster
        record = run.record
        start = record.start_t if record.start_t is not None else cluster.history.now()
        timeline = run_plan.timeline
        load = None
        if run_plan.workload.enabled:
            _wait_offset(cluster, start, timeline.workload_start_s, "the workload's start")
            load = Workload(cluster, run_plan.workload_spec()).start()
            run.track(load)
        _wait_offset(cluster, start, timeline.schedule_start_s, "the schedule's start")
        nemesis = Nemesis(cluster, run_plan.steps)
        nemesis.run()
        if load is not None and timeline.workload_stop_s is not None and timeline.workload_stop_s < run_plan.duration_s:
            _wait_offset(cluster, start, timeline.workload_stop_s, "the workload's stop")
            load.stop()
        _wait_offset(cluster, start, run_plan.duration_s, f"the run's {run_plan.duration_s:g} s")
        run.end(run_plan.duration_s)
        result = run.finish(judge_symptoms, errors=nemesis.errors)
    if result.close_error is not None:
        raise result.close_error
    return RunOutcome(result.run, result.seed, result.verdicts, symptoms, result.teardown_errors,
                      list(nemesis.skipped), result.report_error)


def _wait_offset(cluster: Cluster, start: float, offset_s: float, what: str) -> None:
    """Wait (deadline-bounded, on the history clock) until ``offset_s`` after ``start``."""
    at = start + offset_s
    cluster.wait_until(lambda: cluster.history.now() >= at, what,
                       timeout_s=max(0.0, at - cluster.history.now()) + 5.0, poll_s=0.05)


@dataclass
class ReplayOutcome:
    original: Path
    outcome: RunOutcome
    schedule_differences: list[str]
    divergence: Divergence | None
    original_events: int
    replay_events: int


def replay_run(run_dir: Path | str, runs_root: Path | None = None, backend: BackendName | None = None,
               recorded: Recorded | None = None, report: ReportHook | None = None) -> ReplayOutcome:
    """Re-execute ``run_dir``'s schedule on a fresh cluster of its spec (same seed, same system)
    around its recorded plan (``run.json``), and compare; ``backend`` (when given) replaces the
    recorded spec's backend. ``recorded``: the directory already checked by
    ``faults.replay.check_replayable`` (else it is checked here)."""
    recorded = recorded or check_replayable(run_dir)
    original = recorded.run
    spec_doc = recorded.spec.to_dict()
    # The same spec (test name included, so run.json compares equal); only the directory says replay.
    replay_dir = new_run_dir(f"replay-{spec_doc['test_name']}"[:80], recorded.spec.seed, runs_root)
    spec = ClusterSpec.from_dict({**spec_doc, "run_dir": str(replay_dir.path),
                                  "backend": backend if backend is not None else spec_doc["backend"]})
    name = recorded.info.get("name")
    name = name if isinstance(name, str) else spec.test_name
    run_plan = replace(plan_from_info(recorded.info, recorded.steps, name), replay_of=str(original.path))
    outcome = execute(spec, run_plan, runs_root, report)
    replayed = read_executed(outcome.run.schedule_path) if outcome.run.schedule_path.exists() else []
    a = raft_events(load_history(original.events_path))
    b = raft_events(load_history(outcome.run.events_path))
    return ReplayOutcome(original.path, outcome, schedule_differences(recorded.executed, replayed),
                         first_divergence(a, b), len(a), len(b))
