"""pytest plugin: the composition root that wires the harness into pytest (options, fixtures, report).

Options: ``--backend local|docker``, ``--seed N`` (every test's seed, an integer in [0, 2**63):
ClusterSpec's limit, the seed is stored as a signed 64-bit value; default a fresh random one per
test, printed), ``--keep-runs`` (keep the run directories of passing tests too; failing ones are
always kept), ``--run-dir DIR`` (where run directories go, default ``.raftchaos/runs``; must be a
directory or creatable), ``--raftchaos-strict`` (a test whose verdict is unknown fails),
``--raftchaos-summary FILE`` (the session summary, default ``<run-dir>/summary.json``),
``--timing fast|kuduraft`` (the default profile of ``make_cluster``; marker ``kuduraft_timing`` =
the subset meant to run with ``kuduraft``), ``--system NAME`` (the system under test,
``harness.systems.registry``: ``kuduraft`` (default) or ``etcd``; recorded in each run's spec and
run.json, so ``raftchaos replay`` runs the same system). Bad
values are one pytest usage error at configure time, naming the option.

Verdicts: a test's verdict composes every verdict of its clusters and its ``record_verdict``
calls (``harness.checkers.verdict.compose``: invalid beats unknown beats valid); it is known only
once the fixtures are torn down, so for a test using the plugin's fixtures the plugin runs the
test protocol itself and logs the reports after teardown. A test whose body passed but whose
verdict is unknown is reported:

- without ``--raftchaos-strict``: as **skipped** in its call report, shown by pytest as its own
  category (``U`` / ``UNKNOWN``, "N unknown" in the summary line, never counted as passed), and
  as ``<skipped message="raftchaos verdict unknown: ...">`` in JUnit. Skipped, not failed,
  because unknown means the harness could not exercise or observe the system: no finding against
  it, and no pass either (JUnit has no third state; skipped is the one CI shows as "not passed"
  without failing the build);
- with ``--raftchaos-strict`` (``make chaos``): as **failed**, the message listing the unknown
  verdicts' reasons, so the session exits 1.

Every test with a verdict carries JUnit properties ``raftchaos_verdict`` (valid / invalid /
unknown), ``raftchaos_outcome`` (passed / failed / error / skipped / unknown) and, when not
valid, ``raftchaos_reasons``. The session summary (``reports.session``, ``raftchaos.session/1``)
lists every test's outcome, verdict, seed, run directories and reasons with the counts.

Fixtures:

- ``raftchaos_seed`` -> int: this test's seed (``--seed`` or random). Printed with the run
  directory for every failed test, and recorded as JUnit properties.
- ``make_cluster(nodes=3, flags=None, node_flags=None, topology=None, supervisor=False,
  profile=None) -> Cluster``: builds a ClusterSpec (backend from ``--backend``, the test's
  seed, a fresh run directory), starts it with the observer sampling ``/status`` and (with
  ``supervisor=True``) the crash supervisor restarting nodes that exit with status 85, waits
  for a leader and returns the started Cluster (each cluster is one ``harness.run.Run``, the
  lifecycle the CLI's runs share). ``profile`` is ``fast`` or ``kuduraft`` (default:
  ``--timing``, itself ``fast``); timing
  flags (``raft_heartbeat_interval_ms``, ...) given in ``flags`` go into the timing profile so
  derived bounds match. At teardown, per cluster: workloads stop, final heal (links, paused
  nodes, runtime fault flags), final reads of every key on the leader (recorded), checkers
  (durability; recovery when a fault was injected; linearizability within a few seconds, else
  unknown) plus the test's own verdicts, then
  ``verdicts.json``, then the cluster stops. An invalid verdict fails the test. Each cluster's
  run directory gets ``run.json`` (``harness.runinfo``, written once the leader is up and again
  at teardown with the workload, supervisor and nemesis the test actually started), so
  ``raftchaos replay RUN_DIR`` rebuilds the test's run.
- ``workload(cluster, clients=4, rate_hz=50.0, keys=4)`` -> Workload: a context manager running
  seeded clients for its duration (``with workload(c): ...``); stopped at teardown at the latest.
- ``record_verdict(verdict, cluster=None)``: add a suite's own Verdict (default: to the last
  cluster made) so it lands in verdicts.json and the report.

Markers: ``docker``, ``slow``, ``chaos``, ``requires(Capability.X, ...)`` and ``kuduraft_only``
(``harness.systems.requirements``: a test the system under test cannot serve is skipped at
collection with the reason). A FaultUnavailable raised by a test skips it, and so do a system that
cannot run here (``SystemUnavailable``: etcd not installed) and
``--backend docker`` when no Docker daemon answers and none can be started (with the reason). At
the end of the session each kept run's HTML report (``report.html`` in its run directory) is
rendered, a rich report (``reports.terminal``) shows one row per run, and one line per kept run
gives its report's path (a report that cannot be rendered says why in that line instead).
"""

from __future__ import annotations

import json
import os
import random
import re
import shutil
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from harness.checkers.verdict import Validity, Verdict, compose
from harness.cluster import Cluster
from harness.errors import FaultUnavailable, HarnessError
from harness.finish import write_verdicts
from harness.run import Run
from harness.spec import BackendName, ClusterSpec
from harness.store import RunDir
from harness.systems.base import SystemUnavailable
from harness.systems.registry import names as system_names
from harness.systems.registry import system_for
from harness.systems.requirements import KUDURAFT_ONLY, REQUIRES, capabilities_of, requirement_skip
from harness.timing import FLAG_NAMES, TimingProfile
from harness.workload import Workload, WorkloadSpec

PROFILES: dict[str, Callable[[], TimingProfile]] = {"fast": TimingProfile.fast, "kuduraft": TimingProfile.kuduraft}
_UNSAFE = re.compile(r"[^A-Za-z0-9_.\-\[\]]+")


@dataclass
class _TestState:
    """What the plugin knows about one test: its seed, clusters and phase reports."""

    nodeid: str
    seed: int | None = None
    clusters: list[Run] = field(default_factory=list)  # started runs, in order
    runs: list[RunDir] = field(default_factory=list)
    orphan_verdicts: list[Verdict] = field(default_factory=list)
    verdicts: list[Verdict] = field(default_factory=list)  # of finished clusters
    failed_phases: list[str] = field(default_factory=list)
    skipped: bool = False
    unknown: bool = False  # reported as unknown (its body passed, its verdict is unknown)
    failed_by_strict: bool = False  # failed only because its verdict is unknown (--raftchaos-strict)
    failure: str | None = None  # the first failing phase and the first line of its message

    @property
    def outcome(self) -> str:
        if self.failed_phases:
            return "failed" if "call" in self.failed_phases else "error"
        if self.unknown:
            return "unknown"
        return "skipped" if self.skipped else "passed"

    @property
    def all_verdicts(self) -> list[Verdict]:
        return [*self.verdicts, *self.orphan_verdicts]

    @property
    def verdict(self) -> Validity | None:
        """The test's composed verdict; None for a test that recorded none (not a raftchaos test)."""
        return compose(self.all_verdicts) if self.all_verdicts else None

    def reasons(self) -> list[str]:
        return [f"{v.checker}: {v.summary}" for v in self.all_verdicts if v.validity is not Validity.VALID]

    def entry(self) -> dict[str, Any]:
        """This test in the session summary (``reports.session.TEST_KEYS``)."""
        verdict = self.verdict
        return {"nodeid": self.nodeid, "outcome": self.outcome, "verdict": verdict.value if verdict else None,
                "failed_by_strict": self.failed_by_strict, "failure": self.failure, "seed": self.seed, "run_dirs": [str(r.path) for r in self.runs], "reasons": self.reasons(),
                "verdicts": [{"checker": v.checker, "validity": v.validity.value, "summary": v.summary}
                             for v in self.all_verdicts]}


_STATE = pytest.StashKey[_TestState]()
_SESSION_RUNS = pytest.StashKey[list[tuple[RunDir, _TestState]]]()
_SESSION_TESTS = pytest.StashKey[dict[str, _TestState]]()  # every test that ran, in order
_SUMMARY_PATH = pytest.StashKey[Path]()
# A test using one of these goes through the plugin's protocol (its verdict decides how it is reported).
_PLUGIN_FIXTURES = frozenset({"make_cluster", "record_verdict", "workload", "raftchaos_seed"})
SEED_LIMIT = 2**63  # ClusterSpec.validate: the seed is saved as a signed 64-bit integer
_DOCKER_UNAVAILABLE = pytest.StashKey[str | None]()  # asked once per session: None = a daemon answers


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("raftchaos")
    group.addoption("--backend", default="local", choices=["local", "docker"], help="where nodes run")
    group.addoption("--seed", type=int, default=None, help="run seed (default: random, printed)")
    group.addoption("--keep-runs", action="store_true", help="keep run directories of passing tests")
    group.addoption("--run-dir", default=".raftchaos/runs", help="where run directories go")
    group.addoption("--raftchaos-strict", action="store_true",
                    help="a test whose verdict is unknown fails (default: reported as unknown, not failed)")
    group.addoption("--timing", default="fast", choices=sorted(PROFILES),
                    help="timing profile of every cluster a test does not give one: fast (kuduraft's "
                         "defaults / 5, every ratio kept) or kuduraft (kuduraft's real defaults); "
                         "run the kuduraft_timing subset with kuduraft")
    group.addoption("--system", default="kuduraft", metavar="NAME",
                    help=f"the system under test: {', '.join(system_names())} (default kuduraft)")
    group.addoption("--raftchaos-summary", default=None, metavar="FILE",
                    help="where the session summary goes (default: <run-dir>/summary.json)")


def pytest_configure(config: pytest.Config) -> None:
    for marker, text in (("docker", "needs a Docker daemon (the Docker backend)"),
                         ("slow", "takes more than a few seconds"),
                         ("chaos", "a chaos suite (starts a cluster, injects faults)"),
                         ("kuduraft_timing", "nightly-sized subset that also runs in reasonable time with "
                                             "--timing kuduraft (kuduraft's real timing defaults)"),
                         (REQUIRES, "requires(Capability.X, ...): skipped with the reason when the system "
                                    "under test (--system) lacks one on this backend"),
                         (KUDURAFT_ONLY, "checks kuduraft's own behaviour: skipped with the reason under "
                                         "another --system (optional reason=)")):
        config.addinivalue_line("markers", f"{marker}: {text}")
    config.stash[_SESSION_RUNS] = []
    config.stash[_SESSION_TESTS] = {}
    _check_options(config)


def _check_options(config: pytest.Config) -> None:
    """One usage error naming the option, before any test runs (not one failure per test)."""
    system = config.getoption("--system", default="kuduraft")
    if system not in system_names():
        raise pytest.UsageError(f"--system {system}: unknown system (choose from {', '.join(system_names())})")
    seed = config.getoption("--seed", default=None)
    if seed is not None and not 0 <= seed < SEED_LIMIT:
        raise pytest.UsageError(f"--seed must be an integer in [0, 2**63), got {seed}")
    root = _runs_root(config)
    problem = _not_a_directory(root)
    if problem:
        raise pytest.UsageError(f"--run-dir {config.getoption('--run-dir')}: {problem}")
    summary = config.getoption("--raftchaos-summary", default=None)
    path = Path(summary) if summary else root / "summary.json"
    path = path if path.is_absolute() else config.invocation_params.dir / path
    if path.is_dir() or (problem := _not_a_directory(path.parent)):
        raise pytest.UsageError(f"--raftchaos-summary {summary}: {problem or 'is a directory'}")
    config.stash[_SUMMARY_PATH] = path


def _not_a_directory(path: Path) -> str | None:
    """Why ``path`` cannot be (or become) a writable directory, or None; creates nothing."""
    probe = path
    while not probe.exists():
        if probe.parent == probe:
            return "no existing parent directory"
        probe = probe.parent
    if not probe.is_dir():
        return "is an existing file" if probe == path else f"{probe} is an existing file, not a directory"
    if not os.access(probe, os.W_OK | os.X_OK):
        return f"{probe} is not writable"
    return None


def _state(item: pytest.Item) -> _TestState:
    if _STATE not in item.stash:
        item.stash[_STATE] = _TestState(item.nodeid)
        item.config.stash.get(_SESSION_TESTS, {})[item.nodeid] = item.stash[_STATE]
    return item.stash[_STATE]


def _runs_root(config: pytest.Config) -> Path:
    root = Path(config.getoption("--run-dir"))
    return root if root.is_absolute() else config.invocation_params.dir / root


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Skip, with the reason, every test whose ``requires``/``kuduraft_only`` markers the system
    under test cannot serve on this backend; a ``requires`` argument that is no capability is one
    usage error naming the test."""
    name = config.getoption("--system", default="kuduraft")
    backend = config.getoption("--backend", default="local")
    system = system_for(name, ClusterSpec())  # capabilities only: nothing is started
    for item in items:
        required = []
        for mark in item.iter_markers(REQUIRES):
            try:
                required += capabilities_of(mark.args)
            except HarnessError as exc:
                raise pytest.UsageError(f"{item.nodeid}: {exc}") from None
        only = item.get_closest_marker(KUDURAFT_ONLY)
        reason = requirement_skip(system, backend, required, only is not None,
                                  only.kwargs.get("reason") if only is not None else None)
        if reason is not None:
            item.add_marker(pytest.mark.skip(reason=reason))


# ---- fixtures -----------------------------------------------------------------------------------

@pytest.fixture
def raftchaos_seed(request: pytest.FixtureRequest) -> int:
    """This test's seed: ``--seed`` or a fresh random one (printed on failure, stored in the run)."""
    state = _state(request.node)
    if state.seed is None:
        given = request.config.getoption("--seed")
        state.seed = int(given) if given is not None else random.SystemRandom().randrange(2**31)
        request.node.user_properties.append(("raftchaos_seed", state.seed))
    return state.seed


def _timing(profile: str, flags: dict[str, Any]) -> tuple[TimingProfile, dict[str, Any]]:
    if profile not in PROFILES:
        raise HarnessError(f"profile must be one of {sorted(PROFILES)}, got {profile!r}")
    timing_names = set(FLAG_NAMES.values())
    timing_flags = {k: v for k, v in flags.items() if k in timing_names}
    rest = {k: v for k, v in flags.items() if k not in timing_names}
    return TimingProfile.from_flags(timing_flags, PROFILES[profile]()), rest


@pytest.fixture
def make_cluster(request: pytest.FixtureRequest, raftchaos_seed: int) -> Iterator[Callable[..., Cluster]]:
    """Factory of started clusters, each torn down (heal, final reads, checkers, stop) after the test."""
    state = _state(request.node)
    config = request.config
    test_name = _UNSAFE.sub("_", request.node.name).strip("_")[:80] or "test"

    def make(nodes: int = 3, flags: dict[str, Any] | None = None,
             node_flags: dict[str, dict[str, Any]] | None = None, topology: dict[str, str] | None = None,
             supervisor: bool = False, profile: str | None = None) -> Cluster:
        backend = BackendName(config.getoption("--backend"))
        if backend is BackendName.DOCKER and (reason := _docker_unavailable(config)) is not None:
            pytest.skip(reason)
        timing, cluster_flags = _timing(profile or config.getoption("--timing"), dict(flags or {}))
        spec = ClusterSpec(node_count=nodes, flags=cluster_flags, node_flags=node_flags or {},
                           topology=topology or {}, backend=backend, seed=raftchaos_seed,
                           test_name=test_name, timing=timing, system=config.getoption("--system"))
        run = Run(spec, state.nodeid, runs_root=_runs_root(config), supervisor=supervisor)
        state.runs.append(run.run_dir)
        config.stash[_SESSION_RUNS].append((run.run_dir, state))
        request.node.user_properties.append(("raftchaos_run_dir", str(run.run_dir.path)))
        try:
            run.start_cluster()
        except SystemUnavailable as exc:  # not installed, or not on this backend: cannot run, no finding
            pytest.skip(f"{spec.system}: {exc}")
        state.clusters.append(run)  # judged at teardown even if the leader never comes
        run.begin()  # observer, supervisor, leader, run.json (so `raftchaos replay` rebuilds this run)
        return run.cluster

    yield make
    # Each run is torn down on its own: one that raises (a checker bug, an unwritable run
    # directory) is aborted and reported, the others are still judged and closed; on Ctrl-C
    # the ones not reached yet are closed before it propagates.
    problems: list[str] = []
    pending = list(reversed(state.clusters))
    try:
        while pending:
            run = pending.pop(0)
            try:
                problem = _finish(run, state)
            except Exception as exc:  # noqa: BLE001 - reported as this test's failure
                run.abort(exc)
                problem = f"teardown of {run.run_dir.path} failed: {type(exc).__name__}: {exc}"
            if problem:
                problems.append(problem)
    finally:
        for run in pending:
            run.abort()
    if problems:
        pytest.fail("\n".join(problems), pytrace=False)


def _docker_unavailable(config: pytest.Config) -> str | None:
    """Why the Docker backend cannot run here (no daemon answers and none can be started), or None.
    Asked once per session: starting dockerd may install it, which must not be retried per test."""
    if _DOCKER_UNAVAILABLE not in config.stash:
        try:
            from harness.docker.daemon import unavailable_reason
        except ImportError as exc:
            config.stash[_DOCKER_UNAVAILABLE] = f"docker backend unavailable: {exc}"
        else:
            config.stash[_DOCKER_UNAVAILABLE] = unavailable_reason()
    return config.stash[_DOCKER_UNAVAILABLE]


def _finish(run: Run, state: _TestState) -> str | None:
    """Tear one run down (``Run.finish``); returns what fails the test (an invalid verdict, a
    teardown error). verdicts.json's outcome is the test's, rewritten once teardown is known."""
    result = run.finish(lambda _events, _verdicts: {"outcome": state.outcome})
    state.verdicts.extend(result.verdicts)
    invalid = [v for v in result.verdicts if v.validity is Validity.INVALID]
    lines = [f"{v.checker} invalid: {v.summary}" for v in invalid]
    lines += [f"teardown: {e}" for e in result.teardown_errors]
    return f"raftchaos run {result.run.path}:\n  " + "\n  ".join(lines) if lines else None


@pytest.fixture
def workload(make_cluster: Callable[..., Cluster], request: pytest.FixtureRequest) -> Callable[..., Workload]:
    """``with workload(cluster, clients=4, rate_hz=50.0): ...`` runs seeded clients for the block."""
    state = _state(request.node)

    def run(cluster: Cluster, clients: int = 4, rate_hz: float = 50.0, keys: int = 4) -> Workload:
        load = Workload(cluster, WorkloadSpec(clients=clients, rate_per_s=rate_hz, keys=keys))
        owner = next((r for r in state.clusters if r.cluster is cluster), None)
        if owner is None:
            raise HarnessError("workload(cluster): the cluster was not made by make_cluster")
        owner.track(load)
        return load

    return run


@pytest.fixture
def record_verdict(request: pytest.FixtureRequest) -> Callable[..., None]:
    """``record_verdict(verdict, cluster=None)``: keep a suite's own verdict with its run."""
    state = _state(request.node)

    def record(verdict: Verdict, cluster: Cluster | None = None) -> None:
        if not isinstance(verdict, Verdict):
            raise HarnessError(f"record_verdict needs a Verdict, got {verdict!r}")
        target = next((r for r in state.clusters if r.cluster is cluster), None) if cluster else None
        target = target or (state.clusters[-1] if state.clusters else None)
        if target is not None:
            target.record_verdict(verdict)
        else:
            state.orphan_verdicts.append(verdict)

    return record


# ---- hooks --------------------------------------------------------------------------------------

@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Generator[None, None, None]:
    """A fault that cannot run on this cluster/backend skips the test with the reason."""
    try:
        return (yield)
    except FaultUnavailable as exc:
        pytest.skip(str(exc))


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]
                              ) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report: pytest.TestReport = yield
    state = _state(item)
    if report.skipped:
        state.skipped = True
    elif report.failed:
        state.failed_phases.append(report.when)
        if state.failure is None:
            crash = getattr(report.longrepr, "reprcrash", None)
            text = crash.message if crash is not None else str(report.longrepr)
            state.failure = f"{report.when}: {(text.strip().splitlines() or [''])[0][:300]}"
        if state.seed is not None or state.runs:  # a test that used the plugin: how to replay it
            runs = ", ".join(str(r.path) for r in state.runs) or "(no cluster started)"
            report.sections.append(("raftchaos", f"seed={state.seed} (replay: pytest '{item.nodeid}' "
                                    f"--seed {state.seed})\nrun dir: {runs}"))
    return report


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None) -> bool | None:
    """For a test using the plugin's fixtures: run it, then report it by its verdict (known only
    after teardown, when the clusters are judged). Other tests take pytest's own protocol."""
    if not _PLUGIN_FIXTURES & set(getattr(item, "fixturenames", ())):
        return None
    # pytest's own protocol with logging held back, as pytest-rerunfailures uses it
    from _pytest.runner import runtestprotocol

    ihook = item.ihook
    ihook.pytest_runtest_logstart(nodeid=item.nodeid, location=item.location)
    reports = runtestprotocol(item, nextitem=nextitem, log=False)
    _judge(item, reports)
    for report in reports:
        ihook.pytest_runtest_logreport(report=report)
    ihook.pytest_runtest_logfinish(nodeid=item.nodeid, location=item.location)
    return True


def _judge(item: pytest.Item, reports: list[pytest.TestReport]) -> None:
    """Make an unknown verdict visible on the reports: a passed call becomes unknown (reported as
    skipped) or, with ``--raftchaos-strict``, failed; every report keeps the verdict as a property."""
    state = _state(item)
    verdict = state.verdict
    call = next((r for r in reports if r.when == "call"), None)
    if verdict is Validity.UNKNOWN and call is not None and not any(r.failed or r.skipped for r in reports):
        why = "; ".join(state.reasons()) or "no reason recorded"
        if item.config.getoption("--raftchaos-strict"):
            call.outcome = "failed"
            call.longrepr = (f"raftchaos verdict unknown (--raftchaos-strict): {why}\n"
                             f"seed={state.seed} run dir: {', '.join(str(r.path) for r in state.runs) or '-'}")
            state.failed_phases.append("call")
            state.failed_by_strict = True
            state.failure = f"call: raftchaos verdict unknown (--raftchaos-strict): {why}"
        else:
            call.outcome = "skipped"
            call.longrepr = (item.location[0], (item.location[1] or 0) + 1, f"raftchaos verdict unknown: {why}")
            call.raftchaos_unknown = True  # type: ignore[attr-defined]  # read by pytest_report_teststatus
            state.unknown = True
    if verdict is not None:
        props = [("raftchaos_verdict", verdict.value), ("raftchaos_outcome", state.outcome)]
        if state.reasons():
            props.append(("raftchaos_reasons", "; ".join(state.reasons())))
        reports[-1].user_properties.extend(props)  # JUnit writes the properties of the teardown report
    _update_outcomes(state)


@pytest.hookimpl(tryfirst=True)
def pytest_report_teststatus(report: pytest.TestReport, config: pytest.Config) -> tuple[str, str, Any] | None:
    """An unknown test is its own category: "N unknown" in the summary line, ``U`` in progress."""
    if report.when == "call" and getattr(report, "raftchaos_unknown", False):
        return "unknown", "U", ("UNKNOWN", {"yellow": True})
    return None


def _update_outcomes(state: _TestState) -> None:
    """Rewrite each run's ``outcome`` once the teardown phase is known."""
    for run in state.runs:
        path = run.verdicts_path
        if not path.exists():
            continue
        try:
            doc = json.loads(path.read_text())
            doc["outcome"] = state.outcome
            write_verdicts(run, doc)
        except (OSError, ValueError):
            continue


def _judged(config: pytest.Config) -> list[_TestState]:
    return [s for s in config.stash.get(_SESSION_TESTS, {}).values() if s.verdict is not None]


@pytest.hookimpl(tryfirst=True)
def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Write the session summary (every test's outcome and verdict) when a test used the plugin or
    ``--raftchaos-summary`` asks for it; a plain unit-test session writes nothing."""
    config = session.config
    tests = list(config.stash.get(_SESSION_TESTS, {}).values())
    if _SUMMARY_PATH not in config.stash or not (_judged(config) or config.getoption("--raftchaos-summary")):
        return
    from reports.session import build_session, write_session

    doc = build_session([t.entry() for t in tests], bool(config.getoption("--raftchaos-strict")), int(exitstatus))
    try:
        write_session(config.stash[_SUMMARY_PATH], doc)
    except OSError as exc:  # checked at configure; a disk that fills up since must not hide the results
        config.stash[_SUMMARY_PATH] = Path(f"(not written: {exc.strerror or exc})")


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    """The test verdicts (unknown ones with their reasons), each kept run's HTML report, the rich
    run report, then one link per run."""
    judged = _judged(config)
    if judged:
        _write_verdicts_section(terminalreporter, config, judged)
    runs = [(run, state) for run, state in config.stash.get(_SESSION_RUNS, []) if run.path.exists()]
    if not runs:
        return
    keep_all = bool(config.getoption("--keep-runs"))
    kept = [(run, state) for run, state in runs if keep_all or _kept(state)]
    links = [_render_html(run, state) for run, state in kept]
    if not judged:
        terminalreporter.write_sep("=", "raftchaos")
    try:
        from reports.terminal import render_text

        terminalreporter.write(render_text([r.path for r, _ in runs],
                                           width=max(120, shutil.get_terminal_size().columns),
                                           color=terminalreporter.hasmarkup))
    except Exception as exc:  # noqa: BLE001 - a report must never break the session
        terminalreporter.write_line(f"raftchaos: terminal report failed: {type(exc).__name__}: {exc}")
    for line in links:
        terminalreporter.write_line(line)
    removed = len(runs) - len(kept)
    if removed:
        terminalreporter.write_line(f"{removed} run director{'y' if removed == 1 else 'ies'} of tests that "
                                    "passed or were skipped removed at exit (--keep-runs keeps them, with reports)")


def _write_verdicts_section(terminalreporter: Any, config: pytest.Config, judged: list[_TestState]) -> None:
    """The counts line, the per-test table, and one line per test that is not simply valid."""
    terminalreporter.write_sep("=", "raftchaos")
    counts = {v: sum(1 for s in judged if s.verdict is v) for v in Validity}
    strict = bool(config.getoption("--raftchaos-strict"))
    line = ", ".join(f"{n} {v.value}" for v, n in counts.items() if n)
    terminalreporter.write_line(f"raftchaos verdicts: {line}" + (" (--raftchaos-strict: unknown fails)"
                                                                 if strict and counts[Validity.UNKNOWN] else ""))
    try:
        from reports.terminal import render_tests_text

        terminalreporter.write(render_tests_text([s.entry() for s in judged],
                                                 width=max(120, shutil.get_terminal_size().columns),
                                                 color=terminalreporter.hasmarkup))
    except Exception as exc:  # noqa: BLE001 - a report must never break the session
        terminalreporter.write_line(f"raftchaos: verdict table failed: {type(exc).__name__}: {exc}")
    for state in judged:
        if state.verdict is Validity.UNKNOWN:
            terminalreporter.write_line(f"UNKNOWN {state.nodeid} [{state.outcome}] seed={state.seed}: "
                                        + ("; ".join(state.reasons()) or "no reason recorded"),
                                        yellow=True)
    if _SUMMARY_PATH in config.stash and config.stash[_SUMMARY_PATH].exists():
        terminalreporter.write_line(f"raftchaos session summary: {config.stash[_SUMMARY_PATH]}")


def _kept(state: _TestState) -> bool:
    """Whether a run directory outlives the session without ``--keep-runs`` (see pytest_unconfigure)."""
    return state.outcome in ("failed", "error", "unknown")


def _render_html(run: RunDir, state: _TestState) -> str:
    """Write the run's report.html; returns the line to print (its path, or why there is none).
    Never raises: a broken report costs its own line, not the session."""
    try:
        from reports.html import render_for_pytest

        path = render_for_pytest(run.path)
    except Exception as exc:  # noqa: BLE001 - a report must never break the session
        first = (str(exc).splitlines() or [""])[0]
        return f"raftchaos report of {state.nodeid} failed ({run.path}): {type(exc).__name__}: {first}"
    return f"raftchaos report {state.nodeid} [{state.outcome}]: {path}"


def pytest_unconfigure(config: pytest.Config) -> None:
    """Remove the run directories of tests that did not fail, unless ``--keep-runs``."""
    if config.getoption("--keep-runs", default=True) or _SESSION_RUNS not in config.stash:
        return
    for run, state in config.stash[_SESSION_RUNS]:
        if not _kept(state):
            shutil.rmtree(run.path, ignore_errors=True)
