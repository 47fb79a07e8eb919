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

Every problem is a ScenarioError (a ConfigError) naming the file and the entry, raised before
any cluster starts: non-UTF-8 text, TOML syntax, unknown keys, wrong types, numbers out of range
(times within ``MAX_SECONDS``), flags the node does not know or would refuse (nodes/flags.py),
unknown faults or parameters, targets naming no node of the cluster, and a file with neither a
timeline nor a duration (it would run nothing and report valid).
"""

from __future__ import annotations

import math
import random
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from faults.catalog import build_fault
from harness.errors import ConfigError, FaultError, read_utf8
from harness.fault import Target
from harness.runplan import MAX_SECONDS, WorkloadConfig
from harness.schedule import Duration, FaultSpec, Schedule, hold, timeline
from harness.spec import BackendName, ClusterSpec, node_ids
from harness.symptoms import check_symptom
from harness.systems import registry
from harness.timing import FLAG_NAMES, TimingProfile

PROFILES = {"fast": TimingProfile.fast, "kuduraft": TimingProfile.kuduraft}
_TOP = {"name", "description", "seed", "duration_s", "cluster", "workload", "timeline", "expect"}
_CLUSTER = {"nodes", "profile", "supervisor", "topology", "flags", "node_flags", "backend"}
_WORKLOAD = {"enabled", "clients", "rate_hz", "keys"}
_ENTRY = {"at_s", "for_s", "fault", "params"}
# Ranges a scenario must stay within (past them it is a typo, not a test): any time (duration_s,
# at_s, for_s) within a day, the cluster sizes ClusterSpec accepts, a workload a laptop can drive.
MAX_NODES = 7
MAX_SEED = 2**63 - 1
MAX_CLIENTS = 64
MAX_RATE_HZ = 10000.0
MAX_KEYS = 100000


class ScenarioError(ConfigError):
    """A scenario file that cannot run; the message names the file and the problem."""


@dataclass(frozen=True)
class TimelineEntry:
    at_s: float
    for_s: Duration
    fault: FaultSpec


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


def _number(value: Any, where: str, what: str, integer: bool = False, maximum: float = MAX_SECONDS,
            minimum: float = 0) -> Any:
    """A finite number in [minimum, maximum]: a scenario past these ranges is a typo (1e308 s would
    hang the run, a negative rate makes no sense), so it is refused before anything starts."""
    kinds = int if integer else (int, float)
    kind = "integer" if integer else "number"
    wanted = f"a non-negative {kind}" if minimum == 0 else f"{'an' if integer else 'a'} {kind} >= {minimum:g}"
    if isinstance(value, bool) or not isinstance(value, kinds) or not math.isfinite(value) or value < minimum:
        raise _fail(where, f"{what} must be {wanted}, got {value!r}")
    if value > maximum:
        raise _fail(where, f"{what} must be at most {maximum:g}, got {value!r}")
    return value


def _bool(value: Any, where: str, what: str) -> bool:
    if not isinstance(value, bool):
        raise _fail(where, f"{what} must be true or false, got {value!r}")
    return value


def _string(value: Any, where: str, what: str) -> str:
    if not isinstance(value, str):
        raise _fail(where, f"{what} must be a string, got {value!r}")
    return value


def flag_problem(name: str, value: Any, system: str = "kuduraft") -> str | None:
    """Why ``system``'s nodes would refuse flag ``name`` = ``value`` at start (None when they take it).
    The system's own flag table is the authority (kuduraft: nodes/flags.py, read by its adapter), read
    here so the mistake is named before any cluster starts instead of as a node exiting 2 mid-setup."""
    return registry.flag_problem(system, name, value)


def _flags(raw: Any, where: str, what: str) -> dict[str, Any]:
    if not isinstance(raw, Mapping):
        raise _fail(where, f"[{what}] must be a table")
    for name, value in raw.items():
        problem = flag_problem(str(name), value)
        if problem:
            raise _fail(where, f"{what}: {problem}")
    return dict(raw)


def _node_ids_in(params: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(parameter, target text) of every parameter that names nodes."""
    out = [(key, params[key]) for key in ("target", "src", "dst") if isinstance(params.get(key), str)]
    groups = params.get("groups")
    if isinstance(groups, list):
        out += [("groups", node) for group in groups if isinstance(group, list) for node in group
                if isinstance(node, str)]
    return out


def check_targets(params: Mapping[str, Any], nodes: int, where: str) -> None:
    """Every node a fault names must exist in a cluster of ``nodes`` (``n9`` in a 3-node cluster
    is refused here, before anything starts, not when the nemesis reaches it)."""
    ids = node_ids(nodes)
    for key, text in _node_ids_in(params):
        try:
            reason = Target.parse(text).unavailable_reason(ids) if key != "groups" else (
                None if text in ids else f"unknown node(s) {text}")
        except FaultError as exc:
            reason = str(exc)
        if reason:
            raise _fail(where, f"{key} {text!r}: {reason} (this cluster has {', '.join(ids)})")


def _entry(raw: Any, i: int, where: str, nodes: int) -> TimelineEntry:
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
        if for_s[0] > for_s[1]:
            raise _fail(at, f"for_s range must be [lo, hi] with lo <= hi, got {list(for_s)}")
    else:
        for_s = float(_number(for_s, at, "for_s"))
    params = raw.get("params", {})
    if not isinstance(params, Mapping):
        raise _fail(at, "params must be a table")
    fault_name = _string(raw["fault"], at, "fault")
    try:
        spec = FaultSpec(fault_name, dict(params))
        build_fault(spec.name, spec.params)
    except (FaultError, ConfigError) as exc:
        raise _fail(at, str(exc)) from None
    check_targets(spec.params, nodes, at)
    if spec.name == "flag" and isinstance(params.get("name"), str):
        problem = flag_problem(params["name"], params.get("value"))
        if problem:
            raise _fail(at, problem)
    return TimelineEntry(float(_number(raw["at_s"], at, "at_s")), for_s, spec)


def parse_scenario(text: str, where: str = "scenario", require_work: bool = True) -> Scenario:
    """Parse and validate a scenario document (ScenarioError on any problem). ``require_work``:
    a document with neither a timeline nor a duration is refused (it would run nothing and
    report valid); ``raftchaos up`` builds one on purpose (it runs until ``down``)."""
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise _fail(where, f"not valid TOML: {exc}") from None
    unknown = sorted(set(doc) - _TOP)
    if unknown:
        raise _fail(where, f"unknown key(s) {', '.join(unknown)} (known: {', '.join(sorted(_TOP))})")
    cluster = _table(doc, "cluster", where, _CLUSTER)
    load = _table(doc, "workload", where, _WORKLOAD)
    nodes = int(_number(cluster.get("nodes", 3), where, "cluster.nodes", True, maximum=MAX_NODES, minimum=1))
    profile = cluster.get("profile", "fast")
    if profile not in PROFILES:
        raise _fail(where, f"cluster.profile must be one of {', '.join(PROFILES)}, got {profile!r}")
    flags = _flags(cluster.get("flags", {}), where, "cluster.flags")
    raw_node_flags = cluster.get("node_flags", {})
    if not isinstance(raw_node_flags, Mapping):
        raise _fail(where, "[cluster.node_flags] must be a table of tables ([cluster.node_flags.n2])")
    node_flags = {str(k): _flags(v, where, f"cluster.node_flags.{k}") for k, v in raw_node_flags.items()}
    topology = cluster.get("topology", {})
    if not isinstance(topology, Mapping) or not all(isinstance(v, str) for v in topology.values()):
        raise _fail(where, f"cluster.topology must map a peer to the proxy that feeds it, got {topology!r}")
    timing_names = set(FLAG_NAMES.values())
    try:
        timing = TimingProfile.from_flags({k: v for k, v in flags.items() if k in timing_names}, PROFILES[profile]())
    except (ConfigError, TypeError) as exc:
        raise _fail(where, f"timing flags: {exc}") from None
    raw_timeline = doc.get("timeline", [])
    if not isinstance(raw_timeline, list):
        raise _fail(where, "timeline must be an array of tables ([[timeline]])")
    entries = tuple(_entry(raw, i, where, nodes) for i, raw in enumerate(raw_timeline))
    raw_expect = doc.get("expect", [])
    if not isinstance(raw_expect, list):
        raise _fail(where, "expect must be an array of tables ([[expect]])")
    expect = []
    for i, raw in enumerate(raw_expect):
        if not isinstance(raw, Mapping) or "symptom" not in raw:
            raise _fail(where, f"expect[{i}] must be a table with a symptom")
        params = {k: v for k, v in raw.items() if k != "symptom"}
        try:
            check_symptom(str(raw["symptom"]), params)
        except ConfigError as exc:
            raise _fail(where, f"expect[{i}]: {exc}") from None
        expect.append((str(raw["symptom"]), params))
    end = max((e.at_s + (e.for_s[1] if isinstance(e.for_s, tuple) else e.for_s) for e in entries), default=0.0)
    if end > MAX_SECONDS:
        raise _fail(where, f"the timeline ends at {end:g} s, past the limit of {MAX_SECONDS:g} s")
    duration = float(_number(doc.get("duration_s", end + 2.0), where, "duration_s"))
    if duration < end:
        raise _fail(where, f"duration_s ({duration:g}) ends before the timeline does ({end:g} s)")
    seed = doc.get("seed")
    if seed is not None:
        _number(seed, where, "seed", integer=True, maximum=MAX_SEED)
    workload = WorkloadConfig(
        _bool(load.get("enabled", True), where, "workload.enabled"),
        int(_number(load.get("clients", 2), where, "workload.clients", True, maximum=MAX_CLIENTS, minimum=1)),
        float(_number(load.get("rate_hz", 20.0), where, "workload.rate_hz", maximum=MAX_RATE_HZ)),
        int(_number(load.get("keys", 4), where, "workload.keys", True, maximum=MAX_KEYS, minimum=1)))
    try:
        backend = BackendName(cluster.get("backend", "local"))
    except ValueError:
        raise _fail(where, f"cluster.backend must be local or docker, got {cluster.get('backend')!r}") from None
    scenario = Scenario(
        name=_string(doc.get("name", Path(where).stem), where, "name"),
        description=_string(doc.get("description", ""), where, "description"), seed=seed,
        duration_s=duration, nodes=nodes,
        timing=timing, flags={k: v for k, v in flags.items() if k not in timing_names},
        node_flags=node_flags, topology=dict(topology),
        supervisor=_bool(cluster.get("supervisor", False), where, "cluster.supervisor"), backend=backend,
        workload=workload, entries=entries, expect=tuple(expect))
    try:
        scenario.cluster_spec(0)  # node count, flags, topology, test name
    except ConfigError as exc:
        raise _fail(where, str(exc)) from None
    if require_work and not entries and "duration_s" not in doc:
        raise _fail(where, "no timeline and no duration: the scenario would run nothing "
                           "(add [[timeline]] entries or duration_s)")
    return scenario


def load_scenario(path: Path | str) -> Scenario:
    """Read and validate a scenario file; ScenarioError naming the file for an unreadable, non-UTF-8
    or invalid one."""
    path = Path(path)
    return parse_scenario(read_utf8(path, ScenarioError), str(path))
