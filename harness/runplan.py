"""What a run does besides its cluster spec (``RunPlan``), and ``run.json``'s strict reader.

The writer of ``run.json`` is ``harness.runinfo``; its reader lives here, beside the plan it
rebuilds, so ``raftchaos replay`` (and ``up``, which hands its supervisor process a plan) read a
recorded run back without going through ``faults``: a plan is workload, supervisor, timeline and
already-resolved schedule steps, none of which needs a fault's code to be read.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from harness.errors import ConfigError, HarnessError
from harness.history import OpFn
from harness.runinfo import RUN_INFO
from harness.schedule import Step
from harness.store import RunDir
from harness.symptoms import check_symptom
from harness.workload import WorkloadSpec

__all__ = ["MAX_SECONDS", "RUN_INFO", "RunPlan", "Timeline", "WorkloadConfig", "plan_from_info", "read_run_info"]

MAX_SECONDS = 86400.0  # the longest run, offset or hold a scenario or run.json may ask for


@dataclass(frozen=True)
class WorkloadConfig:
    """The background workload of a scenario or recorded run (``enabled = false``: none)."""

    enabled: bool = True
    clients: int = 2
    rate_hz: float = 20.0
    keys: int = 4

    def to_dict(self) -> dict[str, Any]:
        return {"enabled": self.enabled, "clients": self.clients, "rate_hz": self.rate_hz, "keys": self.keys}


@dataclass(frozen=True)
class Timeline:
    """When the workload starts, the schedule starts and the workload stops, in seconds after the
    first agreed leader. A scenario starts both at once; a suite test that waited for writes
    before its nemesis is replayed with the same lead (``run.json`` ``timeline``)."""

    workload_start_s: float = 0.0
    schedule_start_s: float = 0.0
    workload_stop_s: float | None = None  # None: at the end of the run

    def to_dict(self) -> dict[str, Any]:
        return {"workload_start_s": self.workload_start_s, "schedule_start_s": self.schedule_start_s,
                "workload_stop_s": self.workload_stop_s}


@dataclass(frozen=True)
class RunPlan:
    """Everything a run needs besides the cluster spec (a scenario, or a recorded run to replay).
    ``mix``/``op_timeout_s``/``restart_delay_s``/``poll_s`` None: the harness's defaults."""

    name: str
    duration_s: float
    supervisor: bool
    workload: WorkloadConfig
    steps: tuple[Step, ...]
    expect: tuple[tuple[str, dict[str, Any]], ...] = ()
    timeline: Timeline = Timeline()
    mix: Mapping[str, float] | None = None
    op_timeout_s: float | None = None
    restart_delay_s: float | None = None
    poll_s: float | None = None
    replay_of: str | None = None

    def info(self) -> dict[str, Any]:
        """The plan as ``plan_from_info`` reads it back (``up`` hands it to its supervisor process)."""
        workload = {**self.workload.to_dict(), "mix": dict(self.mix) if self.mix else None,
                    "op_timeout_s": self.op_timeout_s}
        supervisor = {"enabled": self.supervisor, "restart_delay_s": self.restart_delay_s, "poll_s": self.poll_s}
        return {"name": self.name, "duration_s": self.duration_s, "supervisor": supervisor, "workload": workload,
                "timeline": self.timeline.to_dict(), "expect": [[n, p] for n, p in self.expect]}

    def workload_spec(self) -> WorkloadSpec:
        w = self.workload
        extra: dict[str, Any] = {"op_timeout_s": self.op_timeout_s}
        if self.mix:
            extra["mix"] = {OpFn(f): weight for f, weight in self.mix.items()}
        return WorkloadSpec(clients=w.clients, rate_per_s=w.rate_hz, keys=w.keys, **extra)


def read_run_info(run: RunDir) -> dict[str, Any]:
    """The run's ``run.json``, checked: ConfigError (one line naming the file) when it is missing,
    not UTF-8 JSON, or of the wrong shape. A replay never falls back to made-up defaults: a run
    without a plan (a run older than run.json) cannot be rebuilt faithfully."""
    path = run.path / RUN_INFO
    if not path.exists():
        raise ConfigError(f"{path}: missing: the run recorded no plan (made before run.json was written "
                          "by every run), so it cannot be replayed faithfully")
    try:
        data = json.loads(path.read_bytes().decode("utf-8"))
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text (offset {exc.start})") from None
    except ValueError as exc:
        raise ConfigError(f"{path}: not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: must be a JSON object, got {type(data).__name__}")
    try:
        plan_from_info(data, (), "check")
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None
    return data


def _typed(doc: Mapping[str, Any], key: str, kinds: type | tuple[type, ...], default: Any, what: str) -> Any:
    value = doc.get(key, default)
    if isinstance(value, bool) is not (kinds is bool) or not isinstance(value, kinds):
        raise ConfigError(f"{what}{key} must be {getattr(kinds, '__name__', 'a number')}, got {value!r}")
    if isinstance(value, int | float) and not isinstance(value, bool) and (not math.isfinite(value) or value < 0):
        raise ConfigError(f"{what}{key} must be a finite number >= 0, got {value!r}")
    return value


def _optional(doc: Mapping[str, Any], key: str, what: str) -> float | None:
    """A finite number >= 0 or null/absent (None)."""
    return None if doc.get(key) is None else float(_typed(doc, key, (int, float), None, what))


def _section(info: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    value = info.get(key)
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ConfigError(f"{key} must be an object, got {value!r}")
    return value


def plan_from_info(info: Mapping[str, Any], steps: Sequence[Step], name: str) -> RunPlan:
    """The RunPlan of a recorded run (``run.json``, ``harness.runinfo``). Absent keys take the
    scenario defaults (older run.json files lack newer keys: ``supervisor`` was a bare boolean, no
    ``timeline``); present keys of the wrong type or range are a ConfigError. (Whether the run can
    be replayed at all is ``faults.replay.check_replayable``'s question.)"""
    w = _section(info, "workload")
    last = max((s.offset_s for s in steps), default=0.0)
    duration = float(_typed(info, "duration_s", (int, float), last + 2.0, ""))
    if duration > MAX_SECONDS:
        raise ConfigError(f"duration_s must be at most {MAX_SECONDS:g}, got {duration!r}")
    _typed(info, "workloads", int, 1, "")
    _typed(_section(info, "schedule"), "schedules", int, 1, "schedule.")
    workload = WorkloadConfig(_typed(w, "enabled", bool, True, "workload."),
                              _typed(w, "clients", int, 2, "workload."),
                              float(_typed(w, "rate_hz", (int, float), 20.0, "workload.")),
                              _typed(w, "keys", int, 4, "workload."))
    mix = w.get("mix")
    if mix is not None and not (isinstance(mix, Mapping) and all(
            isinstance(k, str) and isinstance(v, int | float) and not isinstance(v, bool) for k, v in mix.items())):
        raise ConfigError(f"workload.mix must map operations to weights, got {mix!r}")
    supervisor_doc = info.get("supervisor", False)
    sup: Mapping[str, Any] = (supervisor_doc if isinstance(supervisor_doc, Mapping)  # older files: a bool
                              else {"enabled": _typed(info, "supervisor", bool, False, "")})
    t = _section(info, "timeline")
    timeline = Timeline(_optional(t, "workload_start_s", "timeline.") or 0.0,
                        _optional(t, "schedule_start_s", "timeline.") or 0.0,
                        _optional(t, "workload_stop_s", "timeline."))
    expect = info.get("expect", [])
    if not isinstance(expect, list) or not all(
            isinstance(x, list) and len(x) == 2 and isinstance(x[0], str) and isinstance(x[1], dict)
            for x in expect):
        raise ConfigError(f"expect must be a list of [symptom, params], got {expect!r}")
    for symptom, params in expect:
        check_symptom(symptom, params)
    run_plan = RunPlan(name, duration, _typed(sup, "enabled", bool, False, "supervisor."), workload,
                       tuple(steps), tuple((n, dict(p)) for n, p in expect), timeline,
                       dict(mix) if mix else None, _optional(w, "op_timeout_s", "workload."),
                       _optional(sup, "restart_delay_s", "supervisor."), _optional(sup, "poll_s", "supervisor."))
    if workload.enabled:
        try:
            run_plan.workload_spec()
        except (ValueError, HarnessError) as exc:  # clients/keys/rate out of range, a bad mix
            raise ConfigError(f"workload: {exc}") from None
    return run_plan
