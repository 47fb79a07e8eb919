"""The stability benchmark's reading of recorded session summaries and its aggregation."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]


def _load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("suite_stability", REPO / "benchmarks" / "suite_stability.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


stab = _load()


def _summary(path: Path, tests: list[dict[str, Any]], strict: bool = False) -> Path:
    from reports.session import build_session, write_session

    full = [{"failed_by_strict": False, "run_dirs": [], "verdicts": [], "reasons": [], "seed": None, **t}
            for t in tests]
    return write_session(path, build_session(full, strict, 0))


def test_runs_aggregate_per_test_with_seeds_and_reasons(tmp_path: Path) -> None:
    one = _summary(tmp_path / "1.json", [
        {"nodeid": "s.py::a", "outcome": "passed", "verdict": "valid", "seed": 11},
        {"nodeid": "s.py::b", "outcome": "unknown", "verdict": "unknown", "seed": 12,
         "reasons": ["bite: no traffic crossed the cut"]},
        {"nodeid": "s.py::c", "outcome": "skipped", "verdict": None}])
    two = _summary(tmp_path / "2.json", [
        {"nodeid": "s.py::a", "outcome": "failed", "verdict": "invalid", "seed": 21,
         "reasons": ["durability: lost 1 acked write"], "failure": "teardown: durability invalid"},
        {"nodeid": "s.py::b", "outcome": "failed", "verdict": "unknown", "seed": 22, "failed_by_strict": True,
         "reasons": ["linearizability: search budget exhausted"]},
        {"nodeid": "s.py::c", "outcome": "error", "verdict": None, "seed": 23}], strict=True)
    runs = [stab.read_run(1, 3.0, 0, one, tmp_path / "1.log"), stab.read_run(2, 4.0, 1, two, tmp_path / "2.log")]
    stats = stab.aggregate(runs)
    assert {k: v.counts for k, v in stats.items()} == {
        "s.py::a": {"pass": 1, "fail": 1, "unknown": 0, "skip": 0},
        "s.py::b": {"pass": 0, "fail": 0, "unknown": 2, "skip": 0},  # strict's failure is still an unknown
        "s.py::c": {"pass": 0, "fail": 1, "unknown": 0, "skip": 1},
    }
    assert stats["s.py::a"].failures == ["run 2: seed 21: teardown: durability invalid"]
    assert stats["s.py::b"].unknowns == ["run 1: seed 12: bite: no traffic crossed the cut",
                                         "run 2: seed 22: linearizability: search budget exhausted"]
    assert stab.failed(runs, stats)
    assert not stab.failed(runs[:1], stab.aggregate(runs[:1]))  # unknowns alone are not failures


def test_a_run_without_its_summary_is_a_failed_run(tmp_path: Path) -> None:
    (tmp_path / "corrupt.json").write_text("{")
    runs = [stab.read_run(1, 1.0, 4, tmp_path / "missing.json", tmp_path / "1.log"),
            stab.read_run(2, 1.0, 3, tmp_path / "corrupt.json", tmp_path / "2.log")]
    assert runs[0].problem.startswith("no session summary (pytest exit 4, log ")
    assert "not JSON" in runs[1].problem
    assert stab.failed(runs, stab.aggregate(runs))


@pytest.mark.parametrize("argv", [["--runs", "0"], ["--runs", "x"], ["--target", "no/such/dir"]])
def test_bad_arguments_are_one_line_and_254(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        stab.parse_args(argv)
    assert exc.value.code == 254
    err = capsys.readouterr().err
    assert err.startswith("suite_stability: ") and err.count("\n") == 1


def test_a_summary_recorded_from_a_real_session_parses(tmp_path: Path) -> None:
    """data/session_summary_recorded.json was written by the plugin (a tiny file: one valid, one
    unknown via record_verdict, one plain test), so the benchmark reads what the plugin writes."""
    path = Path(__file__).with_name("data") / "session_summary_recorded.json"
    stats = stab.aggregate([stab.read_run(1, 1.0, 0, path, tmp_path / "log")])
    assert {k: v.counts for k, v in stats.items()} == {
        "test_tiny.py::test_valid": {"pass": 1, "fail": 0, "unknown": 0, "skip": 0},
        "test_tiny.py::test_unknown": {"pass": 0, "fail": 0, "unknown": 1, "skip": 0},
        "test_tiny.py::test_plain": {"pass": 1, "fail": 0, "unknown": 0, "skip": 0},
    }
    assert stats["test_tiny.py::test_unknown"].unknowns == ["run 1: seed None: bite: the fault did not bite"]
