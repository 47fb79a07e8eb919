"""The plugin's end-of-session HTML report: one line per run, a path or why there is none, never an error."""

from __future__ import annotations

from pathlib import Path

import pytest
from test_reports import make_run

from harness.entry.plugin import _render_html, _TestState
from harness.store import RunDir


def test_a_rendered_report_is_linked_by_its_path(tmp_path: Path) -> None:
    run = RunDir(make_run(tmp_path))
    line = _render_html(run, _TestState("suites/test_x.py::test_y", failed_phases=["call"]))
    assert line == f"raftchaos report suites/test_x.py::test_y [failed]: {run.report_path}"
    assert run.report_path.is_file()


def test_a_report_that_cannot_be_rendered_costs_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    missing = _render_html(RunDir(tmp_path / "gone"), _TestState("t.py::gone"))
    assert missing.startswith("raftchaos report of t.py::gone failed") and "\n" not in missing

    def broken(run_dir: Path) -> Path:
        raise ValueError("a plotting bug\nwith a second line")

    monkeypatch.setattr("reports.html.render_for_pytest", broken)
    line = _render_html(RunDir(make_run(tmp_path)), _TestState("t.py::broken"))
    assert line.endswith("ValueError: a plotting bug")
