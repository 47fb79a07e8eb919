"""Did a cut bite? Evidence recorded at injection and at heal, and a pure judgement over it.

A cut (disabled proxies or ``timeout`` toxics on some streams) bit when some node *tried to send*
across it while it was in place. Toxiproxy (v2.5 and v2.12 alike: ``link.go`` ``ToxicLink.read``
and ``write`` add a connection's bytes to the metrics only once ``io.Copy`` returns, i.e. when the
connection closes) cannot say that while Raft's peer connections stay open, so the judgement rests
on what the nodes count themselves, read from ``/status`` just before the cut goes in, once it is in
place, and again just before it is healed:

- a leader's per-peer counters (``requests_sent`` minus ``proxied_sends``, replies processed,
  ``request_pending``, ``next_hop``): its direct UpdateConsensus traffic to that peer. In kuduraft
  ``Peer::Init`` (``src/kudu/consensus/consensus_peers.cc``) starts a heartbeater that calls
  ``SignalRequest`` every ``raft_heartbeat_interval_ms`` whatever the peer's health, so a leader
  cut off from a peer keeps trying;
- ``pre_elections_started`` / ``elections_started``: a (pre-)election asks every other voter for a
  vote (``LeaderElection::Run``, ``src/kudu/consensus/leader_election.cc``), across the cut too;
  every node of our clusters is a voter (``nodes/config.py`` ``ClusterConfig.voters``);
- a proxy node's ``proxy.received``: what it forwarded (to ``dst`` when the topology feeds only
  ``dst`` from it);
- a follower sends no request of its own (it only answers), so a node that followed at both reads
  and started no election and forwarded nothing sent nothing.

Toxiproxy's state (every edit still in place at heal) and the byte deltas over the window are
recorded too; the bytes are shown, never decisive (see above). The evidence is a JSON object on
the ``heal`` event (``bite``), so ``judge_cut`` can be re-run from the history alone.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from faults.verify import Traffic, Verification
from harness.backend import CLIENT, LinkId
from harness.errors import HarnessError
from harness.history import EventKind, NodeEventType
from harness.toxi import Stream

if TYPE_CHECKING:
    from harness.cluster import Cluster

Snapshot = dict[str, Any]
SENT, NONE, UNKNOWN = "sent", "none", "unknown"
_RESTART_EVENTS = {NodeEventType.EXIT.value, NodeEventType.START.value, NodeEventType.RESTART.value,
                   NodeEventType.KILL.value, NodeEventType.TERMINATE.value}
_MONOTONIC = ("pre_elections", "elections", "updates_received", "proxy_received")


def _int(mapping: Mapping[str, Any], key: str) -> int:
    return int(mapping.get(key) or 0)


def snapshot(status: Mapping[str, Any] | None) -> Snapshot | None:
    """The part of one ``/status`` that says what a node sent (docs/node-api.md); None: no answer."""
    if status is None:
        return None
    proxy = status.get("proxy") or {}
    peers: dict[str, Any] = {}
    for peer, view in (status.get("peers") or {}).items():
        c = view.get("counters") or {}
        peers[peer] = {"sent": _int(c, "requests_sent"), "proxied": _int(c, "proxied_sends"),
                       "replies": _int(c, "responses_ok") + _int(c, "responses_error"),
                       "errors": _int(c, "responses_error"), "failed_attempts": view.get("failed_attempts"),
                       "pending": bool(view.get("request_pending")), "hop": view.get("next_hop"),
                       "status": view.get("status"), "contact_age_ms": view.get("last_contact_age_ms")}
    return {"role": status.get("role"), "term": status.get("term"),
            "pre_elections": _int(status, "pre_elections_started"), "elections": _int(status, "elections_started"),
            "updates_received": _int(status, "updates_received"),
            "leader_contact_age_ms": status.get("last_leader_contact_age_ms"),
            "proxy_received": _int(proxy, "received") - _int(proxy, "hops_exhausted") - _int(proxy, "unknown_dest"),
            "peers": peers}


def read_snapshots(cluster: Cluster) -> dict[str, Snapshot | None]:
    """Every node's ``snapshot`` now (None for one that does not answer)."""
    try:
        statuses: Mapping[str, Any] = cluster.statuses()
    except (HarnessError, AttributeError):
        statuses = {}
    out: dict[str, Snapshot | None] = {}
    for node in cluster.nodes:
        status = statuses.get(node)
        if status is None and node not in statuses:
            try:
                status = cluster.status(node)
            except (HarnessError, AttributeError):
                status = None
        out[node] = snapshot(status)
    return out


def feeds(cluster: Cluster) -> dict[str, list[str]]:
    """The spec's proxy topology as ``{proxy node: [peers it feeds]}``."""
    topology: Mapping[str, str] = getattr(getattr(cluster, "spec", None), "topology", None) or {}
    out: dict[str, list[str]] = {}
    for peer, proxy in topology.items():
        out.setdefault(proxy, []).append(peer)
    return out


def restarted_since(cluster: Cluster, t: float) -> list[str]:
    """Nodes whose process exited, was killed or (re)started since ``t`` (their counters restarted)."""
    out = set()
    for e in cluster.history.events():
        if (float(e.get("t", 0.0)) >= t and e.get("kind") == EventKind.NODE.value
                and e.get("event") in _RESTART_EVENTS and e.get("node")):
            out.add(str(e["node"]))
    return sorted(out)


def byte_deltas(before: Traffic | None, after: Traffic | None, link: str) -> dict[str, list[int]] | None:
    """``{stream: [bytes in, bytes out]}`` Toxiproxy added for ``link`` over the window (None: no metrics)."""
    if before is None or after is None:
        return None
    out = {}
    for stream in Stream:
        b, a = before.get((link, stream), (0, 0)), after.get((link, stream), (0, 0))
        out[stream.value] = [a[0] - b[0], a[1] - b[1]]
    return out


def _direct(peer: Mapping[str, Any]) -> int:
    return int(peer["sent"]) - int(peer["proxied"])


def _leader_attempts(x: str, y: str, b: Snapshot, a: Snapshot, window_s: float) -> tuple[str, str]:
    """``x`` led one term at both reads: its counters for ``y`` are one Peer's over the window."""
    pb, pa = b["peers"].get(y), a["peers"].get(y)
    if pb is None or pa is None:
        return UNKNOWN, f"{x} led term {a['term']} but tracked no peer {y}"
    sent = _direct(pa) - _direct(pb)
    if sent > 0:
        return SENT, f"{x} (leader, term {a['term']}) sent {y} {sent} UpdateConsensus request(s)"
    replies = int(pa["replies"]) - int(pb["replies"])
    if pb["pending"] and pb.get("hop") in (y, None) and pa["proxied"] == pb["proxied"]:
        if replies == 0:
            return SENT, f"{x}'s request to {y}, in flight when the cut went in, got no reply in {window_s:.1f} s"
        if int(pa["errors"]) > int(pb["errors"]):
            return SENT, f"{x}'s request to {y}, in flight when the cut went in, failed"
    if pa["proxied"] > pb["proxied"]:
        return NONE, f"{x} (leader) reached {y} only through a proxy node in {window_s:.1f} s"
    return NONE, f"{x} led term {a['term']} and sent {y} nothing in {window_s:.1f} s"


def _failed_at_the_cut(x: str, y: str, pre: Snapshot | None, b: Snapshot) -> str | None:
    """``x`` led the same term before the cut and once it was in place, and a request to ``y``
    failed in between: the cut broke it (a refused dial fails within milliseconds, before the
    read that follows the injection)."""
    if pre is None or pre.get("role") != "LEADER" or pre.get("term") != b["term"]:
        return None
    p0, p1 = (pre.get("peers") or {}).get(y), b["peers"].get(y)
    if p0 is None or p1 is None or int(p1["errors"]) <= int(p0["errors"]) or p1["proxied"] != p0["proxied"]:
        return None
    return f"{x}'s request(s) to {y} failed as the cut went in ({int(p1['errors']) - int(p0['errors'])} error(s))"


def attempts(x: str, y: str, b: Snapshot | None, a: Snapshot | None, window_s: float,
             fed: Sequence[str], restarted: Iterable[str] = (), pre: Snapshot | None = None) -> tuple[str, str]:
    """Whether node ``x`` sent ``y`` anything over ``x->y`` between the two reads ``b`` and ``a``:
    ``sent``, ``none`` (the evidence shows it sent nothing) or ``unknown``, with the reason.
    ``fed``: the peers the topology feeds from ``x`` (a proxy node forwards to them). ``pre``:
    ``x`` read just before the cut went in (a request that failed in between counts)."""
    if x in set(restarted):
        return UNKNOWN, f"{x} exited or restarted during the cut (its counters restarted)"
    if b is None or a is None:
        return UNKNOWN, f"{x}'s /status could not be read at {'injection' if b is None else 'heal'}"
    if any(_int(a, k) < _int(b, k) for k in _MONOTONIC):
        return UNKNOWN, f"{x}'s counters went backwards (it restarted)"
    votes = (_int(a, "pre_elections") - _int(b, "pre_elections")) + (_int(a, "elections") - _int(b, "elections"))
    if votes > 0:
        return SENT, f"{x} started {votes} (pre-)election(s), each asking {y} for a vote"
    if b["role"] == a["role"] == "LEADER" and b["term"] == a["term"]:
        verdict = _leader_attempts(x, y, b, a, window_s)
        if verdict[0] != NONE:
            return verdict
        if (failed := _failed_at_the_cut(x, y, pre, b)) is not None:
            return SENT, failed
    elif "LEADER" in (b["role"], a["role"]):
        # Led at one read only: a new term started its peers' counters afresh (B5).
        if a["role"] == "LEADER" and (pa := a["peers"].get(y)) is not None and _direct(pa) > 0:
            return SENT, f"{x} (leader from term {a['term']}) sent {y} {_direct(pa)} UpdateConsensus request(s)"
        return UNKNOWN, (f"{x} was leader at {'injection' if b['role'] == 'LEADER' else 'heal'} only "
                         f"(term {b['term']} -> {a['term']}): what it sent meanwhile is not counted")
    elif "CANDIDATE" in (b["role"], a["role"]):
        return UNKNOWN, f"{x} was a candidate: its vote requests may have been in flight"
    else:
        verdict = NONE, f"{x} followed throughout and started no election"
    forwarded = _int(a, "proxy_received") - _int(b, "proxy_received")
    if y in fed and forwarded > 0:
        if list(fed) == [y]:
            return SENT, f"{x} forwarded {forwarded} proxied request(s) to {y}"
        return UNKNOWN, f"{x} forwarded {forwarded} proxied request(s) to one of {', '.join(fed)}"
    return verdict


def _stream_text(cut: Mapping[str, Any]) -> str:
    return "disabled" if cut.get("disabled") else "cut " + "+".join(cut.get("streams") or [])


def judge_cut(evidence: Mapping[str, Any]) -> Verification:
    """The bite verdict of one cut from its recorded ``evidence`` (``collect``'s object); pure.

    Bit (True) when the source of some cut link sent across it while the cut was in place (a
    dropped request, or a request whose reply the cut dropped: a link's replies flow only in
    answer to its source's requests). Did not bite (False) only when every cut link's source is
    shown to have sent nothing. Otherwise, or when the cut was not whole at heal, None with why."""
    links: Mapping[str, Mapping[str, Any]] = evidence.get("links") or {}
    if not links:
        return Verification(None, "cannot tell: no cut link recorded")
    broken = list(evidence.get("not_in_place") or [])
    if broken:
        return Verification(None, "cannot tell: the cut was not whole at heal (" + "; ".join(broken) + ")")
    window_s = float(evidence.get("window_s") or 0.0)
    nodes: Mapping[str, Mapping[str, Any]] = evidence.get("nodes") or {}
    fed: Mapping[str, Sequence[str]] = evidence.get("feeds") or {}
    restarted = evidence.get("restarted") or []
    found: dict[str, list[str]] = {SENT: [], NONE: [], UNKNOWN: []}
    for name, cut in sorted(links.items()):
        link = LinkId.parse(name)
        if link.is_client:
            found[UNKNOWN].append(f"{name}: the client's traffic is not counted by a node")
            continue
        reads = nodes.get(link.src) or {}
        kind, why = attempts(link.src, link.dst, reads.get("inject"), reads.get("heal"), window_s,
                             fed.get(link.src, ()), restarted, reads.get("before_cut"))
        found[kind].append(f"{why} ({name} {_stream_text(cut)})")
    if found[SENT]:  # a leader's sends first: the most direct evidence
        return Verification(True, _listed(sorted(found[SENT], key=lambda why: "(leader" not in why)))
    if found[UNKNOWN]:
        return Verification(None, "cannot tell: " + _listed(found[UNKNOWN]))
    return Verification(False, f"nobody sent across the cut in {window_s:.1f} s: " + _listed(found[NONE]))


def _listed(items: Sequence[str], most: int = 4) -> str:
    return "; ".join(items[:most]) + (f"; ... ({len(items) - most} more)" if len(items) > most else "")


class CutWatch:
    """Reads the nodes once a cut is in place (``__init__``; ``before_cut``: the read taken just
    before it went in) and again before it is healed (``finish``), and assembles the evidence
    ``judge_cut`` reads."""

    def __init__(self, cluster: Cluster, before_cut: Mapping[str, Snapshot | None] | None = None) -> None:
        self.t0 = cluster.history.now()
        self.before = read_snapshots(cluster)
        self.before_cut = dict(before_cut or {})

    def finish(self, cluster: Cluster, dropped: Sequence[tuple[str, Stream]], disabled: Sequence[str],
               not_in_place: Sequence[str], baseline: Traffic | None, after: Traffic | None) -> dict[str, Any]:
        """The ``bite`` object of the heal event (JSON): window, cut links, both reads, restarts."""
        now = read_snapshots(cluster)
        window_s = cluster.history.now() - self.t0
        links: dict[str, dict[str, Any]] = {}
        for link, stream in dropped:
            links.setdefault(link, {"streams": []})["streams"].append(stream.value)
        for link in disabled:
            links.setdefault(link, {"streams": []})["disabled"] = True
        for name, cut in links.items():
            cut["bytes"] = byte_deltas(baseline, after, name)
        involved = sorted({LinkId.parse(name).src for name in links} - {CLIENT})
        return {"window_s": round(window_s, 3), "links": links, "not_in_place": list(not_in_place),
                "nodes": {n: {"before_cut": self.before_cut.get(n), "inject": self.before.get(n),
                              "heal": now.get(n)} for n in involved},
                "feeds": feeds(cluster), "restarted": restarted_since(cluster, self.t0)}
