"""A plugin-driven pytest run in a subprocess: verdicts, report, and nothing left behind afterwards."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from harness.sweep import labelled_processes

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
SUITE = '''
from faults.network import partition
from harness.checkers.degradation import check_degradation


def test_passes(make_cluster, workload, record_verdict):
    cluster = make_cluster()
    leader = cluster.wait_for_leader()
    victim = sorted(n for n in cluster.nodes if n != leader)[0]
    with workload(cluster, clients=2, rate_hz=20):
        cluster.wait_until(lambda: cluster.status(leader)["commit_index"] > 10, "writes", 10)
        with partition(cluster, isolate=victim, mode="refused"):
            cluster.wait_until(lambda: cluster.status(leader)["peers"][victim]["failed_attempts"] > 0,
                               "a failed attempt", 5)
            t0 = cluster.history.now()  # the degradation checker needs the leader sampled during the cut
            cluster.wait_until(lambda: any(e["kind"] == "sample" and e["node"] == leader and e["t"] > t0
                                           for e in cluster.history.events()), "a leader sample", 5)
        cluster.wait_until(lambda: cluster.status(leader)["peers"][victim]["status"] == "OK", "heal", 5)
        start = cluster.status(leader)["commit_index"]
        cluster.wait_until(lambda: cluster.status(leader)["commit_index"] > start + 5, "writes", 10)
    record_verdict(check_degradation(cluster.history.events()))


def test_fails(make_cluster):
    make_cluster()
    assert False, "on purpose"
'''


def _ours(owner_pid: int) -> list[int]:
    return [p.pid for p in labelled_processes() if p.owner.startswith(f"{owner_pid}:")]


def test_plugin_run_reports_and_leaves_nothing_behind(tmp_path: Path) -> None:
    (tmp_path / "test_tiny.py").write_text(SUITE)
    runs = tmp_path / "runs"
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.Popen([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--seed", "4242",
                             "--run-dir", str(runs), str(tmp_path / "test_tiny.py")],
                            cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    out, _ = proc.communicate(timeout=240)
    print(out)
    assert proc.returncode == 1, out  # one test fails on purpose
    assert "1 failed, 1 passed" in out
    assert "seed=4242" in out and "run dir:" in out  # printed for the failed test
    assert "raftchaos runs" in out and "isolate(" in out  # the session report
    assert "peers around isolate" in out  # the degradation table of the passing test
    assert _ours(proc.pid) == []
    left = [p for p in runs.iterdir() if p.is_dir()]
    assert len(left) == 1 and "test_fails" in left[0].name, left  # only the failed test's run is kept
    doc = json.loads((left[0] / "verdicts.json").read_text())
    assert doc["outcome"] == "failed" and doc["seed"] == 4242
    assert [v["checker"] for v in doc["verdicts"]] == ["durability", "crashes", "invariants", "linearizable"]
    report = left[0] / "report.html"
    assert f"raftchaos report test_tiny.py::test_fails [failed]: {report}" in out and report.is_file()
    assert "1 run directory of tests that passed or were skipped removed at exit" in out
    session = json.loads((runs / "summary.json").read_text())  # the session summary beside the runs
    assert [(t["outcome"], t["seed"]) for t in session["tests"]] == [("passed", 4242), ("failed", 4242)]
    notes = [json.loads(line) for line in (left[0] / "events.jsonl").read_text().splitlines()]
    versions = next(e["versions"] for e in notes if e["kind"] == "note" and e.get("text") == "versions")
    assert set(versions) == {"python", "raftchaos", "toxiproxy", "backend"} and versions["backend"] == "local"
    assert versions["toxiproxy"] != "unknown"
    for path in (left[0] / "nodes").glob("*.log"):
        assert path.stat().st_size > 0


def test_docker_backend_without_a_daemon_skips_with_the_reason(tmp_path: Path) -> None:
    (tmp_path / "test_docker_only.py").write_text("def test_needs_docker(make_cluster):\n    make_cluster()\n")
    # A DOCKER_HOST that does not answer: ensure_daemon says so at once (and never tries to start one).
    env = dict(os.environ, PYTHONPATH=str(REPO), DOCKER_HOST=f"unix://{tmp_path}/no-docker.sock")
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider",
                           "--backend", "docker", "--run-dir", str(tmp_path / "runs"),
                           str(tmp_path / "test_docker_only.py")],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    assert "1 skipped" in out and "no Docker daemon" in out and "does not answer" in out, out
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())
