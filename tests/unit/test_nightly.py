"""The nightly driver's planning, reading of session summaries, verdict and exit code, and the suite option."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]


def _load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("nightly", REPO / "benchmarks" / "nightly.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


nightly = _load()


def _run(verdict: str, family: str = "mixed", seed: int = 1) -> Any:
    return nightly.NightlyRun(1, family, seed, 10.0, 0, verdict)


def test_families_take_turns_and_seeds_come_from_the_master_seed() -> None:
    plans = [nightly.plan_run(i, 42, ["mixed", "network"]) for i in range(4)]
    assert [f for f, _ in plans] == ["mixed", "network", "mixed", "network"]
    assert [s for _, s in plans] == nightly.run_seeds(42, 4)
    assert nightly.run_seeds(42, 4) != nightly.run_seeds(43, 4)
    assert len(set(nightly.run_seeds(42, 50))) == 50
    assert all(0 <= s < 2**31 for s in nightly.run_seeds(42, 50))


def test_a_run_is_started_only_when_the_budget_holds_it() -> None:
    assert nightly.fits(0.0, 100.0, 100.0)
    assert not nightly.fits(30.0, 100.0, 75.0)


def _summary(tests: list[dict[str, Any]]) -> dict[str, Any]:
    from reports.session import build_session

    entries = [{"failed_by_strict": False, "failure": None, "verdict": "valid", "seed": 1, "run_dirs": ["r"],
                "reasons": [], "verdicts": [], **t} for t in tests]
    return build_session(entries, True, 0)


def test_verdict_of_a_session_summary() -> None:
    assert nightly.verdict_of(None)[0] == "error"
    assert nightly.verdict_of(_summary([{"nodeid": "t", "outcome": "passed"}]))[0] == "valid"
    verdict, reasons, dirs = nightly.verdict_of(_summary([{
        "nodeid": "t", "outcome": "failed", "failed_by_strict": True, "verdict": "unknown",
        "reasons": ["windows: did not bite"], "failure": "call: raftchaos verdict unknown"}]))
    assert (verdict, reasons, dirs) == ("unknown", ["windows: did not bite"], ["r"])
    verdict, reasons, _ = nightly.verdict_of(_summary([{
        "nodeid": "t", "outcome": "failed", "verdict": "invalid", "reasons": ["durability: lost 3"],
        "failure": "teardown: durability invalid"}]))
    assert verdict == "invalid" and reasons == ["durability: lost 3", "teardown: durability invalid"]
    skipped = nightly.verdict_of(_summary([{"nodeid": "t", "outcome": "skipped", "verdict": None}]))
    assert skipped[0] == "unknown" and "skipped" in skipped[1][0]


@pytest.mark.parametrize(("verdicts", "code"), [
    (["valid", "valid"], 0), (["valid", "unknown"], 2), (["unknown", "invalid"], 1), (["valid", "error"], 1), ([], 2)])
def test_exit_code_follows_the_projects_convention(verdicts: list[str], code: int) -> None:
    assert nightly.exit_code([_run(v) for v in verdicts]) == code


def test_replay_command_names_the_family_seed_and_duration() -> None:
    command = nightly.replay_command(_run("invalid", "flags", 77), 30.0)
    assert "test_random_schedule_keeps_acknowledged_writes[flags]" in command
    assert "--seed 77 --nemesis-duration-s 30 --raftchaos-strict" in command


def test_tables_list_every_run_that_was_not_valid() -> None:
    from rich.console import Console

    runs = [_run("valid", "mixed", 1), _run("unknown", "network", 2), _run("invalid", "network", 3)]
    console = Console(width=300, record=True)
    console.print(nightly.families_table(runs, ["mixed", "network"]))
    console.print(nightly.problems_table(runs, 30.0))
    text = console.export_text()
    assert "--seed 2 " in text and "--seed 3 " in text and "--seed 1 " not in text
    assert nightly.problems_table([_run("valid")], 30.0) is None


@pytest.mark.parametrize(("argv", "problem"), [
    (["--budget-s", "10"], "--budget-s"), (["--duration-s", "nan"], "--duration-s"), (["--seeds", "0"], "--seeds"),
    (["--families", "mixed,weather"], "unknown family weather"), (["--master-seed", "-1"], "--master-seed"),
    (["--out", "README.md"], "is an existing file")])
def test_bad_arguments_are_one_line_and_254(argv: list[str], problem: str, capsys: pytest.CaptureFixture[str],
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(REPO)
    with pytest.raises(SystemExit) as exc:
        nightly.parse_args(argv)
    assert exc.value.code == 254
    err = capsys.readouterr().err
    assert problem in err and err.count("\n") == 1


@pytest.mark.filterwarnings("ignore::pytest.PytestUnknownMarkWarning")  # suites/conftest.py registers it
def test_schedule_size_keeps_the_default_density() -> None:
    from suites.test_nemesis import COUNT, LIMIT_S, schedule_size

    assert schedule_size(None) == (COUNT, LIMIT_S)
    assert schedule_size(5.0) == (COUNT, 5.0)
    assert schedule_size(60.0) == (6 * COUNT, 60.0)


def test_suite_option_out_of_range_is_a_usage_error() -> None:
    proc = subprocess.run([sys.executable, "-m", "pytest", "suites/test_nemesis.py", "--collect-only", "-q",
                           "--nemesis-duration-s", "1"], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 4
    assert "--nemesis-duration-s must be a number of seconds in [5, 3600], got 1.0" in proc.stderr
