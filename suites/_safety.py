"""Helpers for the targeted safety scenarios: exact-state waits, short-timeout recorded writes,
the commit-on-a-majority invariant, and the UNKNOWN verdict a scenario records when it could not
build its situation.

Everything here reads only what a user of the system has: each node's ``/status`` (on the node's
own state, one consistent snapshot per call), the run's history and the harness's fault verbs.
Where an invariant compares two nodes, the node whose value may only *grow* (a follower's
``durable_index``) is read *after* the one it bounds (the leader's ``commit_index``), so a
violation is a real one, never an artefact of reading at two different moments.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from harness.checkers.verdict import Validity, Verdict
from harness.cluster import Cluster
from harness.errors import HarnessError, NodeUnreachable, WaitTimeout
from harness.history import EventKind, OpFn
from harness.nodeclient import KvResult
from suites._helpers import MARKER_PROCESS_BASE

POLL_S = 0.02  # status polling period while watching a window (only decides when to look)

_process = MARKER_PROCESS_BASE + 500_000  # ids of the safety suites' own recorded operations


def unknown(record_verdict: Callable[..., None], checker: str, summary: str, **details: Any) -> None:
    """The scenario could not build its situation: say so (never a pass, never the system's fault)."""
    print(f"UNKNOWN {checker}: {summary} {details}")
    record_verdict(Verdict(checker=checker, validity=Validity.UNKNOWN, summary=summary, details=details))


def valid(record_verdict: Callable[..., None], checker: str, summary: str, **details: Any) -> None:
    record_verdict(Verdict(checker=checker, validity=Validity.VALID, summary=summary, details=details))


def short_write(cluster: Cluster, node: str, key: str, value: Any, timeout_s: float) -> KvResult:
    """One recorded put with its own (short) client timeout, for writes the scenario expects not
    to commit yet: the history sees it as indeterminate when it times out."""
    global _process
    _process += 1
    history = cluster.history
    history.invoke(_process, OpFn.WRITE, key, value, node)
    result = cluster.node(node).put(key, value, timeout_s)
    history.complete(EventKind(result.outcome.value), _process, OpFn.WRITE, key, value, node,
                     result.latency_s, result.error)
    return result


def status_or_none(cluster: Cluster, node: str) -> dict[str, Any] | None:
    """``node``'s status, or None while it is down, paused or silent."""
    if not cluster.is_running(node) or cluster.is_paused(node):
        return None
    try:
        return cluster.status(node)
    except (NodeUnreachable, HarnessError):
        return None


def wait_status(cluster: Cluster, node: str, pred: Callable[[Mapping[str, Any]], bool], what: str,
                timeout_s: float) -> dict[str, Any]:
    """Deadline-bounded wait until ``node``'s status satisfies ``pred``; returns that status."""
    seen: dict[str, Any] = {}

    def check() -> bool:
        st = status_or_none(cluster, node)
        if st is not None and pred(st):
            seen.update(st)
            return True
        return False

    cluster.wait_until(check, what=what, timeout_s=timeout_s, poll_s=POLL_S)
    return seen


def try_wait(cluster: Cluster, predicate: Callable[[], bool], what: str, timeout_s: float) -> bool:
    """Like ``cluster.wait_until`` but answers False at the deadline (the caller records UNKNOWN)."""
    try:
        cluster.wait_until(predicate, what=what, timeout_s=timeout_s, poll_s=POLL_S)
        return True
    except WaitTimeout:
        return False


@dataclass
class CommitWatch:
    """Watches a leader's commit index against what the cluster's nodes hold durably.

    Invariant (Raft 5.3/5.4, kuduraft ``PeerMessageQueue::AdvanceQueueWatermark``): whenever the
    leader's ``commit_index`` moved past ``baseline``, a majority of voters hold entry
    ``commit_index`` durably (``durable_index``) and, when ``first_own_index`` is given (the new
    leader's first entry of its term, B14), a majority hold that entry too. Nodes that are down
    contribute the ``durable_index`` they had when they went down (``down``).
    """

    cluster: Cluster
    leader: str
    baseline: int
    first_own_index: int | None = None
    down: dict[str, int] = field(default_factory=dict)
    violations: list[dict[str, Any]] = field(default_factory=list)
    samples: int = 0
    last_durable: dict[str, int] = field(default_factory=dict)

    def check_once(self) -> dict[str, Any] | None:
        """One look; returns the leader's status (None if it does not answer)."""
        st = status_or_none(self.cluster, self.leader)
        if st is None:
            return None
        durable = {self.leader: int(st["durable_index"]), **self.down}
        for node in self.cluster.nodes:
            if node == self.leader or node in self.down:
                continue
            other = status_or_none(self.cluster, node)  # read after the leader: it only grows
            durable[node] = int(other["durable_index"]) if other is not None else -1
        self.samples += 1
        self.last_durable = durable
        commit = int(st["commit_index"])
        if commit <= self.baseline:
            return st
        majority = len(self.cluster.nodes) // 2 + 1
        need = max(commit, self.first_own_index or 0)
        holders = sorted(n for n, d in durable.items() if d >= need)
        if len(holders) < majority:
            self.violations.append({"leader_commit": commit, "needed_index": need,
                                    "durable": durable, "holders": holders,
                                    "leader_term": st["term"], "t": self.cluster.history.now()})
        return st

    def assert_none(self, what: str) -> None:
        assert not self.violations, (
            f"{what}: the leader {self.leader} committed beyond what a majority holds durably "
            f"(first of {len(self.violations)} violations in {self.samples} looks): {self.violations[0]}")


def watch_until(watch: CommitWatch, done: Callable[[Mapping[str, Any]], bool], what: str,
                timeout_s: float) -> bool:
    """Check ``watch`` every poll until ``done(leader_status)``; False at the deadline."""
    def step() -> bool:
        st = watch.check_once()
        return st is not None and done(st)
    return try_wait(watch.cluster, step, what, timeout_s)


def node_flags(cluster: Cluster, node: str, **flags: Any) -> None:
    """Set runtime flags on one node (each a recorded ``flag`` event)."""
    for name, value in flags.items():
        cluster.set_flag(node, name, value)
