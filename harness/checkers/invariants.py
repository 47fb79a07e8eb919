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
from harness.history import Event, NodeEventType
from harness.history_views import NODES, NodeEvent, node_events, require_well_formed
from harness.supervisor import INVARIANT_VIOLATION_EXIT, ExitCause

NAME = "invariants"


def _is_violation(event: NodeEvent) -> bool:
    if event.event != NodeEventType.EXIT.value:
        return False
    return event.cause == ExitCause.INVARIANT_VIOLATION.value or event.code == INVARIANT_VIOLATION_EXIT


def _describe(record: dict[str, Any] | None) -> str:
    if not record:
        return "record lost (exit status 70 only)"
    return str(record.get("message") or record.get("what") or "no message")


def check_invariants(events: Sequence[Event]) -> Verdict:
    """Invalid when any node exited on an invariant violation; valid when nodes ran and none did;
    unknown when the history shows no node running at all (nothing was observed)."""
    require_well_formed(events, NODES)
    nodes = node_events(events)
    violations = [e for e in nodes if _is_violation(e)]
    if violations:
        found: list[dict[str, Any]] = [{"node": e.node, "t": e.t, "code": e.code,
                                        "record": dict(e.fatal) if e.fatal else None} for e in violations]
        first = found[0]
        return Verdict(
            checker=NAME, validity=Validity.INVALID,
            summary=(f"safety violation: {len(found)} node exit(s) on a broken invariant; first "
                     f"{first['node']}: {_describe(first['record'])}"),
            details={"violations": found})
    if not any(e.event == NodeEventType.START.value for e in nodes):
        return Verdict(checker=NAME, validity=Validity.UNKNOWN,
                       summary="no node start in the history: nothing was observed",
                       details={"reason": "no node ran"})
    exits = sum(1 for e in nodes if e.event == NodeEventType.EXIT.value)
    return Verdict(checker=NAME, validity=Validity.VALID,
                   summary=f"no node aborted on a broken invariant ({exits} exit(s) seen)",
                   details={"node_exits": exits})
