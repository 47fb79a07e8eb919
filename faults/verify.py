"""Did a fault bite? Traffic snapshots of links, probes, history scans, and the Verification value.

A fault verifies twice: at injection that it is *in place* (the toxic is listed, the proxy is
disabled and refuses a dial, the paused node stops answering, the flag reads back) — a fault
that is not in place is a FaultError; and at heal that it *bit* (traffic crossed the cut and was
dropped, the crash flag fired, a follower rejected updates). One that was in place but did not
bite is *vacuous*: recorded on its ``heal`` event (``vacuous: true`` and the evidence) and shown
in the reports, never an error. ``vacuous: null`` means the harness could not tell.
"""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from harness.errors import HarnessError
from harness.history import EventKind, NodeEventType
from harness.toxi import Stream

if TYPE_CHECKING:
    from harness.cluster import Cluster

Traffic = dict[tuple[str, Stream], tuple[int, int]]
PROBE_TIMEOUT_S = 1.0
INJECTED_CRASH_EXIT = 85


@dataclass(frozen=True)
class Verification:
    """``bit``: True it took effect, False it was vacuous, None the harness could not tell."""

    bit: bool | None
    evidence: str

    def heal_fields(self) -> dict[str, Any]:
        return {"vacuous": None if self.bit is None else not self.bit, "evidence": self.evidence}


UNVERIFIED = Verification(None, "not verified")


def traffic(cluster: Cluster, links: Iterable[str]) -> Traffic | None:
    """Bytes so far on the streams of ``links`` (None when the server exposes no metrics)."""
    wanted = set(links)
    try:
        first = next(iter(cluster.links()), None)
        if first is None:
            return None
        everything = first.server_traffic()
    except (HarnessError, AttributeError):
        return None
    return {key: value for key, value in everything.items() if key[0] in wanted}


def _delta(before: Traffic, after: Traffic, key: tuple[str, Stream]) -> tuple[int, int]:
    b, a = before.get(key, (0, 0)), after.get(key, (0, 0))
    return a[0] - b[0], a[1] - b[1]


def cut_verification(before: Traffic | None, after: Traffic | None, dropped: Sequence[tuple[str, Stream]],
                     disabled: Sequence[str]) -> Verification:
    """A cut bit when some dropping stream received bytes it did not pass on, or a disabled link
    had carried traffic (so someone lost a connection it was using). Toxiproxy adds a connection's
    bytes to its counters only when the connection closes; disabling a proxy closes its
    connections, so their bytes show up *after* the cut: both are counted."""
    if before is None or after is None:
        return Verification(None, "toxiproxy exposes no traffic metrics")
    hits: list[str] = []
    quiet: list[str] = []
    for link, stream in dropped:
        attempted, delivered = _delta(before, after, (link, stream))
        (hits if attempted > 0 and delivered == 0 else quiet).append(
            f"{link} {stream.value}: {attempted} B in, {delivered} B out")
    for link in disabled:
        used = sum(before.get((link, s), (0, 0))[1] + _delta(before, after, (link, s))[1] for s in Stream)
        (hits if used > 0 else quiet).append(f"{link} disabled after carrying {used} B")
    if hits:
        return Verification(True, "; ".join(hits[:4]) + (" ..." if len(hits) > 4 else ""))
    return Verification(False, "no traffic crossed the cut: " + ("; ".join(quiet[:4]) or "no links"))


def flow_verification(before: Traffic | None, after: Traffic | None,
                      streams: Sequence[tuple[str, Stream]]) -> Verification:
    """A toxic that shapes traffic (latency, bandwidth, ...) bit when bytes went through it."""
    if before is None or after is None:
        return Verification(None, "toxiproxy exposes no traffic metrics")
    parts = []
    total = 0
    for link, stream in streams:
        attempted, delivered = _delta(before, after, (link, stream))
        total += attempted
        parts.append(f"{link} {stream.value}: {attempted} B in, {delivered} B out")
    return Verification(total > 0, "; ".join(parts) if total > 0 else "no traffic through the toxic: "
                        + "; ".join(parts))


def dial_refused(listen: str) -> bool | None:
    """Whether a TCP dial to a loopback ``host:port`` is refused (None: not loopback, not probed)."""
    host, _, port = listen.rpartition(":")
    if host not in ("127.0.0.1", "localhost", "::1"):
        return None
    try:
        with contextlib.closing(socket.create_connection((host, int(port)), timeout=PROBE_TIMEOUT_S)):
            return False
    except ConnectionRefusedError:
        return True
    except OSError:
        return None


def node_silent(cluster: Cluster, node_id: str) -> bool | None:
    """The node does not answer ``/health`` (a paused or dead process); None: cannot ask."""
    ask = getattr(cluster, "node", None)
    if ask is None:
        return None
    try:
        ask(node_id).health()
    except HarnessError:
        return True
    return False


def events_since(cluster: Cluster, t: float) -> list[Mapping[str, Any]]:
    return [e for e in cluster.history.events() if float(e.get("t", 0.0)) >= t]


def crash_verification(cluster: Cluster, since_t: float, draws_before: Mapping[str, int],
                       flag: str) -> Verification:
    """A crash fraction bit when a node exited 85 since ``since_t`` (else: how many draws it made)."""
    events = events_since(cluster, since_t)
    exits = [e.get("node") for e in events if e.get("kind") == EventKind.NODE.value
             and e.get("event") == NodeEventType.EXIT.value and e.get("code") == INJECTED_CRASH_EXIT]
    if exits:
        return Verification(True, f"exit 85 on {', '.join(map(str, exits))}")
    draws = 0
    for node_id, st in cluster.statuses().items():
        if st is not None:
            now = int((st.get("crash_flag_draws") or {}).get(flag, 0))
            draws += max(0, now - draws_before.get(node_id, 0))
    return Verification(False, f"no exit 85; {draws} draw(s) of {flag} without a hit")


def crash_draws(cluster: Cluster, flag: str) -> dict[str, int]:
    return {n: int((st.get("crash_flag_draws") or {}).get(flag, 0))
            for n, st in cluster.statuses().items() if st is not None}


def rejected_counts(cluster: Cluster, nodes: Iterable[str]) -> dict[str, int]:
    statuses = cluster.statuses()
    return {n: int(st.get("updates_rejected", 0)) for n in nodes if (st := statuses.get(n)) is not None}


def rejection_verification(cluster: Cluster, since_t: float, before: Mapping[str, int]) -> Verification:
    """A follower fault bit when a hit follower rejected updates, or a leader saw it answer
    CANNOT_PREPARE / REMOTE_ERROR (observer samples since ``since_t``)."""
    after = rejected_counts(cluster, before)
    grew = {n: after[n] - before[n] for n in before if n in after and after[n] > before[n]}
    if grew:
        return Verification(True, "updates rejected: " + ", ".join(f"{n} +{d}" for n, d in grew.items()))
    for e in events_since(cluster, since_t):
        st = e.get("status") if e.get("kind") == EventKind.SAMPLE.value else None
        for peer, view in ((st or {}).get("peers") or {}).items():
            if peer in before and view.get("status") in ("CANNOT_PREPARE", "REMOTE_ERROR"):
                return Verification(True, f"leader {e.get('node')} saw {peer} answer {view['status']}")
    return Verification(False, "no update was rejected by the hit node(s)")


def progress_verification(cluster: Cluster, before: Mapping[str, int]) -> Verification:
    """A WAL-latency fault bit when a hit node appended (its last index moved) while it was on."""
    statuses = cluster.statuses()
    moved = {n: int(st.get("last_index", 0)) - before[n] for n in before
             if (st := statuses.get(n)) is not None and int(st.get("last_index", 0)) > before[n]}
    if moved:
        return Verification(True, "WAL appends under latency: " + ", ".join(f"{n} +{d}" for n, d in moved.items()))
    return Verification(False, "no WAL append on the hit node(s) while the latency was on")


def last_indexes(cluster: Cluster, nodes: Iterable[str]) -> dict[str, int]:
    statuses = cluster.statuses()
    return {n: int(st.get("last_index", 0)) for n in nodes if (st := statuses.get(n)) is not None}
