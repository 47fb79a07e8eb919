"""The mutation benchmark's enumeration, sampling, fingerprints, equivalents file, outcomes and score."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

REPO = Path(__file__).resolve().parents[2]


def _load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("mutation", REPO / "benchmarks" / "mutation.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


mut = _load()
SOURCE = "def f(a, b):\n    if a > b:\n        return a + 1\n    return b\n"


def _mutant(line: int = 3, removed: tuple[str, ...] = ("return a + 1",), added: tuple[str, ...] = ("return a - 1",),
            module: str = "nodes/x.py") -> object:
    return mut.Mutant(module, "core/ReplaceBinaryOperator_Add_Sub", 0, line, removed, added)


def test_cosmic_ray_enumerates_and_writes_each_mutant() -> None:
    pytest.importorskip("cosmic_ray")
    mutants = mut.enumerate_mutants("nodes/x.py", SOURCE)
    ops = {m.operator for m in mutants}
    assert "core/ReplaceBinaryOperator_Add_Sub" in ops and "core/ReplaceComparisonOperator_Gt_GtE" in ops
    add_sub = next(m for m in mutants if m.operator == "core/ReplaceBinaryOperator_Add_Sub")
    assert add_sub.line == 3
    mutated = mut.mutated_source(SOURCE, add_sub)
    assert mutated == SOURCE.replace("a + 1", "a - 1")
    described = mut.describe(add_sub, SOURCE, mutated)
    assert (described.removed, described.added) == (("return a + 1",), ("return a - 1",))


def test_sampling_is_seeded_and_ordered() -> None:
    mutants = [mut.Mutant("nodes/x.py", "op", i, 100 - i) for i in range(20)]
    first = mut.sample(mutants, 5, seed=3)
    assert first == mut.sample(mutants, 5, seed=3) and len(first) == 5
    assert first != mut.sample(mutants, 5, seed=4)
    assert [m.line for m in first] == sorted(m.line for m in first)
    assert len(mut.sample(mutants, None, seed=3)) == len(mut.sample(mutants, 99, seed=3)) == 20


def test_fingerprint_ignores_line_numbers_but_not_the_change() -> None:
    assert _mutant(line=3).fingerprint == _mutant(line=40).fingerprint
    assert _mutant().fingerprint != _mutant(added=("return a * 1",)).fingerprint
    assert _mutant().fingerprint != _mutant(module="nodes/y.py").fingerprint


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "eq.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_equivalents_file(tmp_path: Path) -> None:
    assert mut.load_equivalents(tmp_path / "absent.toml") == {}
    path = _write(tmp_path, '[[equivalent]]\nmodule = "nodes/x.py"\nfingerprint = "abc"\nreason = " text only "\n')
    assert mut.load_equivalents(path) == {"abc": "text only"}
    assert mut.load_equivalents(REPO / "benchmarks" / "mutation_equivalents.toml")  # the shipped file parses


@pytest.mark.parametrize(("text", "problem"), [
    ("[[equivalent]\n", "eq.toml: "),
    ('other = 1\n', "unknown key 'other'"),
    ('equivalent = 1\n', "array of tables"),
    ('[[equivalent]]\nmodule = "m"\nfingerprint = "f"\n', "reason must be a non-empty string"),
    ('[[equivalent]]\nmodule = "m"\nfingerprint = "f"\nreason = "r"\nwhy = 1\n', "keys are module"),
    ('[[equivalent]]\nmodule = "m"\nfingerprint = "f"\nreason = "r"\n' * 2, "listed twice"),
])
def test_bad_equivalents_file_is_one_line_naming_it(tmp_path: Path, text: str, problem: str) -> None:
    with pytest.raises(mut.BadInput) as exc:
        mut.load_equivalents(_write(tmp_path, text))
    assert problem in str(exc.value) and str(tmp_path / "eq.toml") in str(exc.value)
    assert "\n" not in str(exc.value)


def test_bad_equivalents_file_exits_254(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = _write(tmp_path, "other = 1\n")
    assert mut.main(["--equivalents", str(path), "--list"]) == 254
    err = capsys.readouterr().err
    assert "unknown key 'other'" in err and err.count("\n") == 1


@pytest.mark.parametrize(("status", "timed_out", "outcome"), [
    (0, False, "survived"), (1, False, "killed"), (None, True, "timeout"), (2, False, "error"), (4, False, "error"),
    (5, False, "error")])
def test_pytest_exit_status_is_the_mutants_fate(status: int | None, timed_out: bool, outcome: str) -> None:
    assert mut.outcome_of(status, timed_out) == outcome


def test_score_counts_timeouts_as_killed_and_drops_equivalent_survivors() -> None:
    a, b = "nodes/a.py", "nodes/b.py"

    def result(module: str, outcome: str, added: str = "x") -> object:
        return mut.Result(_mutant(module=module, added=(added,)), outcome, 1.0, 0, "log")

    equivalent = result(a, "survived", "same")
    results = [result(a, "killed"), result(a, "timeout"), equivalent, result(a, "error"),
               result(b, "killed"), result(b, "survived")]
    scores = mut.scores(results, {equivalent.mutant.fingerprint: "only a message"})
    assert list(scores) == [a, b, "total"]
    assert (scores[a].score, scores[a].equivalent) == (1.0, 1)
    assert scores[b].score == 0.5
    assert scores["total"].score == 3 / 4
    assert mut.scores([result(a, "error")], {})[a].score is None


def test_survivor_table_marks_equivalents_with_their_reason() -> None:
    from rich.console import Console

    same = mut.Result(_mutant(added=("return a - 1",)), "survived", 1.0, 0, "log")
    weak = mut.Result(_mutant(added=("return a * 1",)), "survived", 1.0, 0, "log")
    console = Console(width=300, record=True)
    console.print(mut.survivor_table([same, weak, mut.Result(_mutant(), "killed", 1.0, 1, "log")],
                                     {same.mutant.fingerprint: "only a message"}))
    text = console.export_text()
    assert "only a message" in text and "no: a weak spot" in text and text.count("nodes/x.py:3") == 2


@pytest.mark.parametrize(("argv", "problem"), [
    (["--modules", "nodes/nope.py"], "--modules nodes/nope.py"), (["--modules", "README.md"], "--modules README.md"),
    (["--tests", "suites/nope.py"], "--tests suites/nope.py"), (["--max-mutants", "0"], "--max-mutants"),
    (["--workers", "0"], "--workers"), (["--timeout-s", "1"], "--timeout-s"), (["--seed", "-2"], "--seed")])
def test_bad_arguments_are_one_line_and_254(argv: list[str], problem: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        mut.parse_args(argv)
    assert exc.value.code == 254
    err = capsys.readouterr().err
    assert problem in err and err.count("\n") == 1


def test_report_rescores_an_earlier_run_with_todays_equivalents(tmp_path: Path,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    import json

    survivor = mut.Result(_mutant(), "survived", 1.0, 0, "log")
    results = tmp_path / "results.json"
    mut.write_results(results, [survivor], {"seed": 1})
    assert json.loads(results.read_text(encoding="utf-8"))["results"][0]["mutant"]["fingerprint"] == \
        survivor.mutant.fingerprint
    assert mut.load_results(results) == [survivor]
    eq = _write(tmp_path, f'[[equivalent]]\nmodule = "nodes/x.py"\nfingerprint = "{survivor.mutant.fingerprint}"\n'
                          'reason = "message only"\n')
    assert mut.main(["--report", str(results), "--equivalents", str(eq)]) == 0
    assert "message only" in capsys.readouterr().out
    results.write_text("{}", encoding="utf-8")
    assert mut.main(["--report", str(results), "--equivalents", str(eq)]) == 254
    assert "not a results.json" in capsys.readouterr().err


def test_a_kill_is_confirmed_by_the_failing_test_passing_unmutated(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    summary = tmp_path / "summary.json"
    summary.write_text('{"tests": [{"nodeid": "suites/a.py::t", "outcome": "failed", "seed": 9}, '
                       '{"nodeid": "suites/a.py::u", "outcome": "failed", "failed_by_strict": true, "seed": 1}, '
                       '{"nodeid": "suites/a.py::v", "outcome": "passed", "seed": 2}]}', encoding="utf-8")
    failing = mut.failed_tests(summary)
    assert failing == [("suites/a.py::t", 9)]
    assert mut.failed_tests(tmp_path / "absent.json") == []
    calls: list[tuple[list[str], list[str]]] = []

    def fake_run(status: int) -> object:
        def run(copy: Path, tag: str, tests: list[str], extra: list[str], timeout_s: float, log: Path) -> object:
            calls.append((list(tests), list(extra)))
            return status, False
        return run

    monkeypatch.setattr(mut, "run_tests", fake_run(0))
    assert mut.confirm_kill(tmp_path, "f", failing, ["-v"], 60.0, tmp_path / "log") == "killed"
    assert calls == [(["suites/a.py::t"], ["--seed", "9", "-v"])]
    monkeypatch.setattr(mut, "run_tests", fake_run(1))
    assert mut.confirm_kill(tmp_path, "f", failing, [], 60.0, tmp_path / "log") == "flaky"
    assert mut.confirm_kill(tmp_path, "f", [], [], 60.0, tmp_path / "log") == "killed"


def test_flaky_kills_are_not_scored() -> None:
    results = [mut.Result(_mutant(added=(a,)), o, 1.0, 1, "log") for a, o in (("1", "killed"), ("2", "flaky"))]
    total = mut.scores(results, {})["total"]
    assert (total.counts["flaky"], total.score) == (1, 1.0)
