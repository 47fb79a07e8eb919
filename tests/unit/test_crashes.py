"""The crash checker: a node exiting on its own for real is an invalid verdict; injected crashes
(85), clean exits and nodes the harness stopped itself are not; a refused configuration is unknown."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from harness.checkers.crashes import check_crashes
from harness.checkers.verdict import Validity
from harness.finish import standard_verdicts


def _node(node: str, event: str, code: int | None, t: float = 1.0) -> dict[str, Any]:
    return {"t": t, "kind": "node", "process": "harness", "node": node, "event": event, "code": code}


def test_no_exits_is_valid() -> None:
    assert check_crashes([]).validity is Validity.VALID


def test_injected_crashes_and_harness_stops_are_not_crashes() -> None:
    events = [_node("n1", "exit", 85), _node("n1", "start", None), _node("n2", "kill", -9),
              _node("n3", "terminate", 0), _node("n3", "exit", 0)]
    verdict = check_crashes(events)
    assert verdict.validity is Validity.VALID and verdict.details["injected_exits"] == 1


def test_a_real_crash_is_invalid_with_the_status_and_log_tail(tmp_path: Path) -> None:
    (tmp_path / "nodes").mkdir()
    (tmp_path / "nodes" / "n2.log").write_text("\n".join(f"line {i}" for i in range(30)) + "\nFATAL: term went back\n")
    verdict = check_crashes([_node("n1", "exit", 85), _node("n2", "exit", 70, t=2.0)], tmp_path)
    assert verdict.validity is Validity.INVALID
    assert verdict.summary == "node crashed: n2 exited with 70 (invariant violation (fatal))"
    crash = verdict.details["crashes"][0]
    assert crash["code"] == 70 and crash["log_tail"][-1] == "FATAL: term went back" and len(crash["log_tail"]) == 12


def test_every_real_status_is_invalid() -> None:
    for code, words in ((74, "fatal storage"), (1, "crashed"), (3, "corrupt storage"), (-11, "signal 11"),
                        (42, "crashed")):
        verdict = check_crashes([_node("n1", "exit", code)])
        assert verdict.validity is Validity.INVALID and words in verdict.summary, (code, verdict.summary)


def test_a_refused_configuration_is_unknown() -> None:
    verdict = check_crashes([_node("n3", "exit", 2)])
    assert verdict.validity is Validity.UNKNOWN and "refused its configuration" in verdict.summary


def test_the_standard_verdicts_include_crashes() -> None:
    verdicts = {v.checker: v for v in standard_verdicts([_node("n1", "exit", 74)], linearizable_budget_s=1.0)}
    assert verdicts["crashes"].validity is Validity.INVALID
