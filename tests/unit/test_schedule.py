"""Schedule combinators: the same seed gives the same plan; each combinator's shape; replay steps."""

from __future__ import annotations

import pytest

from faults.catalog import build_fault, replay_params
from faults.replay import comparable, replay_steps, schedule_differences
from harness.errors import ConfigError, FaultError
from harness.schedule import (
    FaultSpec,
    StepOp,
    flip_flop,
    hold,
    mix,
    phases,
    plan,
    plan_text,
    sequence,
    sleep,
    stagger,
    step_from_dict,
    time_limit,
    timeline,
)

SEED = 4242
PAUSE = FaultSpec("pause", {"target": "leader"})
CUT = FaultSpec("isolate", {"target": "one", "mode": "blackhole"})
LAT = FaultSpec("latency", {"latency_ms": 50, "jitter_ms": 20})


def nemesis_like() -> object:
    return time_limit(20.0, stagger(1.0, mix([hold(PAUSE, (0.5, 1.5)), hold(CUT, 2.0), hold(LAT, 1.0)], 12)))


def test_same_seed_same_plan_and_other_seed_other_plan() -> None:
    print(f"seed={SEED}")
    a, b = plan_text(plan(nemesis_like(), SEED)), plan_text(plan(nemesis_like(), SEED))
    assert a == b and a
    assert plan_text(plan(nemesis_like(), SEED + 1)) != a


def test_hold_and_sequence_offsets() -> None:
    steps = plan(sequence(hold(PAUSE, 1.0), sleep(0.5), hold(CUT, 2.0)), SEED)
    assert [(s.offset_s, s.op, s.slot) for s in steps] == [
        (0.0, StepOp.INJECT, 1), (1.0, StepOp.HEAL, 1), (1.5, StepOp.INJECT, 2), (3.5, StepOp.HEAL, 2)]


def test_every_inject_is_healed_and_time_limit_cuts() -> None:
    steps = plan(nemesis_like(), SEED)
    injected = {s.slot for s in steps if s.op is StepOp.INJECT}
    healed = {s.slot for s in steps if s.op is StepOp.HEAL}
    assert injected == healed
    assert max(s.offset_s for s in steps) <= 20.0
    assert all(a.offset_s <= b.offset_s for a, b in zip(steps, steps[1:], strict=False))


def test_flip_flop_alternates_and_phases_add_barriers() -> None:
    steps = plan(flip_flop(hold(PAUSE, 1.0), hold(CUT, 1.0), 4), SEED)
    assert [s.fault.name for s in steps if s.op is StepOp.INJECT] == ["pause", "isolate"] * 2
    steps = plan(phases(hold(PAUSE, 1.0), hold(CUT, 1.0)), SEED)
    assert [s.op for s in steps].count(StepOp.HEAL_ALL) == 2


def test_timeline_overlaps() -> None:
    steps = plan(timeline((1.0, hold(PAUSE, 3.0)), (2.0, hold(CUT, 0.5))), SEED)
    assert [(s.offset_s, s.op.value) for s in steps] == [(1.0, "inject"), (2.0, "inject"), (2.5, "heal"),
                                                          (4.0, "heal")]


def test_step_round_trip_and_bad_values() -> None:
    for step in plan(nemesis_like(), SEED):
        assert step_from_dict(step.to_dict()).to_dict() == step.to_dict()
    with pytest.raises(ConfigError):
        plan(hold(PAUSE, -1.0), SEED)
    with pytest.raises(ConfigError):
        FaultSpec("x", {"bad": object()})


def test_replay_params_use_what_was_resolved() -> None:
    assert replay_params("pause", {"target": "leader"}, {}, ["n2"]) == {"target": "n2"}
    net = replay_params("isolate", {"target": "one", "mode": "blackhole"}, {"groups": [["n3"], ["n1", "n2"]]}, ["n3"])
    assert net == {"mode": "blackhole", "groups": [["n3"], ["n1", "n2"]]}
    lat = replay_params("latency", {"latency_ms": 50, "jitter_ms": 20},
                        {"links": ["n2->n3"], "drawn_ms": {"upstream": 61, "downstream": 40}}, ["n2", "n3"])
    assert lat["src"] == "n2" and lat["dst"] == "n3" and lat["drawn_ms"] == {"upstream": 61, "downstream": 40}
    build_fault("latency", lat)  # still a valid fault


def test_replay_steps_and_schedule_comparison() -> None:
    recorded = [{"step": 0, "op": "inject", "slot": 1, "fault": "pause", "params": {"target": "leader"},
                 "targets": ["n1"], "at_s": 1.25, "offset_s": 1.0, "resolved": {"target": "leader"}},
                {"step": 1, "op": "heal", "slot": 1, "at_s": 2.0, "offset_s": 2.0}]
    steps = replay_steps(recorded)
    assert steps[0].offset_s == 1.25 and steps[0].fault == FaultSpec("pause", {"target": "n1"})
    assert schedule_differences(recorded, recorded) == []
    other = [dict(recorded[0], targets=["n2"]), recorded[1]]
    assert schedule_differences(recorded, other) and comparable(recorded[1])["op"] == "heal"


@pytest.mark.parametrize("name,params,message", [
    ("nope", {}, "unknown fault"),
    ("pause", {"bogus": 1}, "unknown parameter"),
    ("latency", {"latency_ms": 10, "jitter_ms": 20}, "must not exceed"),
    ("latency", {}, "needs latency_ms"),
    ("bandwidth", {"rate_kbps": -1}, "rate_kbps"),
    ("slicer", {"average_size_bytes": 10, "size_variation_bytes": 10}, "below"),
    ("limit-data", {"bytes": 1.5}, "bytes must be an int"),
    ("timeout", {"timeout_ms": 5, "toxicity": 2}, "toxicity"),
    ("isolate", {"mode": "sideways"}, "mode must be one of"),
    ("halves", {"target": "n1"}, "unknown parameter"),
    ("crash-on-leader-request", {"fraction": 1.5}, "within"),
    ("wal-latency", {"mean_ms": -5}, "mean_ms"),
    ("flag", {"name": "Bad Name", "value": 1}, "not a flag name"),
])
def test_every_parameter_is_validated(name: str, params: dict, message: str) -> None:  # type: ignore[type-arg]
    with pytest.raises(FaultError, match=message):
        build_fault(name, params)
