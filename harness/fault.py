"""The Fault protocol, targets resolved at injection time, recording, and the ``applied`` helper.

Concrete faults live in ``faults/``. A fault uses only the Cluster's public verbs and records
everything it does in the run's history as ``fault``/``heal`` events (``process="nemesis"``).
"""

from __future__ import annotations

import random
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from enum import StrEnum
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from harness.errors import FaultError, FaultUnavailable, NodeUnreachable, NoTarget, WaitTimeout
from harness.waits import agreed_leader

if TYPE_CHECKING:
    from harness.cluster import Cluster

# Runtime fault flags (kuduraft names) and kuduraft's defaults: what "healthy" means for flags.
RUNTIME_FAULT_FLAGS: Mapping[str, Any] = MappingProxyType({
    "fault_crash_on_leader_request_fraction": 0.0,
    "fault_crash_after_leader_request_fraction": 0.0,
    "fault_crash_before_cmeta_flush": 0.0,
    "fault_crash_before_append_commit": 0.0,
    "consensus_inject_latency_ms_in_notifications": 0,
    "follower_reject_update_consensus_requests": False,
    "follower_fail_all_prepare": False,
    "follower_fail_prepare_with_rotate_event": False,
    "log_inject_io_error_on_append_fraction": 0.0,
    "log_inject_latency": False,
})


class TargetKind(StrEnum):
    LEADER = "leader"
    FOLLOWERS = "followers"
    ONE = "one"
    MINORITY = "minority"
    MAJORITY = "majority"
    ALL = "all"
    NODES = "nodes"


@dataclass(frozen=True)
class Target:
    """Which nodes a fault hits, as data; resolved to ids only at injection time."""

    kind: TargetKind
    ids: tuple[str, ...] = ()

    @classmethod
    def leader(cls) -> Target:
        return cls(TargetKind.LEADER)

    @classmethod
    def followers(cls) -> Target:
        return cls(TargetKind.FOLLOWERS)

    @classmethod
    def one(cls) -> Target:
        return cls(TargetKind.ONE)

    @classmethod
    def minority(cls) -> Target:
        return cls(TargetKind.MINORITY)

    @classmethod
    def majority(cls) -> Target:
        return cls(TargetKind.MAJORITY)

    @classmethod
    def all(cls) -> Target:
        return cls(TargetKind.ALL)

    @classmethod
    def nodes(cls, *ids: str) -> Target:
        if not ids:
            raise FaultError("Target.nodes needs at least one node id")
        return cls(TargetKind.NODES, tuple(ids))

    @classmethod
    def parse(cls, text: str) -> Target:
        """``leader``, ``followers``, ..., or comma-separated ids like ``n1,n3``."""
        try:
            return cls(TargetKind(text))
        except ValueError:
            return cls.nodes(*[part.strip() for part in text.split(",") if part.strip()])

    def __str__(self) -> str:
        return ",".join(self.ids) if self.kind is TargetKind.NODES else self.kind.value

    def unavailable_reason(self, node_ids: Sequence[str]) -> str | None:
        """Why this target cannot be resolved on a cluster of these nodes (None if it can)."""
        n = len(node_ids)
        if self.kind is TargetKind.MINORITY and n < 3:
            return f"a minority target needs at least 3 nodes, cluster has {n}"
        if self.kind is TargetKind.FOLLOWERS and n < 2:
            return "a followers target needs at least 2 nodes"
        unknown = [i for i in self.ids if i not in node_ids]
        if unknown:
            return f"unknown node(s) {', '.join(unknown)}"
        return None

    def resolve(self, statuses: Mapping[str, Mapping[str, Any] | None], node_ids: Sequence[str],
                rng: random.Random) -> tuple[tuple[str, ...], int | None]:
        """(ids hit, term): the ids in cluster order, and the agreed leader's term (else the
        highest term seen). FaultError when it cannot resolve (e.g. no leader)."""
        reason = self.unavailable_reason(node_ids)
        if reason:
            raise FaultError(f"target {self}: {reason}")
        leader = agreed_leader(statuses, len(node_ids))
        terms = [int(st["term"]) for st in statuses.values() if st and "term" in st]
        leader_status = statuses.get(leader) if leader else None
        term = int(leader_status["term"]) if leader_status else (max(terms) if terms else None)
        nodes = list(node_ids)
        kind = self.kind
        if kind in (TargetKind.LEADER, TargetKind.FOLLOWERS) and leader is None:
            raise NoTarget(f"target {self}: no agreed leader right now")
        hit: list[str]
        if kind is TargetKind.LEADER:
            hit = [leader] if leader else []
        elif kind is TargetKind.FOLLOWERS:
            hit = [n for n in nodes if n != leader]
        elif kind is TargetKind.ONE:
            hit = [rng.choice(nodes)]
        elif kind is TargetKind.MINORITY:
            hit = rng.sample(nodes, (len(nodes) - 1) // 2)
        elif kind is TargetKind.MAJORITY:
            hit = rng.sample(nodes, len(nodes) // 2 + 1)
        elif kind is TargetKind.ALL:
            hit = nodes
        else:
            hit = list(self.ids)
        return tuple(n for n in nodes if n in hit), term


@dataclass(frozen=True)
class FaultRecord:
    """What an injection did: the fault's name, its parameters, who was hit, in which term, when."""

    fault: str
    params: Mapping[str, Any] = field(default_factory=dict)
    targets: tuple[str, ...] = ()
    term: int | None = None
    t: float = 0.0


@runtime_checkable
class Fault(Protocol):
    """A fault with a lifecycle. ``available`` returns the reason it cannot run here (None when
    it can); ``setup``/``teardown`` leave the cluster healthy (see ``restore_health``);
    ``inject`` resolves targets now, acts, records a ``fault`` event and returns its record;
    ``heal`` undoes it and records a ``heal`` event. ``heal`` must be safe to call after a
    failed or partial ``inject``."""

    name: str

    def available(self, cluster: Cluster) -> str | None: ...

    def setup(self, cluster: Cluster) -> None: ...

    def inject(self, cluster: Cluster) -> FaultRecord: ...

    def heal(self, cluster: Cluster) -> None: ...

    def teardown(self, cluster: Cluster) -> None: ...


def resolve_target(cluster: Cluster, target: Target, rng: random.Random | None = None
                   ) -> tuple[tuple[str, ...], int | None]:
    """Resolve ``target`` on the live cluster (rng default: the cluster's seeded nemesis rng).

    ``leader``/``followers`` wait (bounded by the profile's new-leader bound) for an agreed
    leader, since a schedule often aims at the leader right after a fault that deposed it;
    NoTarget if none appears."""
    rng = rng or nemesis_rng(cluster)
    try:
        return target.resolve(cluster.statuses(), cluster.nodes, rng)
    except NoTarget:
        try:
            cluster.wait_for_leader(cluster.timing.new_leader_within_s())
        except WaitTimeout:
            pass  # resolve() below says so with NoTarget
    return target.resolve(cluster.statuses(), cluster.nodes, rng)


def nemesis_rng(cluster: Cluster) -> random.Random:
    """The run's one seeded Random for target choices (the same object for the whole run)."""
    return cluster.rng("nemesis")


def record_fault(cluster: Cluster, fault: str, params: Mapping[str, Any], targets: Sequence[str],
                 term: int | None) -> FaultRecord:
    """Write the ``fault`` event and return the matching record."""
    event = cluster.history.fault(fault, params, targets, term)
    return FaultRecord(fault, dict(params), tuple(targets), term, event["t"])


def record_heal(cluster: Cluster, record: FaultRecord, **extra: Any) -> None:
    """Write the ``heal`` event (``extra``: e.g. ``vacuous``/``evidence`` from verification)."""
    cluster.history.heal(record.fault, record.params, record.targets, record.term, **extra)


def restore_health(cluster: Cluster) -> None:
    """Start healthy, end healthy: reset Toxiproxy, resume paused nodes, and put every runtime
    fault flag back to the spec's value (kuduraft's default unless the spec set it). Flag
    changes are recorded; nodes that are down are left down (restarting would hide a crash)."""
    cluster.reset_links()
    for node_id in cluster.nodes:
        if cluster.is_running(node_id) and cluster.is_paused(node_id):
            cluster.resume(node_id)
    for node_id in cluster.nodes:
        if not cluster.is_running(node_id):
            continue
        try:
            current = cluster.flags(node_id)
            wanted = cluster.spec.node_flags_for(node_id)
            for name, default in RUNTIME_FAULT_FLAGS.items():
                value = wanted.get(name, default)
                if name in current and current[name] != value:
                    cluster.set_flag(node_id, name, value)
        except NodeUnreachable:
            # Crashed or (re)starting right now: a fresh process starts with the spec's flags,
            # so there is no runtime fault flag left on it to restore.
            continue


def check_available(fault: Fault, cluster: Cluster) -> None:
    """Raise FaultUnavailable (suites skip on it) when the fault cannot run on this cluster."""
    reason = fault.available(cluster)
    if reason:
        raise FaultUnavailable(fault.name, reason)


@contextmanager
def applied(fault: Fault, cluster: Cluster) -> Iterator[FaultRecord]:
    """``with applied(fault, cluster) as record: ...``: check availability (FaultUnavailable),
    set up, inject, run the block, then heal and tear down in ``finally``. Errors from healing
    never hide the block's own error (they are attached to it as notes)."""
    check_available(fault, cluster)
    fault.setup(cluster)
    problems: list[BaseException] = []
    try:
        yield fault.inject(cluster)
    except BaseException as exc:
        problems.append(exc)
        raise
    finally:
        cleanup_errors = []
        for step in (fault.heal, fault.teardown):
            try:
                step(cluster)
            except Exception as exc:  # noqa: BLE001 - every step runs; reported below
                cleanup_errors.append(exc)
        if problems:
            for err in cleanup_errors:
                problems[0].add_note(f"also while healing {fault.name}: {type(err).__name__}: {err}")
        elif cleanup_errors:
            raise FaultError(f"healing {fault.name} failed: {cleanup_errors[0]}") from cleanup_errors[0]
