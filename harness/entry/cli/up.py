"""``raftchaos up`` (start a cluster kept running by a detached supervisor) and ``raftchaos down``."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Annotated, Any

import typer

from harness.entry.cli import app
from harness.entry.cli.common import (
    EXIT_BY_VERDICT,
    EXIT_ENVIRONMENT,
    EXIT_UNKNOWN,
    BackendOption,
    SystemOption,
    ensure_backend,
    fail,
    parse_pairs,
    system_choice,
    with_system,
)
from harness.entry.cli.state import (
    control,
    daemon_alive,
    home,
    live_state,
    read_state,
    remove_stale,
    state_dir,
    state_path,
    stop_daemon,
    sweep_docker,
)
from harness.errors import ConfigError, HarnessError, WaitTimeout
from harness.spec import BackendName
from harness.sweep import process_alive
from harness.waits import WaitStrategy, wait_until

START_TIMEOUT_S = 90.0


def _spec_and_plan(nodes: int, flags: list[str], seed: int | None, profile: str, supervisor: bool,
                   workload: bool, scenario: Path | None, backend: BackendName | None,
                   system: str) -> tuple[dict[str, Any], dict[str, Any]]:
    from faults.scenario import PROFILES, flag_problem, load_scenario, parse_scenario
    from harness.entry.cli.runs import scenario_plan

    if scenario is not None:
        scn = load_scenario(scenario)
    else:
        if profile not in PROFILES:
            fail(f"--profile: must be one of {', '.join(PROFILES)}, got {profile!r}")
        pairs = parse_pairs(flags, "--flag")
        for name, value in pairs.items():
            problem = flag_problem(name, value, system)
            if problem:
                fail(f"--flag {name}: {problem}")
        lines = ["name = \"up\"", "[cluster]", f"nodes = {nodes}", f"profile = \"{profile}\"",
                 f"supervisor = {str(supervisor).lower()}", "[cluster.flags]"]
        lines += [f"{k} = {json.dumps(v)}" for k, v in pairs.items()]
        lines += ["[workload]", f"enabled = {str(workload).lower()}"]
        scn = parse_scenario("\n".join(lines), "raftchaos up", require_work=False)
    if backend is not None:
        scn = dataclasses.replace(scn, backend=backend)
    run_seed = scn.resolve_seed(seed)
    run_plan = scenario_plan(scn, run_seed)
    info = run_plan.info()
    info["steps"] = [s.to_dict() for s in run_plan.steps]
    info["runs_root"] = str((home() / "runs").resolve())
    return with_system(scn.cluster_spec(run_seed, test_name="up"), system).to_dict(), info


def _check_runs_here(spec: dict[str, Any]) -> None:
    """A system that cannot run on the chosen backend: one line, exit 3, before anything starts
    (the supervisor process would only report it as a cluster that did not start)."""
    from harness.spec import ClusterSpec
    from harness.systems.base import SystemUnavailable
    from harness.systems.registry import system_for

    cluster = ClusterSpec.from_dict(spec)
    try:
        system_for(cluster.system, cluster).proxy_shape(cluster.backend.value)
    except SystemUnavailable as exc:
        fail(f"--system {cluster.system}: {exc}", code=EXIT_ENVIRONMENT)


def _wait_ready(proc: subprocess.Popen[bytes], log: Path, timeout_s: float) -> dict[str, Any]:
    def ready() -> dict[str, Any] | None:  # None: not yet
        doc = read_state()
        if doc is not None and doc.get("status") in ("ready", "failed"):
            return doc
        if proc.poll() is not None:
            return {"status": "failed", "error": f"the supervisor exited with {proc.returncode}"}
        return None
    try:
        found: dict[str, Any] | None = wait_until(ready, what="the cluster to come up",
                                                  strategy=WaitStrategy(timeout_s, 0.1))
        return found or {"status": "failed", "error": "no state"}
    except WaitTimeout:
        return {"status": "failed", "error": f"not up within {timeout_s:g} s (log: {log})"}


@app.command("up")
def up(
    nodes: Annotated[int, typer.Option(help="number of nodes (1-7)", min=1, max=7)] = 3,
    flag: Annotated[list[str] | None, typer.Option("--flag", help="node flag name=value (repeatable)")] = None,
    seed: Annotated[int | None, typer.Option(help="run seed (default: random, printed)", min=0)] = None,
    profile: Annotated[str, typer.Option(help="timing base: fast or kuduraft")] = "fast",
    supervisor: Annotated[bool, typer.Option(help="restart nodes that exit 85 (injected crash)")] = False,
    workload: Annotated[bool, typer.Option(help="run a background KV workload")] = False,
    scenario: Annotated[Path | None, typer.Option(help="take everything from a scenario file "
                                                       "(its timeline runs too)")] = None,
    timeout_s: Annotated[float, typer.Option(help="how long to wait for a leader (s, 1-3600)",
                                             min=1.0, max=3600.0)] = START_TIMEOUT_S,
    backend: BackendOption = None,
    system: SystemOption = None,
) -> int:
    """Start a cluster and keep it running in the background; print node and proxy addresses.
    Every option and flag is checked first (254 naming it; 3 when the system cannot run on the
    backend); 2 when the cluster did not start."""
    chosen = system_choice(system)
    for line in remove_stale():
        print(line)
    existing = read_state()
    if existing is not None and daemon_alive(existing):
        fail(f"a cluster is already up (run {existing.get('run_id')}); stop it first: raftchaos down")
    try:
        spec, info = _spec_and_plan(nodes, flag or [], seed, profile, supervisor, workload, scenario, backend,
                                    chosen)
    except (ConfigError, HarnessError) as exc:
        fail(str(exc))
    _check_runs_here(spec)
    ensure_backend(BackendName(spec["backend"]))
    folder = state_dir()
    folder.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(FileNotFoundError):
        state_path().unlink()
    spec_file = Path(tempfile.mkstemp(prefix="spec-", suffix=".json", dir=folder)[1])
    plan_file = Path(tempfile.mkstemp(prefix="plan-", suffix=".json", dir=folder)[1])
    spec_file.write_text(json.dumps(spec))
    plan_file.write_text(json.dumps(info))
    log = folder / "daemon.log"
    print(f"seed={spec['seed']}")
    with log.open("ab") as fh:
        proc = subprocess.Popen([sys.executable, "-m", "harness.entry.cli.daemon", "--spec", str(spec_file),
                                 "--plan", str(plan_file), "--state", str(state_path())],
                                stdin=subprocess.DEVNULL, stdout=fh, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        doc = _wait_ready(proc, log, timeout_s)
    except KeyboardInterrupt:
        stop_daemon({"pid": proc.pid})
        proc.wait(10)
        sweep_docker({"spec": spec})  # now that the supervisor is reaped, its containers count as dead
        print("raftchaos: aborted; everything started was stopped", file=sys.stderr)
        return 130
    finally:
        for path in (spec_file, plan_file):
            path.unlink(missing_ok=True)
    if doc.get("status") != "ready":
        stop_daemon({"pid": proc.pid})
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(10)
        sweep_docker({"spec": spec})
        state_path().unlink(missing_ok=True)
        print(f"raftchaos: cluster did not start: {doc.get('error')} (log: {log})", file=sys.stderr)
        return EXIT_UNKNOWN  # nothing was exercised: never a verdict on the system
    _print_addresses(doc)
    return 0


def _print_addresses(doc: dict[str, Any]) -> None:
    print(f"cluster up: run {doc['run_id']} (seed {doc['seed']}, backend {doc['spec']['backend']}, "
          f"system {doc['spec'].get('system', 'kuduraft')})")
    print(f"run dir:    {doc['run_dir']}")
    print(f"supervisor: pid {doc['pid']}, control {doc['control']} (loopback only)")
    print(f"toxiproxy:  {doc['toxiproxy']}")
    for node, n in doc["nodes"].items():
        where = f"  pid {n['pid']}" if n.get("pid") is not None else ""  # containers have no host pid
        print(f"  {node}: http {n['http']}  rpc {n['rpc']}  client {n['client']}{where}")
    for name, listen in sorted(doc["proxies"].items()):
        print(f"  proxy {name}: {listen}")


@app.command("down")
def down(timeout_s: Annotated[float, typer.Option(help="how long to wait for a clean stop (s, 1-3600)",
                                                  min=1.0, max=3600.0)] = 60.0) -> int:
    """Stop the running cluster: heal everything, final reads, verdicts, stop every process.
    Exit by the run's overall verdict: 0 valid, 1 invalid (a node that crashed for real
    included), 2 unknown (no verdicts could be written)."""
    try:
        doc = live_state()
    except ConfigError as exc:
        fail(str(exc))
    try:
        control(doc, "POST", "/down", timeout_s=10)
        wait_until(lambda: not process_alive(int(doc["pid"])), what="the supervisor to stop",
                   strategy=WaitStrategy(timeout_s, 0.1))
    except (HarnessError, WaitTimeout) as exc:
        print(f"raftchaos: supervisor did not stop cleanly ({str(exc).splitlines()[0]}); killing it",
              file=sys.stderr)
        stop_daemon(doc)
    state_path().unlink(missing_ok=True)
    overall = _recorded_verdict(Path(doc["run_dir"]) / "verdicts.json")
    print(f"cluster down: run {doc['run_id']}, verdict {overall}")
    print(f"run dir: {doc['run_dir']} (raftchaos report {doc['run_dir']})")
    return EXIT_BY_VERDICT.get(overall, EXIT_UNKNOWN)


def _recorded_verdict(path: Path) -> str:
    """The overall verdict the supervisor wrote; unknown when it wrote none or an unreadable one
    (the run was not judged, which is never a pass)."""
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return "unknown"
    verdict = doc.get("verdict") if isinstance(doc, dict) else None
    return verdict if verdict in EXIT_BY_VERDICT else "unknown"
