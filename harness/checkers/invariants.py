"""Invariant-violation checker: a node that aborted because a Raft invariant broke (exit status 70,
kuduraft's CHECK / LOG(FATAL), e.g. two leaders in one term) makes the run invalid, with the
node's own record of what broke in the verdict.

The record comes from the node's ``exit`` event (``harness.control`` reads it from the log tail
once the process is gone, see ``harness.supervisor.exit_details``). An exit 70 whose record was
lost is still a violation: the status alone says so. Other crashes (fatal storage errors,
signals, uncaught exceptions) are for the crash checker, not this one.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from harness.checkers.verdict import Validity, Verdict
from harness.history import Event, EventKind, NodeEventType
from harness.supervisor import INVARIANT_VIOLATION_EXIT, ExitCause

NAME = "invariants"


def _is_violation(event: Event) -> bool:
    if event.get("kind") != EventKind.NODE.value or event.get("event") != NodeEventType.EXIT.value:
        return False
    return (event.get("cause") == ExitCause.INVARIANT_VIOLATION.value
            or event.get("code") == INVARIANT_VIOLATION_EXIT)


def _describe(record: dict[str, Any] | None) -> str:
    if not record:
        return "record lost (exit status 70 only)"
    return str(record.get("message") or record.get("what") or "no message")


def check_invariants(events: Sequence[Event]) -> Verdict:
    """Invalid when any node exited on an invariant violation; valid when nodes ran and none did;
    unknown when the history shows no node running at all (nothing was observed)."""
    violations = [e for e in events if _is_violation(e)]
    if violations:
        found = [{"node": e.get("node"), "t": e.get("t"), "code": e.get("code"),
                  "record": e.get("fatal")} for e in violations]
        first = found[0]
        return Verdict(
            checker=NAME, validity=Validity.INVALID,
            summary=(f"safety violation: {len(found)} node exit(s) on a broken invariant; first "
                     f"{first['node']}: {_describe(first['record'])}"),
            details={"violations": found})
    starts = [e for e in events if e.get("kind") == EventKind.NODE.value
              and e.get("event") == NodeEventType.START.value]
    if not starts:
        return Verdict(checker=NAME, validity=Validity.UNKNOWN,
                       summary="no node start in the history: nothing was observed",
                       details={"reason": "no node ran"})
    exits = sum(1 for e in events if e.get("kind") == EventKind.NODE.value
                and e.get("event") == NodeEventType.EXIT.value)
    return Verdict(checker=NAME, validity=Validity.VALID,
                   summary=f"no node aborted on a broken invariant ({exits} exit(s) seen)",
                   details={"node_exits": exits})
