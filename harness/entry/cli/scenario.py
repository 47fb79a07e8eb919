"""``raftchaos run SCENARIO``, ``raftchaos reproduce INCIDENT --times N`` and ``raftchaos replay RUN_DIR``."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, NoReturn

import typer

from harness.entry.cli import app
from harness.entry.cli.common import (
    EXIT_BY_VERDICT,
    EXIT_ENVIRONMENT,
    EXIT_UNKNOWN,
    EXIT_VALID,
    BackendOption,
    SystemOption,
    ensure_backend,
    fail,
    system_choice,
    with_system,
)
from harness.errors import ConfigError, HarnessError, SetupError
from harness.spec import BackendName, ClusterSpec
from harness.store import RunDir
from harness.systems.base import SystemUnavailable

if TYPE_CHECKING:
    from faults.scenario import Scenario
    from harness.entry.cli.runs import RunOutcome


def _print_outcome(outcome: RunOutcome) -> None:
    for verdict in outcome.verdicts:
        print(f"{verdict.validity.value:>7}  {verdict.checker}: {verdict.summary}")
    for symptom in outcome.symptoms:
        print(f"{'held' if symptom.held else 'missing':>7}  symptom {symptom.symptom}: {symptom.detail}")
    for problem in outcome.nemesis_errors:
        print(f"warning  {problem}")
    for skipped in outcome.skipped:
        print(f"skipped  {skipped}")
    if outcome.report_error:
        print(f"warning  report.html not written: {outcome.report_error}")
    print(f"run dir: {outcome.run.path} (seed {outcome.seed})")


# ``run``/``replay`` render the finished run's report.html (a few seconds: plots); --no-report skips it.
ReportOption = Annotated[bool, typer.Option("--report/--no-report",
                                            help="write the run's report.html when it ends")]


def _render_report(run: RunDir) -> None:
    """The run's report.html, from the verdicts just written (``raftchaos report`` re-checks)."""
    from reports.html import render_for_pytest

    render_for_pytest(run.path)


def _harness_failed(exc: HarnessError | SystemUnavailable) -> NoReturn:
    """The run could not be carried out: bad input 254, this machine cannot run it 3 (a binary,
    port or image the harness needs, a system not installed or not on this backend), anything
    else unknown 2 (the system was never judged)."""
    if isinstance(exc, ConfigError):
        fail(str(exc))
    if isinstance(exc, SystemUnavailable):
        fail(f"the run could not be carried out (verdict unknown): {exc}", code=EXIT_ENVIRONMENT)
    code = EXIT_ENVIRONMENT if isinstance(exc, SetupError) else EXIT_UNKNOWN
    fail(f"the run could not be carried out (verdict unknown): {exc}", code=code)


def outcome_exit(outcome: RunOutcome) -> int:
    """The run's overall verdict as an exit code; valid checkers but a missing expected symptom is
    unknown (the run did not exercise what the scenario meant to)."""
    code = EXIT_BY_VERDICT[outcome.overall]
    if code == EXIT_VALID and outcome.reproduced is False:
        return EXIT_UNKNOWN
    return code


def _load(path: Path, backend: BackendName | None) -> Scenario:
    """The scenario file with ``--backend`` (when given) overriding its ``[cluster] backend``."""
    from faults.scenario import load_scenario

    try:
        scn = load_scenario(path)
    except ConfigError as exc:
        fail(str(exc))
    return dataclasses.replace(scn, backend=backend) if backend is not None else scn


def _spec(scn: Scenario, seed: int, system: str) -> ClusterSpec:
    """The scenario's cluster for ``system`` (checked: node flags need a system that has them)."""
    return with_system(scn.cluster_spec(seed), system)


@app.command("run")
def run(
    scenario: Annotated[Path, typer.Argument(help="a scenario TOML file")],
    seed: Annotated[int | None, typer.Option(help="override the file's seed", min=0)] = None,
    runs_dir: Annotated[Path | None, typer.Option(help="where run directories go", file_okay=False)] = None,
    backend: BackendOption = None,
    system: SystemOption = None,
    html: ReportOption = True,
) -> int:
    """Run a scenario once on a fresh cluster (and write its report.html). Exit 0 when every verdict
    is valid (and every expected symptom held), 1 when any verdict is invalid (a node crashing for
    real included), 2 unknown."""
    from harness.entry.cli.runs import execute, scenario_plan

    chosen = system_choice(system)
    scn = _load(scenario, backend)
    run_seed = scn.resolve_seed(seed)
    spec = _spec(scn, run_seed, chosen)
    ensure_backend(scn.backend)
    print(f"scenario {scn.name}: seed={run_seed}" + (f" system={chosen}" if chosen != "kuduraft" else ""))
    try:
        outcome = execute(spec, scenario_plan(scn, run_seed), runs_dir, report=_render_report if html else None)
    except (HarnessError, SystemUnavailable) as exc:
        _harness_failed(exc)
    _print_outcome(outcome)
    print(f"verdict: {outcome.overall}")
    return outcome_exit(outcome)


@app.command("reproduce")
def reproduce(
    incident: Annotated[Path, typer.Argument(help="an incident (scenario) TOML file with [[expect]] symptoms")],
    times: Annotated[int, typer.Option(help="how many runs (1-1000)", min=1, max=1000)] = 5,
    seed: Annotated[int | None, typer.Option(help="first seed (run i uses seed + i); default the file's",
                                             min=0)] = None,
    runs_dir: Annotated[Path | None, typer.Option(help="where run directories go", file_okay=False)] = None,
    backend: BackendOption = None,
    system: SystemOption = None,
) -> int:
    """Run an incident N times (seeds s, s+1, ...) and print how often every expected symptom held.
    Exit 1 when any run's verdict is invalid, else 0 when it reproduced at least once, else 2
    (never reproduced, or no run could be carried out: unknown)."""
    from harness.entry.cli.runs import execute, scenario_plan

    chosen = system_choice(system)
    scn = _load(incident, backend)
    if not scn.expect:
        fail(f"{incident}: no [[expect]] symptom to reproduce")
    _spec(scn, 0, chosen)  # node flags the system lacks: refused before any run
    ensure_backend(scn.backend)
    base = scn.resolve_seed(seed)
    hits = 0
    invalid = False
    for i in range(times):
        run_seed = base + i
        try:
            outcome = execute(_spec(scn, run_seed, chosen), scenario_plan(scn, run_seed), runs_dir)
        except ConfigError as exc:
            fail(str(exc))
        except SystemUnavailable as exc:
            _harness_failed(exc)
        except HarnessError as exc:
            print(f"run {i + 1}/{times} seed={run_seed}: harness error: {str(exc).splitlines()[0]}")
            continue
        hits += bool(outcome.reproduced)
        invalid = invalid or outcome.overall == "invalid"
        details = "; ".join(f"{s.symptom} {'held' if s.held else 'missing'} ({s.detail})" for s in outcome.symptoms)
        print(f"run {i + 1}/{times} seed={run_seed}: {'reproduced' if outcome.reproduced else 'not reproduced'}"
              f" [{outcome.overall}] {details}  {outcome.run.path}")
    print(f"reproduced {hits}/{times} ({100.0 * hits / times:.0f}%) of {scn.name}")
    if invalid:
        return EXIT_BY_VERDICT["invalid"]
    return EXIT_VALID if hits else EXIT_UNKNOWN


@app.command("replay")
def replay(
    run_dir: Annotated[Path, typer.Argument(help="a run directory with schedule.jsonl and spec.json")],
    runs_dir: Annotated[Path | None, typer.Option(help="where the replay's run directory goes",
                                                  file_okay=False)] = None,
    backend: BackendOption = None,
    html: ReportOption = True,
) -> int:
    """Re-execute a run's recorded schedule on a fresh cluster of the same spec and report the first
    divergence of the observed Raft events. Every file it reads (spec.json, run.json,
    schedule.jsonl, events.jsonl) is checked before anything starts. Exit by the replay's verdict
    (0/1/2); a replay whose schedule differs from the recording is unknown (2) at best."""
    from faults.replay import check_replayable
    from harness.entry.cli.runs import replay_run

    if not run_dir.is_dir():
        fail(f"{run_dir}: is not a directory")
    try:
        recorded = check_replayable(run_dir)
    except ConfigError as exc:
        fail(str(exc))
    chosen = backend if backend is not None else recorded.spec.backend
    ensure_backend(chosen)
    try:
        result = replay_run(run_dir, runs_dir, backend=chosen, recorded=recorded,
                            report=_render_report if html else None)
    except (HarnessError, SystemUnavailable) as exc:
        _harness_failed(exc)
    _print_outcome(result.outcome)
    if result.schedule_differences:
        print("schedule differs from the recording:")
        for line in result.schedule_differences:
            print(f"  {line}")
    else:
        print(f"schedule: replayed identically (all {len(recorded.executed)} recorded steps)")
    if result.divergence is None:
        print(f"raft events: no divergence ({result.original_events} events)")
    else:
        print(f"raft events: first divergence at {result.divergence}")
    print(f"verdict: {result.outcome.overall}")
    code = outcome_exit(result.outcome)
    return EXIT_UNKNOWN if code == EXIT_VALID and result.schedule_differences else code
