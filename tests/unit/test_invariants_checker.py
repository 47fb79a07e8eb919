"""Exit classification (harness/supervisor.py) and the invariant-violation checker
(harness/checkers/invariants.py): an exit 70 with the node's record makes the run invalid."""

from __future__ import annotations

import json
from typing import Any

import pytest

from harness.checkers.invariants import check_invariants
from harness.checkers.verdict import Validity, compose
from harness.finish import standard_verdicts
from harness.supervisor import FATAL_LOG_MARK, ExitCause, classify_exit, exit_details, fatal_record

RECORD = {"kind": "invariant_violation", "what": "two_leaders_in_term", "node": "n1", "term": 4,
          "uuids": {"existing_leader": "n2", "new_leader": "n3", "node": "n1"},
          "op_ids": {"preceding_id": [4, 7]}, "message": "two leaders in term 4: n2 and n3",
          "exit_status": 70}


@pytest.mark.parametrize("code,cause", [
    (0, ExitCause.CLEAN), (2, ExitCause.BAD_CONFIG), (3, ExitCause.CORRUPT_STORAGE),
    (85, ExitCause.INJECTED_CRASH), (70, ExitCause.INVARIANT_VIOLATION),
    (74, ExitCause.FATAL_STORAGE), (-9, ExitCause.SIGNAL), (-15, ExitCause.SIGNAL),
    (1, ExitCause.ERROR), (255, ExitCause.ERROR),
])
def test_every_exit_status_has_a_cause(code: int, cause: ExitCause) -> None:
    assert classify_exit(code) is cause


def test_fatal_record_is_read_from_the_log_tail() -> None:
    lines = ["2026 n1 INFO became follower",
             f"2026 n1 CRITICAL {FATAL_LOG_MARK}{{not json",
             f"2026 n1 CRITICAL {FATAL_LOG_MARK}{json.dumps(RECORD)}"]
    assert fatal_record(lines) == RECORD
    assert fatal_record(lines[:2]) is None
    assert exit_details(70, lines) == {"cause": "invariant_violation", "fatal": RECORD}
    assert exit_details(74, lines[:1]) == {"cause": "fatal_storage", "fatal": None}
    assert exit_details(85, lines) == {"cause": "injected_crash"}  # no record for a planned crash


def _node(event: str, node: str, t: float, **extra: Any) -> dict[str, Any]:
    return {"t": t, "kind": "node", "process": "harness", "node": node, "event": event, **extra}


def test_an_invariant_violation_exit_makes_the_run_invalid_with_the_record() -> None:
    events = [_node("start", n, 0.0) for n in ("n1", "n2", "n3")]
    events.append(_node("exit", "n1", 3.0, code=70, cause="invariant_violation", fatal=RECORD))
    verdict = check_invariants(events)
    assert verdict.validity is Validity.INVALID
    assert "two leaders in term 4" in verdict.summary
    assert verdict.details["violations"][0]["record"] == RECORD
    assert compose(standard_verdicts(events, linearizable_budget_s=1.0)) is Validity.INVALID


def test_exit_70_without_a_record_is_still_a_violation() -> None:
    events = [_node("start", "n1", 0.0), _node("exit", "n1", 1.0, code=70)]
    verdict = check_invariants(events)
    assert verdict.validity is Validity.INVALID and "record lost" in verdict.summary


def test_other_exits_are_not_invariant_violations() -> None:
    events = [_node("start", "n1", 0.0),
              _node("exit", "n1", 1.0, code=85, cause="injected_crash"),
              _node("exit", "n1", 2.0, code=74, cause="fatal_storage", fatal=None),
              _node("kill", "n1", 3.0, code=-9)]
    assert check_invariants(events).validity is Validity.VALID


def test_no_node_ran_is_unknown() -> None:
    assert check_invariants([]).validity is Validity.UNKNOWN
