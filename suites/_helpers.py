"""Suite helpers: leader status snapshots, measured windows, per-peer counter deltas, acked markers,
and the nodes' own traces.

Everything here uses only the Cluster's public verbs (``status``, ``wait_until``, ``history``,
``node``). Windows are measured on the history's clock with a deadline-bounded wait, and every
snapshot keeps the clock before and after its HTTP call, so bounds can use the *outer* elapsed time
(for "at most" checks) and the *inner* one (for "at least" checks).

A bound on *when the node did something* (the next request right after a reply, a request pending
for the whole RPC timeout) is not measured that way: the harness's own scheduling delay would land
in it. It is computed from the node's trace (``trace`` events in the history, ``GET /events`` on
the node): two timestamps the node took on its own clock. Harness polling only decides when to
look (``wait_trace``).
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from harness.checkers.recovery import MIN_OK_BEFORE
from harness.cluster import Cluster
from harness.history import EventKind, OpFn
from harness.history_views import client_ops
from harness.nodeclient import KvResult, Outcome

# Process ids for the suites' own marker operations; far above the workload's (which count from 0).
MARKER_PROCESS_BASE = 1_000_000
# Trace timestamps are rounded to the microsecond and asyncio may run a timer up to its clock
# resolution early: a node-clock difference can read this much short of the true one.
TRACE_RESOLUTION_S = 1e-5


# ---- snapshots and windows ----------------------------------------------------------------------


@dataclass(frozen=True)
class Snap:
    """One node's ``/status`` with the history-clock time just before and just after asking."""

    node: str
    t_before: float
    t_after: float
    status: Mapping[str, Any]

    def peer(self, uuid: str) -> Mapping[str, Any]:
        peers = self.status.get("peers") or {}
        assert uuid in peers, f"{self.node} tracks no peer {uuid} (role {self.status.get('role')})"
        return peers[uuid]

    def counter(self, uuid: str, name: str) -> int:
        return int(self.peer(uuid)["counters"][name])


def snap(cluster: Cluster, node: str) -> Snap:
    clock = cluster.history.now
    before = clock()
    status = cluster.status(node)
    return Snap(node, before, clock(), status)


@dataclass(frozen=True)
class Window:
    """Two snapshots of the same node; ``inner_s`` <= true elapsed time <= ``outer_s``."""

    before: Snap
    after: Snap

    @property
    def inner_s(self) -> float:
        return self.after.t_before - self.before.t_after

    @property
    def outer_s(self) -> float:
        return self.after.t_after - self.before.t_before

    def delta(self, peer: str, counter: str) -> int:
        return self.after.counter(peer, counter) - self.before.counter(peer, counter)

    def deltas(self, peer: str) -> dict[str, int]:
        names = self.after.peer(peer)["counters"]
        return {n: self.delta(peer, n) for n in names}

    def field_delta(self, name: str) -> int:
        """Delta of a top-level integer field (``commit_index``, ``pre_elections_started``, ...)."""
        return int(self.after.status[name]) - int(self.before.status[name])

    def assert_same_leadership(self) -> None:
        """Per-peer counters restart on every election (B5): a window is only meaningful when
        the node led in one term throughout."""
        b, a = self.before.status, self.after.status
        assert b["role"] == a["role"] == "LEADER" and b["term"] == a["term"], (
            f"{self.before.node} did not lead one term through the window "
            f"({b['role']}/t{b['term']} -> {a['role']}/t{a['term']}); counters are not comparable")


def wait_for_clock(cluster: Cluster, until_t: float, what: str) -> None:
    """Deadline-bounded wait until the history clock reaches ``until_t`` (a measured window)."""
    remaining = max(0.0, until_t - cluster.history.now())
    cluster.wait_until(lambda: cluster.history.now() >= until_t, what=what,
                       timeout_s=remaining + 5.0, poll_s=0.01)


def measure(cluster: Cluster, node: str, window_s: float, what: str) -> Window:
    """Snapshot ``node``, let ``window_s`` pass, snapshot again."""
    before = snap(cluster, node)
    wait_for_clock(cluster, before.t_after + window_s, f"a {window_s:.2f} s window ({what})")
    return Window(before, snap(cluster, node))


def peer_view(cluster: Cluster, leader: str, peer: str) -> Mapping[str, Any]:
    """The leader's current entry for ``peer`` (empty mapping if it no longer leads)."""
    return (cluster.status(leader).get("peers") or {}).get(peer, {})


def peer_counter(cluster: Cluster, leader: str, peer: str, name: str) -> int:
    view = peer_view(cluster, leader, peer)
    return int(view["counters"][name]) if view else -1


def wait_failed_attempt(cluster: Cluster, leader: str, peer: str, timeout_s: float,
                        what: str | None = None) -> None:
    """Deadline-bounded wait until ``leader`` counts a failed attempt for ``peer`` (its entry's
    ``failed_attempts`` > 0); ``what`` names the wait in the timeout error."""
    cluster.wait_until(lambda: peer_view(cluster, leader, peer).get("failed_attempts", 0) > 0,
                       what=what or f"{leader} to count a failed attempt for {peer}", timeout_s=timeout_s)


# ---- derived bounds -----------------------------------------------------------------------------


def heartbeat_count_bounds(cluster: Cluster, window: Window) -> tuple[float, float]:
    """[W/(1.25P) - 1, W/(0.75P) + 1]: how many heartbeat-driven sends fit a window (B2, B6)."""
    lo_period, hi_period = cluster.timing.jitter_window_s
    return window.inner_s / hi_period - 1, window.outer_s / lo_period + 1


def heartbeats(cluster: Cluster, n: float) -> float:
    """``n`` worst-case (1.25P) heartbeat periods, in seconds."""
    return n * cluster.timing.jitter_window_s[1]


# ---- operations the suites record themselves ----------------------------------------------------


_processes = itertools.count(MARKER_PROCESS_BASE)


def recorded_op(cluster: Cluster, node: str, f: OpFn, key: str, value: Any = None) -> KvResult:
    """One KV operation sent by the suite itself to ``node`` (through its client link) and
    recorded in the run's history like a workload operation, under a fresh process id."""
    history = cluster.history
    process = next(_processes)
    history.invoke(process, f, key, value, node)
    client = cluster.node(node)
    timeout_s = cluster.timing.client_timeout_s
    result = client.put(key, value, timeout_s) if f is OpFn.WRITE else client.get(key, timeout_s)
    kind = EventKind(result.outcome.value)
    if f is OpFn.READ:
        value = result.body.get("value") if kind is EventKind.OK else None
    history.complete(kind, process, f, key, value, node, result.latency_s, result.error)
    return result


class Markers:
    """Unique-key writes the suite makes itself and later reads back (acknowledged => durable).

    Each write is recorded in the run's history like a workload operation (so the durability
    checker sees it too), under process ids no workload uses.
    """

    def __init__(self, cluster: Cluster, prefix: str) -> None:
        self.cluster = cluster
        self.prefix = prefix
        self.acked: dict[str, str] = {}
        self._seq = 0

    def write(self, count: int = 1, timeout_s: float | None = None) -> list[str]:
        """Write ``count`` fresh keys, each retried (as new recorded ops) until acknowledged."""
        keys = []
        for _ in range(count):
            self._seq += 1
            key, value = f"{self.prefix}-{self._seq}", f"{self.prefix}-v{self._seq}"
            self.cluster.wait_until(functools.partial(self._try_put, key, value),
                                    what=f"an acknowledged write of {key}",
                                    timeout_s=timeout_s or self._bound_s(), poll_s=0.05)
            keys.append(key)
        return keys

    def _bound_s(self) -> float:
        timing = self.cluster.timing
        return timing.new_leader_within_s() + 2 * timing.client_timeout_s

    def _leader_or_any(self) -> str:
        return self.cluster.leader() or self.cluster.nodes[0]

    def _try_put(self, key: str, value: str) -> bool:
        result = recorded_op(self.cluster, self._leader_or_any(), OpFn.WRITE, key, value)
        if result.outcome is Outcome.OK:
            self.acked[key] = value
            return True
        return False

    def read(self, key: str) -> Any:
        """A linearizable read through the current leader (recorded); retried until it answers."""
        found: dict[str, Any] = {}

        def attempt() -> bool:
            result = recorded_op(self.cluster, self._leader_or_any(), OpFn.READ, key)
            if result.outcome is Outcome.OK:
                found["value"] = result.body.get("value")
                return True
            return False

        self.cluster.wait_until(attempt, what=f"a read of {key}", timeout_s=self._bound_s())
        return found["value"]

    def assert_all_durable(self, keys: Iterable[str] | None = None) -> None:
        """Every acknowledged marker reads back with the value written (nothing acked is lost)."""
        lost = {}
        for key in keys if keys is not None else list(self.acked):
            got = self.read(key)
            if got != self.acked[key]:
                lost[key] = (self.acked[key], got)
        assert not lost, f"acknowledged writes lost or changed (key: (acked, read)): {lost}"


# ---- history views ------------------------------------------------------------------------------


def node_exits(cluster: Cluster, code: int | None = None, since_t: float = 0.0) -> list[dict[str, Any]]:
    """``node``/``exit`` events (optionally only with exit ``code``) recorded after ``since_t``."""
    return [e for e in cluster.history.events()
            if e["kind"] == "node" and e.get("event") == "exit" and e["t"] >= since_t
            and (code is None or e.get("code") == code)]


def samples_of(cluster: Cluster, node: str, since_t: float = 0.0,
               until_t: float | None = None) -> list[dict[str, Any]]:
    """Observer samples of ``node`` (status may be None) between the two times."""
    return [e for e in cluster.history.events()
            if e["kind"] == "sample" and e["node"] == node and e["t"] >= since_t
            and (until_t is None or e["t"] <= until_t)]


OBSERVER_SLACK_S = 10.0
"""Extra time the harness's observer may need to record a sample on a loaded machine."""


def wait_sampled(cluster: Cluster, node: str, after_t: float | None = None) -> None:
    """Wait until the observer has recorded a sample of ``node`` taken after ``after_t`` (default:
    now), so a checker run on the history now sees the state up to that moment."""
    start = cluster.history.now() if after_t is None else after_t
    # The deadline bounds the harness's own observer thread, not the node: under a CPU hog one
    # /status round trip took longer than 4 heartbeats (stability run, seed 1738087469), so it is
    # generous; a node that is up answers in milliseconds when it gets the CPU.
    cluster.wait_until(lambda: any(s["status"] is not None for s in samples_of(cluster, node, start)),
                       what=f"an observer sample of {node}",
                       timeout_s=heartbeats(cluster, 4) + OBSERVER_SLACK_S)




def ok_ops_since(cluster: Cluster, since_t: float, writes_only: bool = False) -> int:
    """Acknowledged client operations (or only write-like ones) *invoked* at or after ``since_t``:
    the recovery checker counts a write after a heal only when it was invoked after it, so an op
    that was in flight across the heal and completed after it does not count here either."""
    return sum(1 for op in client_ops(cluster.history.events())
               if op.ok and not op.final and op.invoke_t >= since_t and (not writes_only or op.is_write))


def wait_ok_ops(cluster: Cluster, count: int = MIN_OK_BEFORE, since_t: float | None = None,
                what: str = "acknowledged writes") -> None:
    """Wait for ``count`` acknowledged write-like operations after ``since_t`` (default: now),
    e.g. before a fault and after healing, so the checkers can tell the run exercised the system
    (the recovery checker wants successful operations before the fault and a write after it)."""
    start = cluster.history.now() if since_t is None else since_t
    timing = cluster.timing
    cluster.wait_until(lambda: ok_ops_since(cluster, start, writes_only=True) >= count,
                       what=f"{count} {what}",
                       timeout_s=timing.new_leader_within_s() + 2 * timing.client_timeout_s)


# ---- the nodes' own traces (node clock) ---------------------------------------------------------


def traces(cluster: Cluster, node: str, event: str | None = None, peer: str | None = None,
           term: int | None = None) -> list[dict[str, Any]]:
    """``node``'s trace events recorded so far (optionally one ``event``, ``peer``, ``term``), in the
    node's sequence order, from its latest process only (a restart starts a new ``boot``)."""
    mine = [e for e in cluster.history.events() if e["kind"] == "trace" and e["node"] == node]
    if not mine:
        return []
    boot = mine[-1]["boot"]
    return sorted((e for e in mine if e["boot"] == boot
                   and (event is None or e["event"] == event)
                   and (peer is None or e.get("peer") == peer)
                   and (term is None or e.get("term") == term)), key=lambda e: e["seq"])


def wait_trace(cluster: Cluster, node: str, found: Callable[[list[dict[str, Any]]], Any],
               what: str, timeout_s: float) -> Any:
    """Wait until ``found(traces(cluster, node))`` returns something truthy and return it. Polling
    only decides when the history holds the node's events; what they say is on the node's clock.
    ``timeout_s`` is when the node should have acted; the observer's copy of its events may lag
    by up to OBSERVER_SLACK_S more, and callers check the bound itself on the node's timestamps."""
    result: dict[str, Any] = {}

    def check() -> bool:
        value = found(traces(cluster, node))
        if value:
            result["v"] = value
            return True
        return False

    cluster.wait_until(check, what=f"{node}'s trace to show {what}", timeout_s=timeout_s + OBSERVER_SLACK_S,
                       poll_s=0.05)
    return result["v"]


def exchanges(events: list[dict[str, Any]], peer: str, term: int) -> list[tuple[dict[str, Any], dict[str, Any] | None]]:
    """(request, its reply or None while pending) pairs of the leader's Peer for ``peer`` in ``term``."""
    requests = [e for e in events if e["event"] == "request" and e.get("peer") == peer and e["term"] == term]
    replies = {e["req"]: e for e in events if e["event"] == "reply" and e.get("peer") == peer
               and e["term"] == term}
    return [(r, replies.get(r["req"])) for r in requests]
