"""How the workload records a cas: a failed compare is a constraint for the checker, a refusal is not."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from harness.checkers.history_ops import OpStatus, parse_history
from harness.history import EventKind, History, OpFn
from harness.nodeclient import KvResult, Outcome
from harness.workload import Workload


@dataclass
class FakeNode:
    """Answers every cas with ``answer``; records what it was asked."""

    answer: KvResult
    asked: list[tuple[str, Any, Any]] = field(default_factory=list)

    def cas(self, key: str, expected: Any, new: Any, timeout_s: float | None = None) -> KvResult:
        self.asked.append((key, expected, new))
        return self.answer


@dataclass
class FakeCluster:
    """The two things ``Workload._one`` uses: the history and a node's client."""

    history: History
    client: FakeNode

    def node(self, node_id: str) -> FakeNode:
        return self.client


def run_cas(tmp_path: Path, answer: KvResult, known: Any = "a") -> tuple[EventKind, list[dict[str, Any]]]:
    history = History(tmp_path / "events.jsonl")
    cluster = FakeCluster(history, FakeNode(answer))
    workload = Workload(cluster)  # type: ignore[arg-type]  # a structural stand-in for Cluster
    kind, _ = workload._one(0, "n1", OpFn.CAS, "k0", "c0-1", {"k0": known}, 1.0)
    events = history.events()
    history.close()
    return kind, events


def test_failed_compare_is_a_fail_without_error_carrying_the_value_found(tmp_path: Path) -> None:
    kind, events = run_cas(tmp_path, KvResult(Outcome.OK, 0.01, {"swapped": False, "value": "z", "index": 7}))
    invoke, done = events
    assert kind is EventKind.FAIL
    assert invoke["value"] == ["a", "c0-1"]
    assert (done["kind"], done["error"], done["observed"], done["value"]) == ("fail", None, "z", ["a", "c0-1"])
    (op,) = parse_history(events)
    assert op.status is OpStatus.FAILED_CAS  # the checker keeps "the value was not 'a' here"


@pytest.mark.parametrize("error", ["not_leader", "bad_request"])
def test_refused_cas_is_a_fail_naming_the_error(tmp_path: Path, error: str) -> None:
    kind, events = run_cas(tmp_path, KvResult(Outcome.FAIL, 0.01, {"error": error}, error, 400))
    done = events[-1]
    assert kind is EventKind.FAIL and done["error"] == error and "observed" not in done
    (op,) = parse_history(events)
    assert op.status is OpStatus.FAILED  # no effect: nothing to check


def test_swapped_cas_is_ok(tmp_path: Path) -> None:
    kind, events = run_cas(tmp_path, KvResult(Outcome.OK, 0.01, {"swapped": True, "value": "c0-1", "index": 8}))
    assert kind is EventKind.OK and events[-1]["error"] is None
    assert parse_history(events)[0].status is OpStatus.OK
