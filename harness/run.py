"""One run's lifecycle, the same for every entry point (pytest plugin, scenario runner, ``up``).

Before issue #13 the plugin, ``faults/runner.py`` and the ``up`` supervisor each started a
cluster, wrote ``run.json``, healed, read, judged and closed in their own order; a replay of a
suite run could only be faithful where the three agreed. ``Run`` is that sequence once:

1. the run directory: the spec's, else a fresh one under ``runs_root`` (made at construction,
   so an entry point can name it before anything starts);
2. the cluster through its backend (``Cluster``: the exit guard stops it at exit and turns
   SIGTERM/SIGHUP into KeyboardInterrupt), the observer, the optional crash supervisor, the first
   agreed leader, then ``run.json`` (``harness.runinfo``: spec, seed, system, workload,
   supervisor, schedule, versions; the parts register themselves as they start);
3. ``end``: the active phase is over (run.json's duration), tracked workloads stop, run.json is
   written again with what actually ran;
4. ``finish``: final heal, final reads (recorded), the cluster closes, then the standard
   verdicts (``harness.finish``) plus those the caller recorded go to ``verdicts.json``, and the
   caller's report hook (reports sit above the core, so it is handed a callable, never imported)
   renders from the directory.

A step of 3-4 that fails is collected (``teardown_errors``), never hides the others: the
checkers judge what is left. Ctrl-C (or the exit guard's KeyboardInterrupt) at any point closes
the cluster before it propagates; an exception inside ``with Run(...)`` closes it without a
verdict (the run was not carried out: the entry point's answer is unknown, not a finding).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Protocol

from harness.checkers.verdict import Validity, Verdict, compose
from harness.cluster import Cluster
from harness.errors import ConfigError, HarnessError
from harness.finish import final_heal, final_reads, standard_verdicts, verdicts_doc, write_verdicts
from harness.history import Event, load_history
from harness.observer import Observer
from harness.runinfo import RunRecord
from harness.spec import ClusterSpec
from harness.store import RunDir, new_run_dir
from harness.supervisor import CrashSupervisor

if TYPE_CHECKING:
    from harness.runplan import RunPlan

__all__ = ["Details", "ReportHook", "Run", "RunResult"]

# What an entry point adds to verdicts.json from the judged history (symptoms, its own outcome).
Details = Callable[[Sequence[Event], Sequence[Verdict]], Mapping[str, Any]]
# Renders a finished run from its directory (e.g. report.html); its failure never fails the run.
ReportHook = Callable[[RunDir], object]


class _Stoppable(Protocol):
    def stop(self) -> object: ...


@dataclass
class RunResult:
    """A finished run: what was judged and what went wrong around it."""

    run: RunDir
    seed: int
    verdicts: list[Verdict]
    events: list[Event]
    teardown_errors: list[str] = field(default_factory=list)
    close_error: HarnessError | None = None  # the cluster's cleanup failed (also in teardown_errors)
    report_error: str | None = None

    @property
    def overall(self) -> Validity:
        return compose(self.verdicts)


class Run:
    """``with Run(spec, name) as run: ...`` — see the module docstring for what it owns."""

    def __init__(self, spec: ClusterSpec, name: str | None = None, *, runs_root: Path | str | None = None,
                 supervisor: bool = False, restart_delay_s: float | None = None, poll_s: float | None = None,
                 expect: Sequence[tuple[str, Mapping[str, Any]]] = (), replay_of: str | None = None,
                 report: ReportHook | None = None,
                 cluster_factory: Callable[[ClusterSpec], Cluster] = Cluster) -> None:
        if spec.run_dir is None:
            made = new_run_dir(spec.test_name, spec.seed, runs_root)
            spec = ClusterSpec.from_dict({**spec.to_dict(), "run_dir": str(made.path)})
        self.spec = spec
        self.name = name or spec.test_name
        self.supervisor = supervisor
        self.restart_delay_s = restart_delay_s
        self.poll_s = poll_s
        self.expect = tuple((n, dict(p)) for n, p in expect)
        self.replay_of = replay_of
        self.verdicts: list[Verdict] = []  # the caller's own (record_verdict), judged with the standard ones
        self._report = report
        self._factory = cluster_factory
        self._cluster: Cluster | None = None
        self._tracked: list[_Stoppable] = []
        self._errors: list[str] = []
        self._ended = False
        self._result: RunResult | None = None

    @classmethod
    def for_plan(cls, spec: ClusterSpec, plan: RunPlan, *, runs_root: Path | str | None = None,
                 report: ReportHook | None = None) -> Run:
        """A run of a scenario or a recorded run's plan (its supervisor settings, expected symptoms
        and replay provenance); the entry point drives the plan's workload and schedule."""
        return cls(spec, plan.name, runs_root=runs_root, supervisor=plan.supervisor,
                   restart_delay_s=plan.restart_delay_s, poll_s=plan.poll_s, expect=plan.expect,
                   replay_of=plan.replay_of, report=report)

    # ---- what the run is made of ------------------------------------------------------------------

    @property
    def run_dir(self) -> RunDir:
        assert self.spec.run_dir is not None  # set in __init__
        return RunDir(Path(self.spec.run_dir))

    @property
    def started(self) -> bool:
        return self._cluster is not None

    @property
    def cluster(self) -> Cluster:
        if self._cluster is None:
            raise ConfigError(f"run {self.run_dir.run_id} not started: no cluster")
        return self._cluster

    @property
    def record(self) -> RunRecord:
        return RunRecord.of(self.cluster)

    @property
    def finished(self) -> RunResult | None:
        return self._result

    def track(self, part: _Stoppable) -> None:
        """Stop ``part`` (a workload) when the active phase ends, before the final heal and reads."""
        self._tracked.append(part)

    def record_verdict(self, verdict: Verdict) -> None:
        if not isinstance(verdict, Verdict):
            raise HarnessError(f"record_verdict needs a Verdict, got {verdict!r}")
        self.verdicts.append(verdict)

    # ---- start ----------------------------------------------------------------------------------

    def __enter__(self) -> Run:
        self.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if exc is None:
            if self._cluster is not None and self._result is None:
                self.finish()
        else:
            self.abort(exc)

    def start(self) -> Cluster:
        """Start the cluster, then ``begin``; returns the cluster."""
        self.start_cluster()
        try:
            self.begin()
        except BaseException as exc:
            self.abort(exc)
            raise
        return self.cluster

    def start_cluster(self) -> Cluster:
        """Bring the cluster up (a start that fails half-way has stopped what it started, and
        raises: SystemUnavailable when the system cannot run here, SetupError otherwise)."""
        if self._cluster is not None:
            raise ConfigError(f"run {self.run_dir.run_id} already started")
        cluster = self._factory(self.spec)
        cluster.start_cluster()
        self._cluster = cluster
        return cluster

    def begin(self) -> None:
        """Observer and supervisor on, wait for the first agreed leader (offsets count from it),
        then the first run.json."""
        cluster = self.cluster
        Observer(cluster).start()
        if self.supervisor:
            sup = CrashSupervisor(cluster)
            if self.restart_delay_s is not None:
                sup.restart_delay_s = self.restart_delay_s
            if self.poll_s is not None:
                sup.poll_s = self.poll_s
            sup.start()
        cluster.wait_for_leader()
        record = self.record
        record.begin(self.name, self.expect, self.replay_of)
        record.write(cluster)

    # ---- end ------------------------------------------------------------------------------------

    def _step(self, fn: Callable[[], object]) -> None:
        try:
            fn()
        except Exception as exc:  # noqa: BLE001 - every step runs; the checkers judge what is left
            self._errors.append(f"{type(exc).__name__}: {exc}")

    def end(self, duration_s: float | None = None) -> None:
        """The active phase is over: run.json's duration (``duration_s``: a run of a planned
        length records that, the wait's overshoot being harness polling), tracked workloads stop,
        run.json is written with what ran. Idempotent."""
        if self._ended:
            return
        self._ended = True
        cluster = self.cluster
        self.record.end(duration_s)
        for part in self._tracked:
            self._step(part.stop)
        self._step(lambda: self.record.write(cluster))

    def finish(self, details: Details | None = None, errors: Sequence[str] = ()) -> RunResult:
        """End (if not yet), final heal, final reads, close, judge, write verdicts.json, report.
        ``errors``: the caller's own problems (a nemesis step that failed), listed with the
        teardown errors. verdicts.json's ``outcome`` is passed/failed by the verdict unless
        ``details`` says otherwise. Idempotent: a second call returns the first result."""
        if self._result is not None:
            return self._result
        cluster = self.cluster
        try:
            self.end()
            self._step(lambda: final_heal(cluster))
            self._step(lambda: final_reads(cluster))
        except BaseException as exc:  # Ctrl-C mid-teardown: still stop everything, then propagate
            self.abort(exc)
            raise
        close_error: HarnessError | None = None
        try:
            cluster.close()
        except HarnessError as exc:
            close_error = exc
            self._errors.append(f"{type(exc).__name__}: {exc}")
        run = cluster.run
        try:
            events = load_history(run.events_path)
            verdicts = standard_verdicts(events, run_dir=run.path) + self.verdicts
        except Exception as exc:  # noqa: BLE001 - a checker or reader bug: unknown, never no verdict
            first = (str(exc).splitlines() or [""])[0]
            events = []
            verdicts = [Verdict(checker="judging", validity=Validity.UNKNOWN,
                                summary=f"the history could not be judged: {type(exc).__name__}: {first}"),
                        *self.verdicts]
            self._errors.append(f"judging failed: {type(exc).__name__}: {first}")
        teardown = [*self._errors, *errors]
        extra: dict[str, Any] = {"test": self.name, "seed": self.spec.seed, "teardown_errors": teardown,
                                 "outcome": "passed" if compose(verdicts) is Validity.VALID else "failed"}
        if details is not None:
            extra.update(details(events, verdicts))
        write_verdicts(run, verdicts_doc(run, verdicts, extra))
        self._result = RunResult(run, self.spec.seed, verdicts, events, teardown, close_error)
        if self._report is not None:
            try:
                self._report(run)
            except Exception as exc:  # noqa: BLE001 - a report never breaks a run
                first = (str(exc).splitlines() or [""])[0]
                self._result.report_error = f"{type(exc).__name__}: {first}"
        return self._result

    def abort(self, exc: BaseException | None = None) -> None:
        """Stop everything without a verdict (the run was not carried out); cleanup problems go
        onto ``exc`` as notes, never replacing it."""
        if self._cluster is not None:
            with contextlib.suppress(Exception):
                self._cluster.close(primary=exc, reraise=False)
