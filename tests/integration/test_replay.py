"""``replay``: a recorded schedule re-executed on a fresh cluster of the same spec is the same schedule."""

from __future__ import annotations

from pathlib import Path

import pytest

from faults.nemesis import read_schedule
from faults.replay import check_replayable, comparable
from faults.scenario import parse_scenario
from harness.entry.cli.runs import execute, replay_run, scenario_plan
from harness.errors import ConfigError

pytestmark = pytest.mark.integration
SEED = 31337
SCENARIO = """
name = "replay-check"
seed = 31337
duration_s = 4.5
[workload]
clients = 2
rate_hz = 10.0
[[timeline]]
at_s = 0.5
for_s = 1.5
fault = "isolate"
params = { target = "one", mode = "blackhole" }
[[timeline]]
at_s = 0.5
for_s = [0.5, 1.5]
fault = "latency"
params = { src = "leader", dst = "one", latency_ms = 30, jitter_ms = 20 }
[[timeline]]
at_s = 2.5
for_s = 0.5
fault = "pause"
params = { target = "one" }
"""


def test_replayed_schedule_equals_the_recorded_one(tmp_path: Path) -> None:
    print(f"seed={SEED}")
    scenario = parse_scenario(SCENARIO, "replay-check.toml")
    original = execute(scenario.cluster_spec(SEED), scenario_plan(scenario, SEED), tmp_path / "runs")
    recorded = read_schedule(original.run.schedule_path)
    assert [x["op"] for x in recorded].count("inject") == 3
    assert all("targets" in x for x in recorded if x["op"] == "inject"), recorded
    result = replay_run(original.run.path, tmp_path / "runs")
    replayed = read_schedule(result.outcome.run.schedule_path)
    assert result.schedule_differences == [], result.schedule_differences
    assert [comparable(x) for x in replayed] == [comparable(x) for x in recorded]
    assert result.outcome.seed == SEED
    # the comparison of observed Raft events ran; whether it diverged is the system's business
    assert result.original_events >= 1 and result.replay_events >= 1
    # The real recording reads back whole; with its last line cut it is refused before any cluster
    # starts (a partial schedule must never be called "replayed identically").
    whole = check_replayable(original.run.path)
    assert len(whole.executed) == len(recorded)
    lines = original.run.schedule_path.read_text().splitlines(keepends=True)
    original.run.schedule_path.write_text("".join(lines[:-1]))
    with pytest.raises(ConfigError, match="truncated"):
        check_replayable(original.run.path)
    original.run.schedule_path.write_text("".join(lines)[:-10])
    with pytest.raises(ConfigError, match="torn"):
        replay_run(original.run.path, tmp_path / "runs")
