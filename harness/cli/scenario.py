"""``raftchaos run SCENARIO``, ``raftchaos reproduce INCIDENT --times N`` and ``raftchaos replay RUN_DIR``."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from harness.cli import app
from harness.cli.common import BackendOption, ensure_backend, fail
from harness.errors import ConfigError, HarnessError
from harness.spec import BackendName

if TYPE_CHECKING:
    from faults.runner import RunOutcome
    from faults.scenario import Scenario


def _print_outcome(outcome: RunOutcome) -> None:
    for verdict in outcome.verdicts:
        print(f"{verdict.validity.value:>7}  {verdict.checker}: {verdict.summary}")
    for symptom in outcome.symptoms:
        print(f"{'held' if symptom.held else 'missing':>7}  symptom {symptom.symptom}: {symptom.detail}")
    for problem in outcome.nemesis_errors:
        print(f"warning  {problem}")
    for skipped in outcome.skipped:
        print(f"skipped  {skipped}")
    print(f"run dir: {outcome.run.path} (seed {outcome.seed})")


def _load(path: Path, backend: BackendName | None) -> Scenario:
    """The scenario file with ``--backend`` (when given) overriding its ``[cluster] backend``."""
    from faults.scenario import load_scenario

    try:
        scn = load_scenario(path)
    except ConfigError as exc:
        fail(str(exc))
    return dataclasses.replace(scn, backend=backend) if backend is not None else scn


@app.command("run")
def run(
    scenario: Annotated[Path, typer.Argument(help="a scenario TOML file")],
    seed: Annotated[int | None, typer.Option(help="override the file's seed")] = None,
    runs_dir: Annotated[Path | None, typer.Option(help="where run directories go")] = None,
    backend: BackendOption = None,
) -> int:
    """Run a scenario once on a fresh cluster. Exit 0 when every verdict is valid and every expected
    symptom held, 1 otherwise."""
    from faults.runner import execute, scenario_plan

    scn = _load(scenario, backend)
    ensure_backend(scn.backend)
    run_seed = scn.resolve_seed(seed)
    print(f"scenario {scn.name}: seed={run_seed}")
    try:
        outcome = execute(scn.cluster_spec(run_seed), scenario_plan(scn, run_seed), runs_dir)
    except ConfigError as exc:
        fail(str(exc))
    except HarnessError as exc:
        fail(str(exc), code=1)
    _print_outcome(outcome)
    return 0 if outcome.overall == "valid" and outcome.reproduced is not False else 1


@app.command("reproduce")
def reproduce(
    incident: Annotated[Path, typer.Argument(help="an incident (scenario) TOML file with [[expect]] symptoms")],
    times: Annotated[int, typer.Option(help="how many runs")] = 5,
    seed: Annotated[int | None, typer.Option(help="first seed (run i uses seed + i); default the file's")] = None,
    runs_dir: Annotated[Path | None, typer.Option(help="where run directories go")] = None,
    backend: BackendOption = None,
) -> int:
    """Run an incident N times (seeds s, s+1, ...) and print how often every expected symptom held.
    Exit 0 when it reproduced at least once, 1 when never."""
    from faults.runner import execute, scenario_plan

    if times < 1:
        fail(f"--times must be >= 1, got {times}")
    scn = _load(incident, backend)
    if not scn.expect:
        fail(f"{incident}: no [[expect]] symptom to reproduce")
    ensure_backend(scn.backend)
    base = scn.resolve_seed(seed)
    hits = 0
    for i in range(times):
        run_seed = base + i
        try:
            outcome = execute(scn.cluster_spec(run_seed), scenario_plan(scn, run_seed), runs_dir)
        except ConfigError as exc:
            fail(str(exc))
        except HarnessError as exc:
            print(f"run {i + 1}/{times} seed={run_seed}: harness error: {str(exc).splitlines()[0]}")
            continue
        hits += bool(outcome.reproduced)
        details = "; ".join(f"{s.symptom} {'held' if s.held else 'missing'} ({s.detail})" for s in outcome.symptoms)
        print(f"run {i + 1}/{times} seed={run_seed}: {'reproduced' if outcome.reproduced else 'not reproduced'}"
              f" [{outcome.overall}] {details}  {outcome.run.path}")
    print(f"reproduced {hits}/{times} ({100.0 * hits / times:.0f}%) of {scn.name}")
    return 0 if hits else 1


@app.command("replay")
def replay(
    run_dir: Annotated[Path, typer.Argument(help="a run directory with schedule.jsonl and spec.json")],
    runs_dir: Annotated[Path | None, typer.Option(help="where the replay's run directory goes")] = None,
    backend: BackendOption = None,
) -> int:
    """Re-execute a run's recorded schedule on a fresh cluster of the same spec and report the first
    divergence of the observed Raft events. Exit 0 when the schedule replayed identically."""
    from faults.replay import recorded_spec, replay_run

    if not run_dir.is_dir():
        fail(f"{run_dir} is not a directory")
    try:
        chosen = backend if backend is not None else recorded_spec(run_dir).backend
    except ConfigError as exc:
        fail(str(exc))
    ensure_backend(chosen)
    try:
        result = replay_run(run_dir, runs_dir, backend=chosen)
    except ConfigError as exc:
        fail(str(exc))
    except HarnessError as exc:
        fail(str(exc), code=1)
    _print_outcome(result.outcome)
    if result.schedule_differences:
        print("schedule differs from the recording:")
        for line in result.schedule_differences:
            print(f"  {line}")
    else:
        print("schedule: replayed identically")
    if result.divergence is None:
        print(f"raft events: no divergence ({result.original_events} events)")
    else:
        print(f"raft events: first divergence at {result.divergence}")
    return 0 if not result.schedule_differences else 1
