"""``raftchaos up / status / fault / down / clean`` on the local backend, as a user runs them (subprocesses)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from harness.history import load_history
from harness.sweep import process_alive, run_processes

pytestmark = pytest.mark.integration
SEED = 515


def cli(home: Path, *args: str, timeout_s: float = 120) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "RAFTCHAOS_HOME": str(home), "COLUMNS": "200"}
    return subprocess.run([str(Path(sys.executable).parent / "raftchaos"), *args], env=env, capture_output=True, text=True,
                          timeout=timeout_s, check=False)


@pytest.fixture
def home(tmp_path: Path) -> Path:
    print(f"seed={SEED}")
    return tmp_path / "home"


def test_up_fault_status_down_leaves_nothing(home: Path) -> None:
    up = cli(home, "up", "--seed", str(SEED), "--nodes", "3", "--flag", "raft_heartbeat_interval_ms=100")
    assert up.returncode == 0, up.stderr
    assert "proxy n1->n2:" in up.stdout and "n1: http http://127.0.0.1:" in up.stdout
    state = json.loads((home / "up" / "state.json").read_text())
    run_id, run_dir, daemon = state["run_id"], Path(state["run_dir"]), int(state["pid"])
    try:
        again = cli(home, "up")
        assert again.returncode == 254 and "already up" in again.stderr
        added = cli(home, "fault", "add", "isolate", "--target", "leader", "-p", "mode=blackhole")
        assert added.returncode == 0, added.stderr
        assert added.stdout.startswith("slot ")
        latency = cli(home, "fault", "add", "latency", "-p", "src=leader", "-p", "latency_ms=20", "--for-s", "1")
        assert latency.returncode == 0, latency.stderr
        for bad, message in ((["fault", "add", "nope"], "unknown fault"),
                             (["fault", "add", "pause", "--target", "n9"], "unknown node"),
                             (["fault", "add", "majorities-ring"], "needs at least 4 nodes"),
                             (["fault", "add", "pause", "-p", "oops"], "name=value"),
                             (["fault", "heal", "99"], "no open fault")):
            result = cli(home, *bad)
            assert result.returncode == 254, (bad, result.stdout, result.stderr)
            assert message in result.stderr and "Traceback" not in result.stderr
            assert len(result.stderr.strip().splitlines()) == 1
        status = cli(home, "status")
        assert status.returncode == 0, status.stderr
        assert "LEADER" in status.stdout and "isolate" in status.stdout
        watch = cli(home, "status", "--watch", "--interval-s", "0.2", "--count", "2")
        assert watch.returncode == 0, watch.stderr
        listed = cli(home, "fault", "list")
        assert "majorities-ring" in listed.stdout and "open faults" in listed.stdout
        healed = cli(home, "fault", "heal", "--all")
        assert healed.returncode == 0 and "healed slots:" in healed.stdout
    finally:
        down = cli(home, "down")
    overall = json.loads((run_dir / "verdicts.json").read_text())["verdict"]
    assert down.returncode == {"valid": 0, "invalid": 1, "unknown": 2}[overall], (down.stdout, down.stderr)
    assert f"cluster down: run {run_id}, verdict {overall}" in down.stdout
    assert not process_alive(daemon)
    assert run_processes(run_id) == []
    assert not (home / "up" / "state.json").exists()
    events = load_history(run_dir / "events.jsonl")
    faults = [e["fault"] for e in events if e["kind"] == "fault"]
    assert faults[:2] == ["isolate", "latency"]
    heals = [e for e in events if e["kind"] == "heal"]
    assert all("vacuous" in e for e in heals), heals
    assert (run_dir / "schedule.jsonl").exists() and (run_dir / "verdicts.json").exists()
    assert cli(home, "down").returncode == 254  # nothing up any more: one line, bad input


def test_a_killed_supervisor_is_swept_by_clean(home: Path) -> None:
    up = cli(home, "up", "--seed", str(SEED))
    assert up.returncode == 0, up.stderr
    state = json.loads((home / "up" / "state.json").read_text())
    os.kill(int(state["pid"]), 9)
    clean = cli(home, "clean")
    assert clean.returncode in (0, 1), clean.stderr
    assert "removed stale state" in clean.stdout
    assert run_processes(state["run_id"]) == []
    assert not (home / "up" / "state.json").exists()
    assert not Path(state["run_dir"]).exists()  # a killed run's directory goes with its processes


def test_down_after_real_node_crashes_exits_invalid(home: Path) -> None:
    """Two nodes die of a signal nobody in the harness sent (as the OOM killer would): the crash
    checker makes the run invalid and ``down`` exits 1, naming the crash (issue #10 item 6)."""
    up = cli(home, "up", "--seed", str(SEED))
    assert up.returncode == 0, up.stderr
    state = json.loads((home / "up" / "state.json").read_text())
    run_dir = Path(state["run_dir"])
    try:
        for node in ("n2", "n3"):
            os.kill(int(state["nodes"][node]["pid"]), 9)
    finally:
        down = cli(home, "down")
    assert down.returncode == 1, (down.stdout, down.stderr)
    assert "verdict invalid" in down.stdout
    doc = json.loads((run_dir / "verdicts.json").read_text())
    crashes = next(v for v in doc["verdicts"] if v["checker"] == "crashes")
    assert crashes["validity"] == "invalid" and "node crashed: n2 exited with -9" in crashes["summary"]
    assert {c["node"] for c in crashes["details"]["crashes"]} == {"n2", "n3"}
    assert cli(home, "report", str(run_dir)).returncode == 1  # the re-check agrees
