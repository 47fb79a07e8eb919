"""Runtime flag faults: set kuduraft fault flags on target nodes over the node API, restore them on heal."""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from faults.base import as_target, bounded, check_known, check_number
from faults.rearm import Rearmer
from faults.verify import (
    UNVERIFIED,
    Verification,
    crash_draws,
    crash_verification,
    last_indexes,
    progress_verification,
    rejected_counts,
    rejection_verification,
)
from harness.errors import FaultError, HarnessError, NodeUnreachable
from harness.fault import RUNTIME_FAULT_FLAGS, FaultRecord, Target, record_fault, record_heal, resolve_target

if TYPE_CHECKING:
    from harness.cluster import Cluster

CRASH_ON_LEADER_REQUEST = "fault_crash_on_leader_request_fraction"
CRASH_AFTER_LEADER_REQUEST = "fault_crash_after_leader_request_fraction"
FOLLOWER_REJECT_UPDATES = "follower_reject_update_consensus_requests"
FOLLOWER_FAIL_ALL_PREPARE = "follower_fail_all_prepare"
FOLLOWER_FAIL_PREPARE_ROTATE = "follower_fail_prepare_with_rotate_event"
WAL_LATENCY = "log_inject_latency"
CRASH_FLAGS = (CRASH_ON_LEADER_REQUEST, CRASH_AFTER_LEADER_REQUEST)
FOLLOWER_FLAGS = (FOLLOWER_REJECT_UPDATES, FOLLOWER_FAIL_ALL_PREPARE, FOLLOWER_FAIL_PREPARE_ROTATE)
_FLAG_NAME = re.compile(r"^[a-z][a-z0-9_]*$")


def _check_value(name: str, value: Any) -> Any:
    """Known fault flags get their kuduraft type and range checked here (fractions in [0, 1]);
    other flags only their shape, the node being the authority (it answers 400 naming the problem)."""
    default = RUNTIME_FAULT_FLAGS.get(name)
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise FaultError(f"flag {name} is a bool, got {value!r}")
        return value
    if isinstance(default, float) and name.endswith("_fraction"):
        return float(check_number(name, value, 0.0, 1.0))
    if isinstance(default, int | float):
        return check_number(name, value, 0, 10**9, integer=isinstance(default, int))
    if isinstance(value, bool | int | float | str):
        return value
    raise FaultError(f"flag {name} needs a scalar value, got {value!r}")


class FlagFault:
    """Set ``flags`` on the ``target`` nodes (resolved at injection); heal puts back each node's
    value from before the injection. Every change is a recorded ``node``/``flag`` event, and the
    fault/heal events list the flags and who got them. A node that restarted meanwhile runs its
    spec's flags again: it is left alone, unless ``reapply_on_restart`` is set: then every node
    the fault hit gets the flags again as soon as it answers after a start while the fault is on
    (the crash supervisor's restart after an injected crash, or anyone's), each change a recorded
    ``flag`` event; the heal event lists them as ``reapplied`` (and ``reapply_errors``).

    Re-arming is what a crash flag means in kuduraft's own chaos test: Kudu's
    ``RaftConsensusITest.InsertWithCrashyNodes`` (src/kudu/integration-tests/raft_consensus-itest.cc)
    starts every tablet server with ``--fault_crash_on_leader_request_fraction=0.05`` and restarts
    the crashed ones (``RestartAnyCrashedTabletServers``) with the same flags, so a restarted
    server can crash again, until the test removes the flag and restarts them all. The catalog's
    crash flags (``crash-on-leader-request``, ``crash-after-leader-request``: the nemesis, the CLI,
    scenarios) re-arm by default so a schedule's window holds that long; the suites that measure
    single crashes (B21/B22 fractions) call the functions below, which do not."""

    name = "flags"

    def __init__(self, flags: Mapping[str, Any], target: Target | str = "all",
                 name: str | None = None, reapply_on_restart: bool = False) -> None:
        if not isinstance(flags, Mapping) or not flags:
            raise FaultError(f"flags must be a non-empty mapping of flag name to value, got {flags!r}")
        checked = {}
        for flag, value in flags.items():
            if not isinstance(flag, str) or not _FLAG_NAME.match(flag):
                raise FaultError(f"{flag!r} is not a flag name")
            checked[flag] = _check_value(flag, value)
        self.flags: Mapping[str, Any] = MappingProxyType(checked)
        self.target = as_target(target)
        if not isinstance(reapply_on_restart, bool):
            raise FaultError(f"reapply_on_restart must be a bool, got {reapply_on_restart!r}")
        self.reapply_on_restart = reapply_on_restart
        if name is not None:
            self.name = name
        self._lock = threading.Lock()
        self._previous: dict[str, dict[str, Any]] = {}  # node -> flag -> value before injection
        self._record: FaultRecord | None = None
        self._baseline: dict[str, Any] = {}
        self._rearmer: Rearmer | None = None
        self._reapplied: list[str] = []

    def available(self, cluster: Cluster) -> str | None:
        """Unavailable when no running node lists one of the flags (another implementation of the
        node API may not have kuduraft's fault flags)."""
        check_known(cluster, self.target)
        reason = self.target.unavailable_reason(cluster.nodes)
        if reason:
            return reason
        for node_id in cluster.nodes:
            if cluster.is_running(node_id) and not cluster.is_paused(node_id):
                try:
                    known = cluster.flags(node_id)
                except HarnessError:
                    continue
                missing = sorted(set(self.flags) - set(known))
                return f"the node does not have flag(s) {', '.join(missing)}" if missing else None
        return "no running node to ask which flags it has"

    def setup(self, cluster: Cluster) -> None:
        """Nothing to prepare: the previous values are read per node at injection."""

    def teardown(self, cluster: Cluster) -> None:
        """Nothing left: ``heal`` restored every value it changed."""

    def inject(self, cluster: Cluster) -> FaultRecord:
        if self._record is not None:
            raise FaultError(f"{self.name} is already injected")
        ids, term = resolve_target(cluster, self.target)
        params: dict[str, Any] = {"flags": dict(self.flags), "target": str(self.target)}
        if self.reapply_on_restart:
            params["reapply_on_restart"] = True
        hit: list[str] = []
        try:
            for node_id in ids:
                if not cluster.is_running(node_id) or cluster.is_paused(node_id):
                    continue
                try:
                    current = cluster.flags(node_id)
                    self._previous[node_id] = {f: current.get(f) for f in self.flags}
                    for flag, value in self.flags.items():
                        cluster.set_flag(node_id, flag, value)
                except NodeUnreachable:
                    # Crashed or restarting this instant (a crash fraction at work): a fresh
                    # process starts with the spec's flags, so nothing of ours is left on it.
                    self._previous.pop(node_id, None)
                    continue
                hit.append(node_id)
        except HarnessError as exc:
            self._record = record_fault(cluster, self.name, {**params, "error": str(exc)}, hit, term)
            raise FaultError(f"{self.name}: setting {dict(self.flags)} failed: {exc}") from exc
        params["skipped_not_running"] = [n for n in ids if n not in hit]
        self._record = record_fault(cluster, self.name, params, hit, term)
        self._baseline = self._observe(cluster, hit)
        if self.reapply_on_restart and hit:
            self._rearmer = Rearmer(cluster, hit, lambda node_id: self._reapply(cluster, node_id)).start()
        return self._record

    def _reapply(self, cluster: Cluster, node_id: str) -> None:
        """Set the flags again on ``node_id``, which started again while the fault is on (called by
        the rearmer's thread; holds the lock, so it never interleaves with ``heal``)."""
        with self._lock:
            if self._record is None:
                return
            current = cluster.flags(node_id)
            for flag, value in self.flags.items():
                if current.get(flag) != value:
                    cluster.set_flag(node_id, flag, value)
            self._reapplied.append(node_id)

    def _observe(self, cluster: Cluster, hit: list[str]) -> dict[str, Any]:
        """What ``verify`` compares against: crash draws, rejected updates or log positions."""
        try:
            crash = [f for f in CRASH_FLAGS if float(self.flags.get(f, 0.0) or 0.0) > 0]
            if crash:
                return {"kind": "crash", "flag": crash[0], "draws": crash_draws(cluster, crash[0])}
            if any(self.flags.get(f) is True for f in FOLLOWER_FLAGS):
                return {"kind": "reject", "counts": rejected_counts(cluster, hit)}
            if self.flags.get(WAL_LATENCY) is True:
                return {"kind": "wal", "indexes": last_indexes(cluster, hit)}
        except (HarnessError, AttributeError):
            pass
        return {"kind": "unknown"}

    def verify(self, cluster: Cluster) -> Verification:
        """Whether the flags bit since injection (see ``faults.verify``)."""
        if self._record is None:
            return UNVERIFIED
        base, since = self._baseline, self._record.t
        try:
            if base.get("kind") == "crash":
                return crash_verification(cluster, since, base["draws"], base["flag"])
            if base.get("kind") == "reject":
                return rejection_verification(cluster, since, base["counts"])
            if base.get("kind") == "wal":
                return progress_verification(cluster, base["indexes"])
        except (HarnessError, AttributeError) as exc:
            return Verification(None, f"could not verify: {exc}")
        return Verification(None, f"set {', '.join(self.flags)}; its effect is not observable here")

    def _stop_rearming(self) -> dict[str, Any]:
        """Stop re-applying (before taking the lock: the rearmer may be waiting for it) and return
        what it did, for the heal event."""
        rearmer, self._rearmer = self._rearmer, None
        if rearmer is None:
            return {}
        rearmer.stop()
        with self._lock:
            extra: dict[str, Any] = {"reapplied": list(self._reapplied)}
            self._reapplied.clear()
        if rearmer.errors:
            extra["reapply_errors"] = list(rearmer.errors)
        return extra

    def heal(self, cluster: Cluster) -> None:
        rearmed = self._stop_rearming()
        with self._lock:
            verification = self.verify(cluster)
            for node_id in list(self._previous):
                try:
                    if cluster.is_running(node_id) and not cluster.is_paused(node_id):
                        current = cluster.flags(node_id)
                        for flag, value in self._previous[node_id].items():
                            if value is not None and current.get(flag) != value:
                                cluster.set_flag(node_id, flag, value)
                except NodeUnreachable:
                    pass  # crashed or restarting: it comes back with its spec's flags
                del self._previous[node_id]
            if self._record is not None:
                record_heal(cluster, self._record, **verification.heal_fields(), **rearmed)
                self._record = None


# ---- kuduraft's fault flags by name ---------------------------------------------------------------

def crash_on_leader_request(fraction: float, target: Target | str = "all",
                            reapply_on_restart: bool = False) -> FlagFault:
    """The leader exits with status 85 before a send with probability ``fraction`` (B21). Set on
    every node by default: whoever is elected next must carry the flag too. With
    ``reapply_on_restart`` a node the crash supervisor restarts is re-armed (see ``FlagFault``)."""
    return FlagFault({CRASH_ON_LEADER_REQUEST: fraction}, target, name="crash-on-leader-request",
                     reapply_on_restart=reapply_on_restart)


def crash_after_leader_request(fraction: float, target: Target | str = "all",
                               reapply_on_restart: bool = False) -> FlagFault:
    """The leader exits with status 85 after processing a reply with probability ``fraction`` (B22)."""
    return FlagFault({CRASH_AFTER_LEADER_REQUEST: fraction}, target, name="crash-after-leader-request",
                     reapply_on_restart=reapply_on_restart)


def follower_reject_updates(target: Target | str = "followers") -> FlagFault:
    """The target followers reject every UpdateConsensus (the leader sees REMOTE_ERROR, B39)."""
    return FlagFault({FOLLOWER_REJECT_UPDATES: True}, target, name="follower-reject-updates")


def follower_fail_all_prepare(target: Target | str = "followers") -> FlagFault:
    """The target followers answer write batches with CANNOT_PREPARE (B40)."""
    return FlagFault({FOLLOWER_FAIL_ALL_PREPARE: True}, target, name="follower-fail-all-prepare")


def follower_fail_prepare_with_rotate_event(target: Target | str = "followers") -> FlagFault:
    """CANNOT_PREPARE with "Previous Rotate Event with": not a counted failure (B9)."""
    return FlagFault({FOLLOWER_FAIL_PREPARE_ROTATE: True}, target, name="follower-fail-prepare-rotate")


def wal_latency(mean_ms: int = 100, stddev_ms: int = 100, target: Target | str = "all") -> FlagFault:
    """Every WAL sync on the target nodes sleeps N(mean_ms, stddev_ms) ms (kuduraft's
    ``log_inject_latency`` with ``log_inject_latency_ms_mean`` / ``_ms_stddev``)."""
    mean = int(check_number("mean_ms", mean_ms, 0, 600_000, integer=True))
    stddev = int(check_number("stddev_ms", stddev_ms, 0, 600_000, integer=True))
    return FlagFault({WAL_LATENCY: True, "log_inject_latency_ms_mean": mean,
                      "log_inject_latency_ms_stddev": stddev}, target, name="wal-latency")


@contextmanager
def runtime_flags(cluster: Cluster, flags: Mapping[str, Any], target: Target | str = "all",
                  for_s: float | None = None) -> Iterator[FaultRecord]:
    """``with runtime_flags(cluster, {"follower_fail_all_prepare": True}, "followers"): ...``"""
    with bounded(FlagFault(flags, target), cluster, for_s) as record:
        yield record


@contextmanager
def flag_fault(cluster: Cluster, fault: FlagFault, for_s: float | None = None) -> Iterator[FaultRecord]:
    """``with flag_fault(cluster, crash_on_leader_request(0.05)): ...``"""
    with bounded(fault, cluster, for_s) as record:
        yield record
