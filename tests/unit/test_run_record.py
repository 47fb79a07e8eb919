"""run.json (``harness.runinfo``) and its strict reader, the one checker registry, and the one rule
for "no verdicts" (issue #13 parts 3 and 4)."""

from __future__ import annotations

import ast
import json
from pathlib import Path
from typing import Any

import pytest

from harness.checkers.registry import STANDARD
from harness.checkers.verdict import Validity, Verdict, compose
from harness.errors import ConfigError
from harness.finish import standard_verdicts
from harness.history import History
from harness.runinfo import RUN_INFO, RunRecord, comparable_info
from harness.runplan import RunPlan, Timeline, WorkloadConfig, plan_from_info
from harness.spec import ClusterSpec
from harness.store import RunDir
from harness.workload import WorkloadSpec
from reports.recheck import recheck_verdicts
from reports.run_data import overall_validity

REPO = Path(__file__).resolve().parents[2]


# ---- one rule for "no verdicts" -------------------------------------------------------------------

def test_no_verdicts_is_unknown_in_the_harness_and_in_the_reports() -> None:
    assert compose([]) is Validity.UNKNOWN
    assert compose(v for v in ()) is Validity.UNKNOWN
    assert overall_validity([]) == "unknown"


@pytest.mark.parametrize("validities", [["valid"], ["valid", "unknown"], ["invalid", "valid"],
                                        ["unknown", "invalid", "valid"], ["valid", "valid"]])
def test_the_report_composes_saved_verdicts_as_the_harness_does(validities: list[str]) -> None:
    verdicts = [Verdict(f"c{i}", Validity(v), "s") for i, v in enumerate(validities)]
    assert overall_validity([v.to_dict() for v in verdicts]) == compose(verdicts).value


def test_a_saved_validity_out_of_the_three_counts_as_unknown() -> None:
    assert overall_validity([{"checker": "x", "validity": "maybe"},
                             {"checker": "y", "validity": "valid"}]) == "unknown"


# ---- one checker registry -------------------------------------------------------------------------

def _history(faulted: bool) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = [
        {"t": 0.1, "kind": "invoke", "process": 0, "f": "write", "key": "k", "value": 1, "node": "n1"},
        {"t": 0.2, "kind": "ok", "process": 0, "f": "write", "key": "k", "value": 1, "node": "n1"}]
    if faulted:
        events.append({"t": 0.3, "kind": "fault", "fault": "pause", "targets": ["n2"], "index": 0})
    return events


@pytest.mark.parametrize("faulted", [False, True])
def test_report_rechecks_exactly_what_the_end_of_a_run_checks(faulted: bool) -> None:
    events = _history(faulted)
    at_end = [v.checker for v in standard_verdicts(events, linearizable_budget_s=1.0)]
    again, skipped = recheck_verdicts(events, [])
    assert [v["checker"] for v in again] == at_end and skipped == []
    assert set(at_end) == {c.name for c in STANDARD if c.applies(events)}
    assert ("recovery" in at_end) is faulted


def test_recheck_reruns_degradation_and_keeps_other_suite_verdicts() -> None:
    previous = [{"checker": "degradation", "validity": "valid", "summary": "s", "details": {"fault_index": 0}},
                {"checker": "b20-pending", "validity": "invalid", "summary": "suite's own", "details": {}},
                {"checker": "durability", "validity": "invalid", "summary": "stale", "details": {}}]
    again, _ = recheck_verdicts(_history(True), previous)
    names = [v["checker"] for v in again]
    assert names.count("degradation") == 1 and names.count("durability") == 1
    assert {"checker": "b20-pending", "validity": "invalid", "summary": "suite's own", "details": {}} in again
    assert next(v for v in again if v["checker"] == "durability")["summary"] != "stale"


def test_recheck_imports_its_checkers_plainly() -> None:
    """import-linter sees only static imports: no importlib in the report's re-check."""
    tree = ast.parse((REPO / "reports" / "recheck.py").read_text())
    imported = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    imported |= {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
    assert "importlib" not in imported and "harness.checkers.registry" in imported


# ---- run.json --------------------------------------------------------------------------------------

class _FakeCluster:
    """What RunRecord reads of a cluster: its spec, run directory and history."""

    def __init__(self, tmp_path: Path) -> None:
        self.t = 0.0
        self.spec = ClusterSpec(node_count=3, seed=11, run_dir=tmp_path, test_name="t")
        self.run = RunDir(tmp_path)
        self.history = History(tmp_path / "events.jsonl", clock=self._clock)
        self.history.note("versions", versions={"python": "3", "raftchaos": "x", "toxiproxy": "v2.12.0",
                                                "backend": "local"})

    def _clock(self) -> float:
        return self.t


def test_run_record_writes_what_the_parts_registered(tmp_path: Path) -> None:
    cluster = _FakeCluster(tmp_path)
    record = RunRecord.of(cluster)
    assert RunRecord.of(cluster) is record
    cluster.t = 1.0
    record.begin("suites/test_x.py::test_y")
    record.supervisor_started(0.5, 0.05)
    index = record.workload_started(WorkloadSpec(clients=3, rate_per_s=30.0, keys=4))
    cluster.t = 2.5
    record.schedule_started(tmp_path / "schedule.jsonl", 7, cluster.history.now())
    cluster.t = 9.0
    record.workload_stopped(index)
    cluster.t = 9.5
    record.end()
    doc = json.loads(record.write(cluster).read_text())
    assert (tmp_path / RUN_INFO).exists()
    assert doc["workload"] == {"enabled": True, "clients": 3, "rate_hz": 30.0, "keys": 4,
                               "mix": {"cas": 0.2, "read": 0.4, "write": 0.4}, "op_timeout_s": None}
    assert doc["supervisor"] == {"enabled": True, "restart_delay_s": 0.5, "poll_s": 0.05}
    assert doc["schedule"] == {"file": "schedule.jsonl", "steps": 7, "schedules": 1}
    assert doc["timeline"] == {"workload_start_s": 0.0, "schedule_start_s": 1.5, "workload_stop_s": 8.0}
    assert doc["duration_s"] == 8.5 and doc["seed"] == 11 and doc["versions"]["toxiproxy"] == "v2.12.0"
    assert "run_dir" not in doc["cluster"] and doc["cluster"]["node_count"] == 3
    assert "timeline" not in comparable_info(doc)
    plan = plan_from_info(doc, (), "x")  # the strict reader takes the writer's document back
    assert (plan.workload, plan.supervisor, plan.restart_delay_s, plan.poll_s) == (
        WorkloadConfig(True, 3, 30.0, 4), True, 0.5, 0.05)
    assert plan.timeline == Timeline(0.0, 1.5, 8.0) and plan.duration_s == 8.5
    assert plan.workload_spec() == WorkloadSpec(clients=3, rate_per_s=30.0, keys=4)


def test_a_plan_survives_its_own_info() -> None:
    plan = RunPlan("s", 4.0, True, WorkloadConfig(True, 2, 10.0, 3), (), timeline=Timeline(0.5, 1.0, None),
                   mix={"read": 1.0}, op_timeout_s=0.7, restart_delay_s=0.25, poll_s=0.1)
    assert plan_from_info(plan.info(), (), "s") == plan


@pytest.mark.parametrize(("info", "message"), [
    ({"workloads": "two"}, "workloads must be int"),
    ({"schedule": {"file": "schedule.jsonl", "steps": 3, "schedules": -2}}, "schedule.schedules"),
    ({"workload": {"mix": {"read": "lots"}}}, "workload.mix"),
    ({"workload": {"mix": {"scan": 1.0}}}, "workload:"),
    ({"workload": {"clients": 0}}, "workload:"),
    ({"timeline": {"schedule_start_s": -1}}, "timeline.schedule_start_s"),
    ({"supervisor": {"enabled": True, "poll_s": "fast"}}, "supervisor.poll_s"),
    ({"supervisor": "yes"}, "supervisor must be bool"),
])
def test_a_bad_run_json_is_one_clear_error(info: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        plan_from_info(info, (), "x")
