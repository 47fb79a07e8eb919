"""``--system etcd`` on the CLI, as a user runs it (subprocesses, local backend): ``run`` of a short
scenario and ``up``/``status``/``fault``/``down``; the system is recorded in spec.json and run.json, and a
kuduraft-only fault on etcd is one line naming the system. Skipped where etcd is not installed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from harness.sweep import process_alive, run_processes
from harness.systems.etcd import find_etcd

pytestmark = [pytest.mark.integration, pytest.mark.skipif(
    find_etcd() is None, reason="etcd not installed (Debian's etcd-server puts it at /usr/bin/etcd)")]
SEED = 1313
SCENARIO = """
name = "etcd-cli"
duration_s = 4.0
[workload]
clients = 2
rate_hz = 10.0
[[timeline]]
at_s = 0.5
for_s = 1.0
fault = "pause"
params = { target = "one" }
"""


def cli(home: Path, *args: str, timeout_s: float = 180) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "RAFTCHAOS_HOME": str(home), "COLUMNS": "200"}
    return subprocess.run([str(Path(sys.executable).parent / "raftchaos"), *args], env=env, capture_output=True,
                          text=True, timeout=timeout_s, check=False)


def _run_dir(stdout: str) -> Path:
    line = next(x for x in stdout.splitlines() if x.startswith("run dir: "))
    return Path(line.removeprefix("run dir: ").split(" (")[0])


def test_run_system_etcd_runs_etcd_and_records_it(tmp_path: Path) -> None:
    print(f"seed={SEED}")
    scenario = tmp_path / "etcd.toml"
    scenario.write_text(SCENARIO)
    done = cli(tmp_path / "home", "run", str(scenario), "--system", "etcd", "--seed", str(SEED),
               "--runs-dir", str(tmp_path / "runs"))
    assert done.returncode in (0, 1, 2), (done.stdout, done.stderr)
    assert "system=etcd" in done.stdout
    run = _run_dir(done.stdout)
    spec = json.loads((run / "spec.json").read_text())
    info = json.loads((run / "run.json").read_text())
    verdicts = json.loads((run / "verdicts.json").read_text())
    assert spec["system"] == "etcd" and info["system"] == "etcd" and info["seed"] == SEED
    assert info["workload"]["enabled"] and info["workload"]["clients"] == 2
    assert verdicts["verdict"] == {0: "valid", 1: "invalid", 2: "unknown"}[done.returncode]
    assert f"verdict: {verdicts['verdict']}" in done.stdout
    assert (run / "report.html").exists()  # the run's report hook
    assert "etcd" in (run / "nodes" / "n1.log").read_text(errors="replace").lower()


def test_up_system_etcd_refuses_kuduraft_only_faults_in_one_line(tmp_path: Path) -> None:
    home = tmp_path / "home"
    up = cli(home, "up", "--system", "etcd", "--seed", str(SEED))
    assert up.returncode == 0, (up.stdout, up.stderr)
    assert "system etcd" in up.stdout
    state = json.loads((home / "up" / "state.json").read_text())
    run_id, run_dir, daemon = state["run_id"], Path(state["run_dir"]), int(state["pid"])
    try:
        flag = cli(home, "fault", "add", "crash-on-leader-request", "-p", "fraction=0.5")
        assert flag.returncode == 254, (flag.stdout, flag.stderr)
        assert "not available for system etcd" in flag.stderr and len(flag.stderr.strip().splitlines()) == 1
        status = cli(home, "status")  # through etcd's observer, not kuduraft's /status
        assert status.returncode == 0 and "LEADER" in status.stdout, (status.stdout, status.stderr)
        paused = cli(home, "fault", "add", "pause", "--target", "one", "--for-s", "0.5")
        assert paused.returncode == 0, paused.stderr
    finally:
        down = cli(home, "down")
    overall = json.loads((run_dir / "verdicts.json").read_text())["verdict"]
    assert down.returncode == {"valid": 0, "invalid": 1, "unknown": 2}[overall], (down.stdout, down.stderr)
    assert json.loads((run_dir / "run.json").read_text())["system"] == "etcd"
    assert not process_alive(daemon) and run_processes(run_id) == []
