"""Scenario / incident files (TOML): topology, flags, workload, fault timeline, seed, expected symptoms.

Format (every table optional except ``[[timeline]]`` entries' ``fault`` and ``at_s``)::

    name = "b20-blackholed-peer-stall"      # default: the file name
    description = "..."
    seed = 20                                # default: random (printed)
    duration_s = 8.0                         # run this long after the first leader (default: timeline end + 2 s)

    [cluster]
    nodes = 3
    profile = "fast"                         # or "kuduraft": the timing base
    supervisor = false                       # restart nodes that exit 85
    topology = { n3 = "n2" }                 # peer = proxy that feeds it
    [cluster.flags]                          # any flag; timing flags go into the timing profile
    consensus_rpc_timeout_ms = 2000
    [cluster.node_flags.n2]
    follower_fail_all_prepare = true

    [workload]                               # enabled = false for none
    clients = 2
    rate_hz = 20.0
    keys = 4

    [[timeline]]
    at_s = 1.0
    for_s = 4.0                              # a number or [lo, hi] (drawn from the seed)
    fault = "isolate"                        # any `raftchaos fault list` name
    params = { target = "n3", mode = "blackhole" }

    [[expect]]                               # harness/symptoms.py
    symptom = "peer_pending"
    min_s = "rpc_timeout"

Every problem is a ScenarioError (a ConfigError) naming the file and the entry.
"""

from __future__ import annotations

import random
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from faults.catalog import build_fault
from harness.errors import ConfigError, FaultError
from harness.schedule import Duration, FaultSpec, Schedule, hold, timeline
from harness.spec import BackendName, ClusterSpec
from harness.symptoms import check_symptom
from harness.timing import FLAG_NAMES, TimingProfile

PROFILES = {"fast": TimingProfile.fast, "kuduraft": TimingProfile.kuduraft}
_TOP = {"name", "description", "seed", "duration_s", "cluster", "workload", "timeline", "expect"}
_CLUSTER = {"nodes", "profile", "supervisor", "topology", "flags", "node_flags", "backend"}
_WORKLOAD = {"enabled", "clients", "rate_hz", "keys"}
_ENTRY = {"at_s", "for_s", "fault", "params"}


class ScenarioError(ConfigError):
    """A scenario file that cannot run; the message names the file and the problem."""


@dataclass(frozen=True)
class TimelineEntry:
    at_s: float
    for_s: Duration
    fault: FaultSpec


@dataclass(frozen=True)
class WorkloadConfig:
    enabled: bool = True
    clients: int = 2
    rate_hz: float = 20.0
    keys: int = 4

    def to_dict(self) -> dict[str, Any]:
        return {"enabled": self.enabled, "clients": self.clients, "rate_hz": self.rate_hz, "keys": self.keys}


@dataclass(frozen=True)
class Scenario:
    name: str
    description: str
    seed: int | None
    duration_s: float
    nodes: int
    timing: TimingProfile
    flags: Mapping[str, Any]
    node_flags: Mapping[str, Mapping[str, Any]]
    topology: Mapping[str, str]
    supervisor: bool
    backend: BackendName
    workload: WorkloadConfig
    entries: tuple[TimelineEntry, ...]
    expect: tuple[tuple[str, Mapping[str, Any]], ...] = field(default_factory=tuple)

    def schedule(self) -> Schedule:
        return timeline(*[(e.at_s, hold(e.fault, e.for_s)) for e in self.entries])

    def resolve_seed(self, seed: int | None = None) -> int:
        """``seed`` if given, else the file's, else a fresh random one (callers print it)."""
        if seed is not None:
            return seed
        return self.seed if self.seed is not None else random.SystemRandom().randrange(2**31)

    def cluster_spec(self, seed: int, run_dir: Path | None = None, test_name: str | None = None) -> ClusterSpec:
        return ClusterSpec(node_count=self.nodes, flags=dict(self.flags),
                           node_flags={k: dict(v) for k, v in self.node_flags.items()},
                           topology=dict(self.topology), backend=self.backend, seed=seed, run_dir=run_dir,
                           test_name=test_name or self.name, timing=self.timing)


def _fail(where: str, message: str) -> ScenarioError:
    return ScenarioError(f"{where}: {message}")


def _table(doc: Mapping[str, Any], key: str, where: str, allowed: set[str]) -> Mapping[str, Any]:
    value = doc.get(key, {})
    if not isinstance(value, Mapping):
        raise _fail(where, f"[{key}] must be a table")
    unknown = sorted(set(value) - allowed)
    if unknown:
        raise _fail(where, f"[{key}]: unknown key(s) {', '.join(unknown)} (known: {', '.join(sorted(allowed))})")
    return value


def _number(value: Any, where: str, what: str, integer: bool = False) -> Any:
    kinds = int if integer else (int, float)
    if isinstance(value, bool) or not isinstance(value, kinds) or value < 0:
        raise _fail(where, f"{what} must be a non-negative {'integer' if integer else 'number'}, got {value!r}")
    return value


def _entry(raw: Any, i: int, where: str) -> TimelineEntry:
    at = f"{where}: timeline[{i}]"
    if not isinstance(raw, Mapping):
        raise _fail(at, "must be a table")
    unknown = sorted(set(raw) - _ENTRY)
    if unknown:
        raise _fail(at, f"unknown key(s) {', '.join(unknown)} (known: {', '.join(sorted(_ENTRY))})")
    if "fault" not in raw or "at_s" not in raw:
        raise _fail(at, "needs fault and at_s")
    for_s = raw.get("for_s", 1.0)
    if isinstance(for_s, list):
        if len(for_s) != 2:
            raise _fail(at, f"for_s range must be [lo, hi], got {for_s}")
        for_s = (float(_number(for_s[0], at, "for_s")), float(_number(for_s[1], at, "for_s")))
    else:
        for_s = float(_number(for_s, at, "for_s"))
    params = raw.get("params", {})
    if not isinstance(params, Mapping):
        raise _fail(at, "params must be a table")
    try:
        spec = FaultSpec(str(raw["fault"]), dict(params))
        build_fault(spec.name, spec.params)
    except (FaultError, ConfigError) as exc:
        raise _fail(at, str(exc)) from None
    return TimelineEntry(float(_number(raw["at_s"], at, "at_s")), for_s, spec)


def parse_scenario(text: str, where: str = "scenario") -> Scenario:
    """Parse and validate a scenario document (ScenarioError on any problem)."""
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise _fail(where, f"not valid TOML: {exc}") from None
    unknown = sorted(set(doc) - _TOP)
    if unknown:
        raise _fail(where, f"unknown key(s) {', '.join(unknown)} (known: {', '.join(sorted(_TOP))})")
    cluster = _table(doc, "cluster", where, _CLUSTER)
    load = _table(doc, "workload", where, _WORKLOAD)
    profile = cluster.get("profile", "fast")
    if profile not in PROFILES:
        raise _fail(where, f"cluster.profile must be one of {', '.join(PROFILES)}, got {profile!r}")
    flags = cluster.get("flags", {})
    if not isinstance(flags, Mapping):
        raise _fail(where, "[cluster.flags] must be a table")
    timing_names = set(FLAG_NAMES.values())
    try:
        timing = TimingProfile.from_flags({k: v for k, v in flags.items() if k in timing_names}, PROFILES[profile]())
    except (ConfigError, TypeError) as exc:
        raise _fail(where, f"timing flags: {exc}") from None
    raw_timeline = doc.get("timeline", [])
    if not isinstance(raw_timeline, list):
        raise _fail(where, "timeline must be an array of tables ([[timeline]])")
    entries = tuple(_entry(raw, i, where) for i, raw in enumerate(raw_timeline))
    expect = []
    for i, raw in enumerate(doc.get("expect", [])):
        if not isinstance(raw, Mapping) or "symptom" not in raw:
            raise _fail(where, f"expect[{i}] must be a table with a symptom")
        params = {k: v for k, v in raw.items() if k != "symptom"}
        try:
            check_symptom(str(raw["symptom"]), params)
        except ConfigError as exc:
            raise _fail(where, f"expect[{i}]: {exc}") from None
        expect.append((str(raw["symptom"]), params))
    end = max((e.at_s + (e.for_s[1] if isinstance(e.for_s, tuple) else e.for_s) for e in entries), default=0.0)
    duration = float(_number(doc.get("duration_s", end + 2.0), where, "duration_s"))
    if duration < end:
        raise _fail(where, f"duration_s ({duration:g}) ends before the timeline does ({end:g} s)")
    seed = doc.get("seed")
    if seed is not None:
        _number(seed, where, "seed", integer=True)
    workload = WorkloadConfig(bool(load.get("enabled", True)), int(_number(load.get("clients", 2), where, "clients", True)),
                              float(_number(load.get("rate_hz", 20.0), where, "rate_hz")),
                              int(_number(load.get("keys", 4), where, "keys", True)))
    try:
        backend = BackendName(cluster.get("backend", "local"))
    except ValueError:
        raise _fail(where, f"cluster.backend must be local or docker, got {cluster.get('backend')!r}") from None
    scenario = Scenario(
        name=str(doc.get("name", Path(where).stem)), description=str(doc.get("description", "")), seed=seed,
        duration_s=duration, nodes=int(_number(cluster.get("nodes", 3), where, "cluster.nodes", True)),
        timing=timing, flags={k: v for k, v in flags.items() if k not in timing_names},
        node_flags=dict(cluster.get("node_flags", {})), topology=dict(cluster.get("topology", {})),
        supervisor=bool(cluster.get("supervisor", False)), backend=backend, workload=workload,
        entries=entries, expect=tuple(expect))
    try:
        scenario.cluster_spec(0)  # node count, flags, topology, test name
    except ConfigError as exc:
        raise _fail(where, str(exc)) from None
    return scenario


def load_scenario(path: Path | str) -> Scenario:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ScenarioError(f"{path}: cannot read: {exc.strerror or exc}") from None
    return parse_scenario(text, str(path))
