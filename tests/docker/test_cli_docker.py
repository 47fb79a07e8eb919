"""``raftchaos up --backend docker / status / fault / down`` as a user runs them (subprocesses): the
supervisor owns a Docker cluster, the host reaches the nodes at their container IPs, and ``down``
leaves no labelled container or network behind."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import docker
import pytest

from harness.docker.resources import LABEL_RUN
from harness.sweep import process_alive

pytestmark = pytest.mark.docker


def cli(home: Path, *args: str, timeout_s: float = 240) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "RAFTCHAOS_HOME": str(home), "COLUMNS": "200"}
    return subprocess.run([str(Path(sys.executable).parent / "raftchaos"), *args], env=env, capture_output=True,
                          text=True, timeout=timeout_s, check=False)


def leftovers(client: docker.DockerClient, run_id: str) -> list[str]:
    selector = {"label": f"{LABEL_RUN}={run_id}"}
    return ([f"container {c.name}" for c in client.containers.list(all=True, filters=selector)]
            + [f"network {n.name}" for n in client.networks.list(filters=selector)])


def test_up_status_fault_down_on_docker(tmp_path: Path, seed: int) -> None:
    home = tmp_path / "home"
    up = cli(home, "up", "--backend", "docker", "--seed", str(seed), "--nodes", "3")
    assert up.returncode == 0, up.stdout + up.stderr
    assert "backend docker" in up.stdout and "http http://127.0.0.1:" not in up.stdout  # container IPs
    state = json.loads((home / "up" / "state.json").read_text())
    run_id, run_dir, daemon = state["run_id"], Path(state["run_dir"]), int(state["pid"])
    assert state["spec"]["backend"] == "docker"
    client = docker.from_env()
    try:
        assert leftovers(client, run_id), "the cluster runs in labelled containers"
        status = cli(home, "status")
        assert status.returncode == 0, status.stderr
        assert "LEADER" in status.stdout and "unreachable" not in status.stdout, status.stdout
        added = cli(home, "fault", "add", "isolate", "--target", "leader", "-p", "mode=refused")
        assert added.returncode == 0, added.stderr
        assert added.stdout.startswith("slot ")
        listed = cli(home, "status")
        assert listed.returncode == 0 and "isolate" in listed.stdout, listed.stderr
    finally:
        down = cli(home, "down")
    # down exits by the run's verdict (README "Verdicts and exit codes"); with no workload it is
    # usually unknown (nothing exercised the system), which is exit 2, not a failure of the test.
    overall = json.loads((run_dir / "verdicts.json").read_text())["verdict"]
    assert down.returncode == {"valid": 0, "invalid": 1, "unknown": 2}[overall], down.stdout + down.stderr
    assert f"cluster down: run {run_id}, verdict {overall}" in down.stdout
    assert not process_alive(daemon)
    assert not (home / "up" / "state.json").exists()
    try:
        assert leftovers(client, run_id) == []
    finally:
        client.close()
