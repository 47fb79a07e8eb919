"""Run directory layout and listing."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from harness.errors import ConfigError
from harness.store import list_runs, new_run_dir, open_run_dir, run_name


def test_run_name_is_time_test_seed() -> None:
    when = datetime(2026, 1, 2, 3, 4, 5, 6000, tzinfo=UTC)
    assert run_name("test_x[a b]", 7, when) == "20260102T030405.006000Z-test_x_a_b-7"


def test_new_run_dir_layout_and_uniqueness(tmp_path: Path) -> None:
    when = datetime(2026, 1, 2, tzinfo=UTC)
    a = new_run_dir("t", 1, tmp_path, when)
    b = new_run_dir("t", 1, tmp_path, when)
    assert a.path != b.path and a.run_id != b.run_id
    assert a.nodes_dir.is_dir() and a.node_log("n1") == a.path / "nodes" / "n1.log"
    assert a.events_path.name == "events.jsonl" and a.spec_path.name == "spec.json"
    assert a.verdicts_path.name == "verdicts.json" and a.report_path.name == "report.html"
    assert a.schedule_path.name == "schedule.jsonl"


def test_list_and_open_runs(tmp_path: Path) -> None:
    first = new_run_dir("a", 1, tmp_path, datetime(2026, 1, 1, tzinfo=UTC))
    second = new_run_dir("b", 2, tmp_path, datetime(2026, 1, 2, tzinfo=UTC))
    new_run_dir("empty", 3, tmp_path)  # no events/spec: not a run yet
    for run in (first, second):
        run.events_path.write_text("")
    assert [r.run_id for r in list_runs(tmp_path)] == [first.run_id, second.run_id]
    assert open_run_dir(first.path).run_id == first.run_id
    with pytest.raises(ConfigError):
        open_run_dir(tmp_path / "nope")
    assert list_runs(tmp_path / "missing") == []
