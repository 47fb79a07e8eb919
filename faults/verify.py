"""Did a fault bite? Traffic snapshots of links, probes, history scans, and the Verification value.

A fault verifies twice: at injection that it is *in place* (the toxic is listed, the proxy is
disabled and refuses a dial, the paused node stops answering, the flag reads back) — a fault
that is not in place is a FaultError; and at heal that it *bit* (a node sent across the cut:
``faults.bite``; traffic went through the toxic, the crash flag fired, a follower rejected updates). One that was in place but did not
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


@dataclass(frozen=True)
class SourceCounters:
    """One ``/status`` read of a link's source node ``src``, about its traffic to ``dst``.

    ``sent``/``replies``: the leader's direct UpdateConsensus requests to ``dst`` (``requests_sent``
    minus ``proxied_sends``, which go to a proxy node over another link) and the replies it
    processed (``responses_ok + responses_error``); None when ``src`` is not a leader (no per-peer
    counters). ``proxied``: its ``proxied_sends`` to ``dst``. ``forwarded``/``relayed``: on a
    proxy node that feeds only ``dst`` (the spec's topology), the proxied requests it passed on
    and the answers it relayed back; None otherwise."""

    role: str | None
    term: int | None
    sent: int | None = None
    replies: int | None = None
    proxied: int | None = None
    forwarded: int | None = None
    relayed: int | None = None


def _count(mapping: Mapping[str, Any], *keys: str) -> int:
    return sum(int(mapping.get(k) or 0) for k in keys)


def _only_child(cluster: Cluster, src: str, dst: str) -> bool:
    """The spec's topology feeds ``dst``, and nothing else, from ``src`` (so all it forwards goes to dst)."""
    spec = getattr(cluster, "spec", None)
    topology: Mapping[str, str] = getattr(spec, "topology", None) or {}
    return [peer for peer, proxy in topology.items() if proxy == src] == [dst]


def source_counters(cluster: Cluster, src: str, dst: str) -> SourceCounters | None:
    """``src``'s ``/status`` as ``SourceCounters`` for the link ``src->dst`` (None: no answer)."""
    try:
        st = cluster.status(src)
    except (HarnessError, AttributeError):
        return None
    role, term = st.get("role"), st.get("term")
    out = SourceCounters(str(role) if role is not None else None, int(term) if term is not None else None)
    peer = (st.get("peers") or {}).get(dst)
    if role == "LEADER" and isinstance(peer, Mapping):
        c = peer.get("counters") or {}
        proxied = _count(c, "proxied_sends")
        out = SourceCounters(out.role, out.term, _count(c, "requests_sent") - proxied,
                             _count(c, "responses_ok", "responses_error"), proxied)
    proxy = st.get("proxy") or {}
    if isinstance(proxy, Mapping) and _only_child(cluster, src, dst):
        out = SourceCounters(out.role, out.term, out.sent, out.replies, out.proxied,
                             _count(proxy, "received") - _count(proxy, "hops_exhausted", "unknown_dest"),
                             _count(proxy, "success"))
    return out


def _grew(before: int | None, after: int | None) -> int:
    return after - before if before is not None and after is not None and after > before else 0


@dataclass(frozen=True)
class SourceEvidence:
    """``SourceCounters`` of the link ``src->dst`` read once the toxic was in place and at heal."""

    src: str
    dst: str
    before: SourceCounters | None
    after: SourceCounters | None

    def stable_leader(self) -> bool:
        """``src`` led the same term at both reads, so its per-peer counters are one Peer's."""
        b, a = self.before, self.after
        return (b is not None and a is not None and b.role == a.role == "LEADER" and b.term == a.term
                and b.sent is not None and a.sent is not None)

    def crossed(self, streams: Iterable[Stream]) -> list[str]:
        """What ``src`` counted going through the toxic's ``streams`` (empty: nothing or cannot tell)."""
        b, a = self.before, self.after
        if b is None or a is None or b.term != a.term:
            return []
        out = []
        wanted = set(streams)
        if self.stable_leader():
            if Stream.UPSTREAM in wanted and (n := _grew(b.sent, a.sent)):
                out.append(f"{self.src} sent {n} UpdateConsensus requests to {self.dst} across the toxic")
            # Replies to proxied sends come back over another link: count replies only without those.
            if Stream.DOWNSTREAM in wanted and a.proxied == b.proxied and (n := _grew(b.replies, a.replies)):
                out.append(f"{self.src} got {n} UpdateConsensus replies from {self.dst} across the toxic")
        if Stream.UPSTREAM in wanted and (n := _grew(b.forwarded, a.forwarded)):
            out.append(f"{self.src} forwarded {n} proxied requests to {self.dst} across the toxic")
        if Stream.DOWNSTREAM in wanted and (n := _grew(b.relayed, a.relayed)):
            out.append(f"{self.src} relayed {n} answers from {self.dst} across the toxic")
        return out

    def flat(self) -> str:
        """``src``'s counters for ``dst`` (meaningful when ``stable_leader``: they did not move)."""
        a = self.after
        assert a is not None
        return (f"{self.src} led term {a.term} and its counters for {self.dst} did not move "
                f"({a.sent} requests sent, {a.replies} replies)")

    def why_unknown(self) -> str:
        b, a = self.before, self.after
        if b is None or a is None:
            return f"{self.src}'s /status could not be read"
        if b.term != a.term:
            return f"{self.src}'s counters restarted with a new term ({b.term} -> {a.term})"
        return f"{self.src} keeps no per-peer counters"


def flow_verification(before: Traffic | None, after: Traffic | None, streams: Sequence[tuple[str, Stream]],
                      node: SourceEvidence | None = None) -> Verification:
    """A toxic that shapes traffic (latency, bandwidth, ...) bit when traffic went through it.

    Toxiproxy (v2.5 and v2.12) adds a connection's bytes to its counters only when the connection closes,
    and Raft peer connections stay open, so bytes are one witness and the source node's own
    counters (``node``) the other. Nothing moved: vacuous when ``src`` led one term throughout
    (its counters for ``dst`` would have grown); otherwise the harness cannot tell (None).
    Toxiproxy's API shows no open or past connections either, so "never connected" is not told apart."""
    parts, total = [], 0
    if before is not None and after is not None:
        for link, stream in streams:
            attempted, delivered = _delta(before, after, (link, stream))
            total += attempted
            parts.append(f"{link} {stream.value}: {attempted} B in, {delivered} B out")
    bytes_text = "; ".join(parts)
    crossed = node.crossed(s for _, s in streams) if node is not None else []
    if total > 0 or crossed:
        return Verification(True, "; ".join(crossed + ([bytes_text] if total > 0 else [])))
    if node is not None and node.stable_leader():
        return Verification(False, "no traffic through the toxic: " + "; ".join([node.flat()] + parts))
    if before is None or after is None:
        return Verification(None, "toxiproxy exposes no traffic metrics"
                            + (f"; {node.why_unknown()}" if node is not None else ""))
    why = node.why_unknown() if node is not None else "the source node was not asked"
    return Verification(None, f"cannot tell: Toxiproxy counts bytes when a connection closes and {why} ("
                        + bytes_text + ")")


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
