"""``harness.run.Run``: the one lifecycle of the plugin, the scenario runner and ``up`` (issue #13 part 3).

A stand-in cluster records the order of what the run does to it; the observer, crash supervisor,
final heal and final reads are replaced by recorders (they are tested where they live), so these
tests pin the sequence, the error handling and the files, not the cluster's behaviour.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import harness.run as run_module
from harness.checkers.verdict import Validity, Verdict
from harness.errors import HarnessError, WaitTimeout
from harness.history import History
from harness.run import Run
from harness.runinfo import RUN_INFO
from harness.runplan import RunPlan, WorkloadConfig
from harness.spec import ClusterSpec
from harness.store import RunDir

SEED = 4242


class FakeCluster:
    """What Run touches of a Cluster, each call appended to ``calls``."""

    def __init__(self, spec: ClusterSpec, calls: list[str], *, leader_error: BaseException | None = None,
                 close_error: HarnessError | None = None) -> None:
        self.spec = spec
        self.calls = calls
        self.leader_error = leader_error
        self.close_error = close_error
        self.closed_with: list[BaseException | None] = []
        self.t = 0.0
        self._history: History | None = None

    @property
    def run(self) -> RunDir:
        assert self.spec.run_dir is not None
        return RunDir(Path(self.spec.run_dir))

    @property
    def history(self) -> History:
        assert self._history is not None, "history used before the cluster started"
        return self._history

    def start_cluster(self) -> None:
        self.calls.append("start")
        self.run.create()
        self._history = History(self.run.events_path, clock=lambda: self.t)
        self._history.note("versions", versions={"python": "3", "backend": "local"})

    def wait_for_leader(self) -> None:
        self.calls.append("leader")
        if self.leader_error is not None:
            raise self.leader_error
        self.t = 1.0

    def close(self, primary: BaseException | None = None, reraise: bool = True) -> None:
        if self.calls and self.calls[-1].startswith("close"):
            return
        self.calls.append("close")
        self.closed_with.append(primary)
        if self.close_error is not None and primary is None and reraise:
            raise self.close_error


class Part:
    def __init__(self, calls: list[str], name: str, error: Exception | None = None) -> None:
        self.calls, self.name, self.error = calls, name, error

    def stop(self) -> None:
        self.calls.append(f"stop {self.name}")
        if self.error is not None:
            raise self.error


@pytest.fixture
def calls(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The shared call log, with the observer, supervisor, final heal and final reads recorded."""
    log: list[str] = []

    class Recorder:
        def __init__(self, what: str) -> None:
            self.what = what

        def __call__(self, cluster: Any) -> Recorder:
            return self

        def start(self) -> None:
            log.append(f"{self.what} started")

    class Supervisor(Recorder):
        def __init__(self, cluster: Any) -> None:
            super().__init__("supervisor")
            self.restart_delay_s, self.poll_s = 0.5, 0.05

        def start(self) -> None:
            log.append(f"supervisor started {self.restart_delay_s} {self.poll_s}")

    monkeypatch.setattr(run_module, "Observer", Recorder("observer"))
    monkeypatch.setattr(run_module, "CrashSupervisor", Supervisor)
    monkeypatch.setattr(run_module, "final_heal", lambda cluster: log.append("final heal"))
    monkeypatch.setattr(run_module, "final_reads", lambda cluster: log.append("final reads"))
    return log


def _spec(tmp_path: Path, **kw: Any) -> ClusterSpec:
    print(f"seed={SEED}")
    return ClusterSpec(node_count=3, seed=SEED, test_name="lifecycle", run_dir=kw.pop("run_dir", tmp_path / "run"),
                       **kw)


def _factory(calls: list[str], **kw: Any) -> Callable[[ClusterSpec], Any]:
    made: list[FakeCluster] = []

    def make(spec: ClusterSpec) -> Any:
        made.append(FakeCluster(spec, calls, **kw))
        return made[-1]
    make.made = made  # type: ignore[attr-defined]
    return make


def test_a_run_starts_ends_judges_and_reports_in_one_order(tmp_path: Path, calls: list[str]) -> None:
    reported: list[Path] = []

    def report(run: RunDir) -> None:
        calls.append("report")
        reported.append(run.path)
        assert run.verdicts_path.exists()  # the hook renders from the finished directory

    with Run(_spec(tmp_path), "suite::test", supervisor=True, poll_s=0.2, report=report,
             cluster_factory=_factory(calls)) as run:
        info = json.loads((run.run_dir.path / RUN_INFO).read_text())
        assert info["name"] == "suite::test" and info["seed"] == SEED and info["system"] == "kuduraft"
        run.track(Part(calls, "workload"))
        run.record_verdict(Verdict("suite-own", Validity.VALID, "fine"))
        calls.append("body")
    assert calls == ["start", "observer started", "supervisor started 0.5 0.2", "leader", "body",
                     "stop workload", "final heal", "final reads", "close", "report"]
    result = run.finished
    assert result is not None and reported == [run.run_dir.path]
    doc = json.loads(run.run_dir.verdicts_path.read_text())
    assert doc["test"] == "suite::test" and doc["seed"] == SEED and doc["teardown_errors"] == []
    assert "suite-own" in [v["checker"] for v in doc["verdicts"]]
    assert [v.checker for v in result.verdicts][-1] == "suite-own"
    assert doc["outcome"] == ("passed" if result.overall is Validity.VALID else "failed")


def test_the_run_directory_is_made_before_anything_starts(tmp_path: Path, calls: list[str]) -> None:
    run = Run(_spec(tmp_path, run_dir=None), runs_root=tmp_path / "runs", cluster_factory=_factory(calls))
    assert run.run_dir.path.parent == tmp_path / "runs" and run.run_dir.path.is_dir()
    assert run.run_dir.run_id.endswith(f"-lifecycle-{SEED}") and calls == [] and not run.started
    assert run.name == "lifecycle"


def test_a_failing_teardown_step_is_collected_and_the_rest_still_runs(tmp_path: Path, calls: list[str],
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    def broken_heal(cluster: Any) -> None:
        calls.append("final heal")
        raise HarnessError("toxiproxy went away")
    monkeypatch.setattr(run_module, "final_heal", broken_heal)
    run = Run(_spec(tmp_path), cluster_factory=_factory(calls))
    run.start()
    run.track(Part(calls, "w1", ValueError("stuck client")))
    run.track(Part(calls, "w2"))
    result = run.finish(errors=["nemesis: inject failed"])
    assert calls[-5:] == ["stop w1", "stop w2", "final heal", "final reads", "close"]
    assert result.teardown_errors == ["ValueError: stuck client", "HarnessError: toxiproxy went away",
                                      "nemesis: inject failed"]
    doc = json.loads(run.run_dir.verdicts_path.read_text())
    assert doc["teardown_errors"] == result.teardown_errors
    assert run.finish() is result  # idempotent


def test_a_cleanup_failure_is_reported_and_the_run_still_judged(tmp_path: Path, calls: list[str]) -> None:
    run = Run(_spec(tmp_path), cluster_factory=_factory(calls, close_error=HarnessError("port still bound")))
    run.start()
    result = run.finish()
    assert result.close_error is not None and "port still bound" in result.teardown_errors[-1]
    assert run.run_dir.verdicts_path.exists()


def test_a_checker_that_raises_still_leaves_an_unknown_verdict(tmp_path: Path, calls: list[str],
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """A bug in a checker (or an unreadable history) after the cluster closed: verdicts.json is
    still written, unknown with the reason, never missing (review of the Run lifecycle)."""
    def broken(*_args: Any, **_kwargs: Any) -> Any:
        raise KeyError("term")
    monkeypatch.setattr(run_module, "standard_verdicts", broken)
    run = Run(_spec(tmp_path), cluster_factory=_factory(calls))
    run.start()
    result = run.finish()
    assert calls[-1] == "close"
    assert [v.validity for v in result.verdicts] == [Validity.UNKNOWN]
    assert "could not be judged: KeyError" in result.verdicts[0].summary
    doc = json.loads(run.run_dir.verdicts_path.read_text())
    assert "judging failed: KeyError: 'term'" in doc["teardown_errors"]


def test_an_error_in_the_block_closes_the_cluster_without_a_verdict(tmp_path: Path, calls: list[str]) -> None:
    boom = RuntimeError("the body broke")
    with pytest.raises(RuntimeError), Run(_spec(tmp_path), cluster_factory=_factory(calls)) as run:
        raise boom
    assert calls[-1] == "close" and not run.run_dir.verdicts_path.exists() and run.finished is None


def test_no_leader_at_start_stops_what_started(tmp_path: Path, calls: list[str]) -> None:
    factory = _factory(calls, leader_error=WaitTimeout("a leader", 5.0))
    with pytest.raises(WaitTimeout), Run(_spec(tmp_path), cluster_factory=factory):
        pytest.fail("the block must not run without a leader")
    assert calls == ["start", "observer started", "leader", "close"]
    assert isinstance(factory.made[0].closed_with[0], WaitTimeout)  # type: ignore[attr-defined]


def test_ctrl_c_during_teardown_still_closes_then_propagates(tmp_path: Path, calls: list[str],
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    def interrupted(cluster: Any) -> None:
        raise KeyboardInterrupt
    monkeypatch.setattr(run_module, "final_reads", interrupted)
    run = Run(_spec(tmp_path), cluster_factory=_factory(calls))
    run.start()
    with pytest.raises(KeyboardInterrupt):
        run.finish()
    assert calls[-1] == "close" and not run.run_dir.verdicts_path.exists()


def test_a_report_that_fails_never_fails_the_run(tmp_path: Path, calls: list[str]) -> None:
    def broken(run: RunDir) -> None:
        raise ValueError("template missing\nsecond line")
    run = Run(_spec(tmp_path), report=broken, cluster_factory=_factory(calls))
    run.start()
    result = run.finish()
    assert result.report_error == "ValueError: template missing" and run.run_dir.verdicts_path.exists()


def test_details_from_the_history_go_into_verdicts_json(tmp_path: Path, calls: list[str]) -> None:
    run = Run(_spec(tmp_path), cluster_factory=_factory(calls))
    run.start()
    run.finish(lambda events, verdicts: {"outcome": "unknown", "events_seen": len(events)})
    doc = json.loads(run.run_dir.verdicts_path.read_text())
    assert doc["outcome"] == "unknown" and doc["events_seen"] >= 1


def test_a_plan_run_takes_the_plan_s_supervisor_and_provenance(tmp_path: Path, calls: list[str]) -> None:
    plan = RunPlan("replayed", 3.0, True, WorkloadConfig(False), (), restart_delay_s=0.25, poll_s=0.1,
                   replay_of="/runs/original")
    run = Run.for_plan(_spec(tmp_path), plan)
    run._factory = _factory(calls)  # the plan's settings, a stand-in cluster
    run.start()
    assert "supervisor started 0.25 0.1" in calls
    info = json.loads((run.run_dir.path / RUN_INFO).read_text())
    assert info["name"] == "replayed" and info["replay_of"] == "/runs/original"
    run.finish()


def test_a_run_not_started_has_no_cluster(tmp_path: Path, calls: list[str]) -> None:
    run = Run(_spec(tmp_path), cluster_factory=_factory(calls))
    with pytest.raises(HarnessError, match="not started"):
        run.finish()
    with pytest.raises(HarnessError, match="needs a Verdict"):
        run.record_verdict("valid")  # type: ignore[arg-type]
