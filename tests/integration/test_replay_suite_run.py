"""``raftchaos replay`` of a suite run: the real nemesis suite test, run through the pytest plugin
with a short schedule, then replayed; the replay must run the same workload, supervisor and
schedule (issue #13: a suite run used to replay with the scenario defaults) on the same system:
kuduraft's mixed family, and etcd's process family (``--system etcd``; skipped without etcd)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from faults.nemesis import read_schedule
from faults.replay import comparable
from harness.entry.cli.runs import replay_run
from harness.runinfo import RUN_INFO, comparable_info
from harness.systems.etcd import find_etcd

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
SEED = 20261207
TEST = "suites/test_nemesis.py::test_random_schedule_keeps_acknowledged_writes[{family}]"
SYSTEMS = [
    pytest.param("kuduraft", "mixed", id="kuduraft-mixed"),
    pytest.param("etcd", "process", id="etcd-process", marks=pytest.mark.skipif(
        find_etcd() is None, reason="etcd not installed (Debian's etcd-server puts it at /usr/bin/etcd)")),
]


def _run_info(run_dir: Path) -> dict:
    return json.loads((run_dir / RUN_INFO).read_text(encoding="utf-8"))


@pytest.mark.parametrize(("system", "family"), SYSTEMS)
def test_a_suite_run_replays_with_its_own_workload_and_schedule(tmp_path: Path, system: str, family: str) -> None:
    print(f"seed={SEED}")
    runs = tmp_path / "runs"
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", TEST.format(family=family),
                           "--system", system, "--seed", str(SEED), "--nemesis-duration-s", "5", "--keep-runs",
                           "--run-dir", str(runs), "--raftchaos-summary", str(tmp_path / "summary.json")],
                          cwd=REPO, env=dict(os.environ, PYTHONPATH=str(REPO)), capture_output=True,
                          text=True, timeout=240)
    print(proc.stdout[-4000:], proc.stderr[-2000:])
    assert proc.returncode in (0, 1), proc.returncode  # the verdict is the system's business
    [original_dir] = [p for p in runs.iterdir() if p.is_dir()]
    original = _run_info(original_dir)
    # what the test actually used (3 clients at 30 Hz, the supervisor on), not the replay defaults
    assert original["workload"] == {"enabled": True, "clients": 3, "rate_hz": 30.0, "keys": 4,
                                    "mix": {"cas": 0.2, "read": 0.4, "write": 0.4}, "op_timeout_s": None}
    assert original["supervisor"]["enabled"] is True
    assert original["seed"] == SEED and original["name"].endswith(f"[{family}]")
    assert original["system"] == system and original["cluster"]["system"] == system
    assert original["schedule"]["file"] == "schedule.jsonl" and original["schedule"]["steps"] > 0
    assert original["timeline"]["schedule_start_s"] > original["timeline"]["workload_start_s"]

    result = replay_run(original_dir, tmp_path / "replays")
    replayed = _run_info(result.outcome.run.path)
    assert replayed["replay_of"] == str(original_dir)
    assert comparable_info(replayed) == comparable_info(original)  # the system included
    # the replay waits for each recorded offset, so it is never early
    for key in ("workload_start_s", "schedule_start_s"):
        assert replayed["timeline"][key] >= original["timeline"][key]

    recorded = read_schedule(original_dir / "schedule.jsonl")
    again = read_schedule(result.outcome.run.schedule_path)
    assert result.schedule_differences == [], result.schedule_differences
    assert [comparable(x) for x in again] == [comparable(x) for x in recorded]
    # same order, and each step planned at the offset the original executed it
    assert [x["offset_s"] for x in again] == pytest.approx([x["at_s"] for x in recorded])
