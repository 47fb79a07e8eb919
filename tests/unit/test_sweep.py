"""Run ownership tokens and process labels used to sweep killed runs' leftovers."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from harness.sweep import (
    OWNER_ENV,
    RUN_ENV,
    Registry,
    labelled_env,
    owner_alive,
    owner_token,
    process_alive,
    sweep_dead,
)


def test_own_token_is_alive_and_forged_tokens_are_not() -> None:
    token = owner_token()
    assert owner_alive(token)
    pid, _, ticks = token.partition(":")
    assert not owner_alive(f"{pid}:{int(ticks) + 1}")  # same pid, other process (pid reuse)
    assert not owner_alive("not-a-pid")
    assert process_alive(os.getpid())


def test_labelled_env_carries_run_and_owner() -> None:
    env = labelled_env("run-1", {"PATH": "/bin"})
    assert env == {"PATH": "/bin", RUN_ENV: "run-1", OWNER_ENV: owner_token()}


# ---- a SIGKILLed run's processes and run directory are swept together ----------------------------

_KILLED_RUN = r"""
import json, subprocess, sys, time
from pathlib import Path
from harness.sweep import Registry, labelled_env
run_dir = Path(sys.argv[1])
run_dir.mkdir(parents=True)
events = [{"t": 0.0, "kind": "note", "text": "cluster starting"}]
if sys.argv[2] == "crash":
    events.append({"t": 1.0, "kind": "node", "process": "harness", "node": "n2", "event": "exit", "code": 74})
(run_dir / "events.jsonl").write_text("".join(json.dumps(e) + "\n" for e in events))
registry = Registry(run_dir.name, run_dir)
child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"], env=labelled_env(run_dir.name),
                         start_new_session=True)
registry.add([child.pid])
print(child.pid, flush=True)
time.sleep(120)
"""


def _killed_run(tmp_path: Path, name: str, kind: str) -> tuple[Path, int]:
    """Start a harness-like process that records a run (registry, run dir, one labelled child),
    SIGKILL it, and return (its run dir, its child's pid)."""
    import signal
    import subprocess
    import sys

    run_dir = tmp_path / "runs" / name
    proc = subprocess.Popen([sys.executable, "-c", _KILLED_RUN, str(run_dir), kind], stdout=subprocess.PIPE,
                            text=True, env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])})
    assert proc.stdout is not None
    child = int(proc.stdout.readline())
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)
    assert process_alive(child) and run_dir.is_dir()
    return run_dir, child


def test_a_killed_runs_directory_is_swept_with_its_processes(tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RAFTCHAOS_REGISTRY", str(tmp_path / "registry"))
    plain, plain_child = _killed_run(tmp_path, "plain", "plain")
    crashed, crashed_child = _killed_run(tmp_path, "crashed", "crash")
    report = sweep_dead()
    assert {p.pid for p in report.processes} >= {plain_child, crashed_child}
    assert not process_alive(plain_child) and not process_alive(crashed_child)
    assert report.removed_dirs == [plain] and not plain.exists()
    assert [p for p, _ in report.kept_dirs] == [crashed] and crashed.exists()  # a real crash is kept
    assert "n2 exited with 74" in report.kept_dirs[0][1]
    again = sweep_dead()  # the kept one stays registered (marked) for `clean --all`
    assert [p for p, _ in again.kept_dirs] == [crashed] and not again.removed_dirs
    everything = sweep_dead(keep_failures=False)
    assert everything.removed_dirs == [crashed] and not crashed.exists()
    assert not list((tmp_path / "registry").glob("*.json"))


def test_a_live_runs_directory_is_never_swept(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RAFTCHAOS_REGISTRY", str(tmp_path / "registry"))
    run_dir = tmp_path / "runs" / "live"
    run_dir.mkdir(parents=True)
    (run_dir / "events.jsonl").write_text("")
    registry = Registry("live", run_dir)  # owned by this (living) process
    try:
        assert not sweep_dead(keep_failures=False).removed_dirs and run_dir.exists()
    finally:
        registry.remove()
