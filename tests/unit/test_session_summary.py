"""The session summary (raftchaos.session/1): counts, the overall verdict, validation, the table."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from harness.checkers.verdict import Validity, Verdict
from harness.entry.plugin import _not_a_directory, _TestState
from reports.session import EXIT_CODES, build_session, load_session, validate_session, write_session
from reports.terminal import render_tests_text


def entry(nodeid: str, outcome: str, verdict: str | None, **extra: Any) -> dict[str, Any]:
    return {"nodeid": nodeid, "outcome": outcome, "verdict": verdict, "failed_by_strict": False, "seed": 7,
            "run_dirs": [], "reasons": [], "verdicts": [], **extra}


def test_unknown_is_counted_apart_from_passed_and_decides_the_overall() -> None:
    doc = build_session([entry("a", "passed", "valid"), entry("b", "unknown", "unknown"),
                         entry("c", "passed", None)], strict=False, exit_status=0)
    assert doc["counts"]["outcomes"] == {"passed": 2, "failed": 0, "error": 0, "skipped": 0, "unknown": 1}
    assert doc["counts"]["verdicts"] == {"valid": 1, "invalid": 0, "unknown": 1, "none": 1}
    assert (doc["overall"], doc["exit_code"]) == ("unknown", EXIT_CODES["unknown"]) == ("unknown", 2)
    assert validate_session(doc) == []


@pytest.mark.parametrize(("tests", "overall"), [
    ([entry("a", "passed", "valid")], "valid"),
    ([entry("a", "failed", "unknown", failed_by_strict=True)], "unknown"),  # strict turned unknown into a failure
    ([entry("a", "failed", "valid"), entry("b", "unknown", "unknown")], "invalid"),
    ([entry("a", "error", None)], "invalid"),
    ([entry("a", "passed", "invalid")], "invalid"),
    ([], "unknown"),  # no test ran: nothing was exercised, never valid
    ([entry("a", "skipped", None), entry("b", "skipped", None)], "unknown"),
    ([entry("a", "skipped", None), entry("b", "passed", "valid")], "valid"),
])
def test_overall_invalid_beats_unknown_beats_valid(tests: list[dict[str, Any]], overall: str) -> None:
    assert build_session(tests, strict=True, exit_status=1)["overall"] == overall


def test_a_test_state_composes_cluster_and_orphan_verdicts() -> None:
    state = _TestState("t.py::x", seed=3)
    assert state.verdict is None and state.entry()["verdict"] is None  # not a raftchaos test
    state.verdicts.append(Verdict("durability", Validity.VALID, "all acked writes read back"))
    state.orphan_verdicts.append(Verdict("bite", Validity.UNKNOWN, "no traffic crossed the cut"))
    assert state.verdict is Validity.UNKNOWN
    assert state.entry()["reasons"] == ["bite: no traffic crossed the cut"]
    state.unknown = True
    assert state.outcome == "unknown"


def test_load_session_names_the_file_and_the_problem(tmp_path: Path) -> None:
    good = write_session(tmp_path / "s" / "summary.json", build_session([entry("a", "passed", "valid")], False, 0))
    assert load_session(good)["tests"][0]["nodeid"] == "a"
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ValueError, match=r"bad.json: not JSON"):
        load_session(bad)
    bad.write_text(json.dumps({"schema": "raftchaos.summary/1"}))
    with pytest.raises(ValueError, match=r"bad.json: not a raftchaos session summary: schema is"):
        load_session(bad)
    with pytest.raises(ValueError, match=r"gone.json: cannot read"):
        load_session(tmp_path / "gone.json")


def test_the_tests_table_shows_unknown_with_its_reason() -> None:
    text = render_tests_text([entry("t.py::u[mixed]", "unknown", "unknown", reasons=["bite: did not bite"])],
                             width=160)
    assert "t.py::u[mixed]" in text and "unknown" in text and "bite: did not bite" in text  # ids are not markup


def test_run_dir_checks_create_nothing(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    assert _not_a_directory(tmp_path / "new" / "deeper") is None and not (tmp_path / "new").exists()
    assert _not_a_directory(tmp_path / "file") == "is an existing file"
    assert "is an existing file, not a directory" in (_not_a_directory(tmp_path / "file" / "x") or "")
