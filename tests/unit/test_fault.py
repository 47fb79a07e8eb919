"""Targets resolved at injection time with a seeded rng; the applied() helper's healing."""

from __future__ import annotations

import random
from typing import Any

import pytest

from harness.errors import FaultError, FaultUnavailable
from harness.fault import FaultRecord, Target, TargetKind, applied

NODES = ("n1", "n2", "n3", "n4", "n5")
SEED = 1234


def statuses(leader: str | None = "n2", term: int = 4) -> dict[str, dict[str, Any] | None]:
    out: dict[str, dict[str, Any] | None] = {}
    for n in NODES:
        out[n] = {"role": "LEADER" if n == leader else "FOLLOWER", "term": term, "leader": leader}
    return out


def resolve(target: Target, seed: int = SEED, **kw: Any) -> tuple[tuple[str, ...], int | None]:
    print(f"seed={seed}")
    return target.resolve(statuses(**kw), NODES, random.Random(seed))


def test_role_targets() -> None:
    assert resolve(Target.leader()) == (("n2",), 4)
    assert resolve(Target.followers()) == (("n1", "n3", "n4", "n5"), 4)
    assert resolve(Target.all())[0] == NODES
    assert resolve(Target.nodes("n5", "n1"))[0] == ("n1", "n5")


def test_random_targets_are_seeded_and_sized() -> None:
    assert resolve(Target.one()) == resolve(Target.one())
    assert len(resolve(Target.minority())[0]) == 2
    assert len(resolve(Target.majority())[0]) == 3
    picks = {resolve(Target.one(), seed=s)[0] for s in range(30)}
    assert len(picks) > 1


def test_leader_targets_need_a_leader_and_minority_needs_three_nodes() -> None:
    with pytest.raises(FaultError, match="no agreed leader"):
        resolve(Target.leader(), leader=None)
    assert Target.minority().unavailable_reason(("n1", "n2")) is not None
    assert Target.nodes("n9").unavailable_reason(NODES) == "unknown node(s) n9"


def test_parse_and_str() -> None:
    assert Target.parse("leader").kind is TargetKind.LEADER
    assert Target.parse("n1, n3") == Target.nodes("n1", "n3")
    assert str(Target.nodes("n1", "n3")) == "n1,n3"


class Recorder:
    """A fake fault that logs its lifecycle calls."""

    name = "fake"

    def __init__(self, reason: str | None = None, heal_error: bool = False) -> None:
        self.calls: list[str] = []
        self.reason = reason
        self.heal_error = heal_error

    def available(self, cluster: object) -> str | None:
        return self.reason

    def setup(self, cluster: object) -> None:
        self.calls.append("setup")

    def inject(self, cluster: object) -> FaultRecord:
        self.calls.append("inject")
        return FaultRecord("fake", {}, ("n1",), 1, 0.0)

    def heal(self, cluster: object) -> None:
        self.calls.append("heal")
        if self.heal_error:
            raise RuntimeError("heal broke")

    def teardown(self, cluster: object) -> None:
        self.calls.append("teardown")


def test_applied_heals_and_tears_down_in_finally() -> None:
    fault = Recorder()
    with pytest.raises(ValueError), applied(fault, object()) as record:  # type: ignore[arg-type]
        assert record.targets == ("n1",)
        raise ValueError("suite failed")
    assert fault.calls == ["setup", "inject", "heal", "teardown"]


def test_unavailable_fault_is_never_injected() -> None:
    fault = Recorder(reason="needs pause")
    with pytest.raises(FaultUnavailable, match="needs pause"), applied(fault, object()):  # type: ignore[arg-type]
        pass
    assert fault.calls == []


def test_heal_error_never_hides_the_blocks_error() -> None:
    fault = Recorder(heal_error=True)
    with pytest.raises(ValueError) as info, applied(fault, object()):  # type: ignore[arg-type]
        raise ValueError("first")
    assert any("heal broke" in note for note in info.value.__notes__)
    assert fault.calls[-1] == "teardown"
    fault = Recorder(heal_error=True)
    with pytest.raises(FaultError, match="heal broke"), applied(fault, object()):  # type: ignore[arg-type]
        pass
