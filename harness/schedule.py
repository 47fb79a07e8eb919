"""Nemesis schedules as values: small combinators expanded over one seeded random.Random into timed steps.

A schedule names faults by catalog name and parameters (``FaultSpec``); it never touches a
cluster. ``plan(schedule, seed)`` expands it with ``schedule_rng(seed)`` into a list of ``Step``
(offset from the schedule's start, ``inject`` or ``heal`` of a slot, or ``heal-all``), so the same
seed always gives the same steps and a run's schedule can be printed, compared and replayed.

Combinators: ``hold(fault, for_s)`` (inject, heal ``for_s`` later; ``for_s`` may be a ``(lo, hi)``
range drawn per use), ``sleep(s)``, ``sequence(*items)``, ``mix(choices, count)`` (``count``
random picks), ``stagger(mean_gap_s, inner)`` (a random gap in ``[0, 2 mean]`` before each item
of a sequence-like ``inner``), ``flip_flop(a, b, times)``, ``time_limit(limit_s, inner)`` (nothing
injected after the limit; what is still open is healed at it), ``phases(*items)`` (each item then
a ``heal-all`` barrier), ``timeline((at_s, item), ...)`` (items at fixed offsets, overlapping).
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any, Protocol

from harness.errors import ConfigError, read_utf8

Duration = float | tuple[float, float]


class StepOp(StrEnum):
    INJECT = "inject"
    HEAL = "heal"
    HEAL_ALL = "heal-all"


@dataclass(frozen=True)
class FaultSpec:
    """A fault by catalog name and parameters (JSON values), e.g. ``FaultSpec("pause", {"target": "leader"})``."""

    name: str
    params: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise ConfigError(f"a fault needs a name, got {self.name!r}")
        try:
            json.dumps(dict(self.params), sort_keys=True)
        except (TypeError, ValueError):
            raise ConfigError(f"fault {self.name}: parameters must be JSON values, got {self.params!r}") from None

    def to_dict(self) -> dict[str, Any]:
        return {"fault": self.name, "params": dict(self.params)}


@dataclass(frozen=True)
class Step:
    """One planned step: at ``offset_s`` from the schedule's start, ``op`` on ``slot``'s fault."""

    offset_s: float
    op: StepOp
    slot: int
    fault: FaultSpec | None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"offset_s": round(self.offset_s, 6), "op": self.op.value, "slot": self.slot}
        if self.fault is not None:
            out.update(self.fault.to_dict())
        return out


def step_from_dict(doc: Mapping[str, Any]) -> Step:
    """The inverse of ``Step.to_dict`` (ConfigError for a malformed step)."""
    try:
        fault = FaultSpec(doc["fault"], dict(doc.get("params") or {})) if doc.get("fault") else None
        return Step(float(doc["offset_s"]), StepOp(doc["op"]), int(doc["slot"]), fault)
    except (KeyError, ValueError, TypeError) as exc:
        raise ConfigError(f"not a schedule step: {doc!r} ({exc})") from None


class Schedule(Protocol):
    """Anything that expands into steps from ``start_s``; returns the steps and its end time."""

    def expand(self, rng: random.Random, start_s: float, slots: Iterator[int]) -> tuple[list[Step], float]: ...


class SequenceLike(Schedule, Protocol):
    def children(self, rng: random.Random) -> list[Schedule]: ...


def _duration(value: Duration, rng: random.Random, what: str) -> float:
    if isinstance(value, tuple):
        lo, hi = value
        if not 0 <= lo <= hi:
            raise ConfigError(f"{what} range must be 0 <= lo <= hi, got {value}")
        return rng.uniform(lo, hi)
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise ConfigError(f"{what} must be a non-negative number of seconds, got {value!r}")
    return float(value)


def _expand_all(items: Sequence[Schedule], rng: random.Random, start_s: float,
                slots: Iterator[int]) -> tuple[list[Step], float]:
    steps: list[Step] = []
    t = start_s
    for item in items:
        more, t = item.expand(rng, t, slots)
        steps += more
    return steps, t


@dataclass(frozen=True)
class Hold:
    fault: FaultSpec
    for_s: Duration

    def expand(self, rng: random.Random, start_s: float, slots: Iterator[int]) -> tuple[list[Step], float]:
        slot, end = next(slots), start_s + _duration(self.for_s, rng, "hold for_s")
        return [Step(start_s, StepOp.INJECT, slot, self.fault), Step(end, StepOp.HEAL, slot, self.fault)], end


@dataclass(frozen=True)
class Sleep:
    seconds: Duration

    def expand(self, rng: random.Random, start_s: float, slots: Iterator[int]) -> tuple[list[Step], float]:
        return [], start_s + _duration(self.seconds, rng, "sleep")


@dataclass(frozen=True)
class Seq:
    items: tuple[Schedule, ...]

    def children(self, rng: random.Random) -> list[Schedule]:
        return list(self.items)

    def expand(self, rng: random.Random, start_s: float, slots: Iterator[int]) -> tuple[list[Step], float]:
        return _expand_all(self.children(rng), rng, start_s, slots)


@dataclass(frozen=True)
class Mix:
    choices: tuple[Schedule, ...]
    count: int

    def children(self, rng: random.Random) -> list[Schedule]:
        return [rng.choice(self.choices) for _ in range(self.count)]

    def expand(self, rng: random.Random, start_s: float, slots: Iterator[int]) -> tuple[list[Step], float]:
        return _expand_all(self.children(rng), rng, start_s, slots)


@dataclass(frozen=True)
class FlipFlop:
    a: Schedule
    b: Schedule
    times: int

    def children(self, rng: random.Random) -> list[Schedule]:
        return [self.a if i % 2 == 0 else self.b for i in range(self.times)]

    def expand(self, rng: random.Random, start_s: float, slots: Iterator[int]) -> tuple[list[Step], float]:
        return _expand_all(self.children(rng), rng, start_s, slots)


@dataclass(frozen=True)
class Stagger:
    mean_gap_s: float
    inner: SequenceLike

    def children(self, rng: random.Random) -> list[Schedule]:
        out: list[Schedule] = []
        for child in self.inner.children(rng):
            out += [Sleep(rng.uniform(0.0, 2 * self.mean_gap_s)), child]
        return out

    def expand(self, rng: random.Random, start_s: float, slots: Iterator[int]) -> tuple[list[Step], float]:
        return _expand_all(self.children(rng), rng, start_s, slots)


@dataclass(frozen=True)
class TimeLimit:
    limit_s: float
    inner: Schedule

    def expand(self, rng: random.Random, start_s: float, slots: Iterator[int]) -> tuple[list[Step], float]:
        steps, end = self.inner.expand(rng, start_s, slots)
        cut = start_s + self.limit_s
        injected = {s.slot for s in steps if s.op is StepOp.INJECT and s.offset_s < cut}
        kept = []
        for s in steps:
            if (s.op is StepOp.INJECT and s.offset_s >= cut) or (s.op is StepOp.HEAL and s.slot not in injected):
                continue
            kept.append(Step(min(s.offset_s, cut), s.op, s.slot, s.fault))
        return kept, min(end, cut)


@dataclass(frozen=True)
class Phases:
    items: tuple[Schedule, ...]

    def expand(self, rng: random.Random, start_s: float, slots: Iterator[int]) -> tuple[list[Step], float]:
        steps: list[Step] = []
        t = start_s
        for item in self.items:
            more, t = item.expand(rng, t, slots)
            steps += more + [Step(t, StepOp.HEAL_ALL, next(slots), None)]
        return steps, t


@dataclass(frozen=True)
class Timeline:
    entries: tuple[tuple[float, Schedule], ...]

    def expand(self, rng: random.Random, start_s: float, slots: Iterator[int]) -> tuple[list[Step], float]:
        steps: list[Step] = []
        end = start_s
        for offset_s, item in self.entries:
            more, item_end = item.expand(rng, start_s + offset_s, slots)
            steps += more
            end = max(end, item_end)
        return steps, end


def timeline(*entries: tuple[float, Schedule]) -> Timeline:
    """Items at fixed offsets from the start, overlapping as they come (a scenario's fault timeline)."""
    for offset_s, _ in entries:
        if isinstance(offset_s, bool) or not isinstance(offset_s, int | float) or offset_s < 0:
            raise ConfigError(f"timeline offsets must be seconds >= 0, got {offset_s!r}")
    return Timeline(tuple(entries))


def hold(fault: FaultSpec, for_s: Duration) -> Hold:
    return Hold(fault, for_s)


def sleep(seconds: Duration) -> Sleep:
    return Sleep(seconds)


def sequence(*items: Schedule) -> Seq:
    return Seq(tuple(items))


def mix(choices: Sequence[Schedule], count: int) -> Mix:
    if not choices or count < 0:
        raise ConfigError("mix needs at least one choice and a count >= 0")
    return Mix(tuple(choices), count)


def stagger(mean_gap_s: float, inner: SequenceLike) -> Stagger:
    if mean_gap_s < 0:
        raise ConfigError(f"stagger mean gap must be >= 0, got {mean_gap_s}")
    return Stagger(mean_gap_s, inner)


def flip_flop(a: Schedule, b: Schedule, times: int) -> FlipFlop:
    return FlipFlop(a, b, times)


def time_limit(limit_s: float, inner: Schedule) -> TimeLimit:
    if limit_s <= 0:
        raise ConfigError(f"time limit must be > 0, got {limit_s}")
    return TimeLimit(limit_s, inner)


def phases(*items: Schedule) -> Phases:
    return Phases(tuple(items))


def schedule_rng(seed: int) -> random.Random:
    """The one Random a run's schedule is expanded with (the same as ``Cluster.rng("schedule")``)."""
    return random.Random(f"{seed}/schedule")


def plan(schedule: Schedule, seed: int | random.Random) -> list[Step]:
    """Expand ``schedule``: every step in time order (ties keep expansion order)."""
    rng = seed if isinstance(seed, random.Random) else schedule_rng(seed)
    slots = iter(range(1, 1 << 30))
    steps, _ = schedule.expand(rng, 0.0, slots)
    return sorted(steps, key=lambda s: s.offset_s)


def plan_text(steps: Sequence[Step]) -> str:
    """One line per step (what ``raftchaos`` prints and the determinism test compares)."""
    return "\n".join(json.dumps(s.to_dict(), sort_keys=True) for s in steps)


# ---- reading a run's executed schedule (schedule.jsonl) back ------------------------------------

_EXECUTED_TYPES: dict[str, tuple[type, ...]] = {
    "step": (int,), "slot": (int,), "op": (str,), "offset_s": (int, float), "at_s": (int, float),
    "t": (int, float), "fault": (str,), "params": (dict,), "targets": (list,), "resolved": (dict,),
    "term": (int, type(None)), "skipped": (str,), "error": (str,),
}


def _executed_problem(line: Any) -> str | None:
    if not isinstance(line, dict):
        return f"not a JSON object but {type(line).__name__}"
    for key in ("step", "op", "slot"):
        if key not in line:
            return f"no {key!r}"
    for key, kinds in _EXECUTED_TYPES.items():
        value = line.get(key)
        if key in line and (isinstance(value, bool) or not isinstance(value, kinds)):
            return f"{key!r} must be {' or '.join(k.__name__ for k in kinds)}, got {value!r}"
    if line["op"] not in {op.value for op in StepOp}:
        return f"op must be one of {', '.join(op.value for op in StepOp)}, got {line['op']!r}"
    if line["op"] == StepOp.INJECT.value and "fault" not in line:
        return "an inject step without a fault"
    return None


def read_executed(path: Path | str, expected_steps: int | None = None, shape: bool = True) -> list[dict[str, Any]]:
    """Every executed step of a run's ``schedule.jsonl``, strictly: ConfigError (one line naming the
    file and line) for non-UTF-8 text, a torn or unparseable line, a wrong shape, missing or
    repeated step numbers, or fewer steps than the run recorded (``expected_steps``, from its
    verdicts.json). A replay of part of a schedule is not a replay, so nothing is dropped quietly.
    ``shape=False`` (a report only shows the lines) checks the text and that each line is a JSON
    object, not the fields a replay needs.

    The nemesis writes one whole line per step, newline-terminated, so a file that does not end
    in a newline was cut mid-line."""
    path = Path(path)
    text = read_utf8(path)
    if text and not text.endswith("\n"):
        raise ConfigError(f"{path}: torn: the last line is cut short (the file does not end with a newline)")
    out: list[dict[str, Any]] = []
    for number, line in enumerate(text.split("\n")[:-1] if text else [], 1):
        if not line.strip():
            continue
        try:
            doc = json.loads(line)
        except ValueError:
            raise ConfigError(f"{path}:{number}: not a JSON line: {line[:60]!r}") from None
        problem = _executed_problem(doc) if shape else (
            None if isinstance(doc, dict) else f"not a JSON object but {type(doc).__name__}")
        if problem:
            raise ConfigError(f"{path}:{number}: not an executed step: {problem}")
        out.append(doc)
    if not shape:
        return out
    numbers = sorted(d["step"] for d in out)
    if numbers != list(range(len(out))):
        missing = sorted(set(range(max(numbers, default=-1) + 1)) - set(numbers))
        raise ConfigError(f"{path}: step numbers are not 0..{len(out) - 1} (missing {missing[:5]}, "
                          f"or repeated): lines were lost or duplicated")
    if expected_steps is not None and len(out) != expected_steps:
        raise ConfigError(f"{path}: holds {len(out)} steps but the run recorded {expected_steps}: "
                          "the file was truncated")
    return sorted(out, key=lambda d: d["step"])
