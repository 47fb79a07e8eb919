"""The ends and streams of one directed link: ``Direction`` (which streams) and ``Endpoints`` (src/dst targets).

Shared by the link faults of ``faults.network`` (the suites' ``partition``/``link_latency``) and
``faults.toxics`` (the catalog's toxics), so both resolve and record a link the same way.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Mapping, Sequence
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from faults.base import as_target, check_known
from harness.backend import LinkId
from harness.errors import FaultError
from harness.fault import Target, TargetKind, nemesis_rng
from harness.toxi import Stream

if TYPE_CHECKING:
    from harness.cluster import Cluster


class Direction(StrEnum):
    """Which streams of a link a toxic acts on: ``requests`` = upstream, ``replies`` = downstream."""

    BOTH = "both"
    REQUESTS = "requests"
    REPLIES = "replies"

    @property
    def streams(self) -> tuple[Stream, ...]:
        if self is Direction.REQUESTS:
            return (Stream.UPSTREAM,)
        if self is Direction.REPLIES:
            return (Stream.DOWNSTREAM,)
        return (Stream.UPSTREAM, Stream.DOWNSTREAM)


def one_node(target: Target, statuses: Mapping[str, Any], nodes: Sequence[str], rng: random.Random,
             what: str) -> tuple[str, int | None]:
    """``target`` resolved to exactly one node (and the term); FaultError otherwise."""
    hit, term = target.resolve(statuses, nodes, rng)
    if len(hit) != 1:
        raise FaultError(f"{what} {target} must resolve to exactly one node, got {list(hit)}")
    return hit[0], term


def representative(target: Target, nodes: Sequence[str], exclude: Sequence[str] = ()) -> tuple[str, ...]:
    """Nodes ``target`` could resolve to, found without asking the nodes or drawing from the run's
    rng (an availability check must not move the nemesis's seeded sequence): its ids when it
    names them, else that many of the nodes not in ``exclude``, in cluster order. Whether a cut
    is expressible depends only on the sizes of its sides, since every proxy shape treats the
    nodes alike (``harness.systems.topology``: one proxy per directed pair, or one per
    destination shared by all its peers), so this answers for every resolution."""
    if target.kind is TargetKind.NODES:
        return target.ids
    pool = [n for n in nodes if n not in exclude]
    n = len(nodes)
    count = {TargetKind.LEADER: 1, TargetKind.ONE: 1, TargetKind.FOLLOWERS: n - 1,
             TargetKind.MINORITY: (n - 1) // 2, TargetKind.MAJORITY: n // 2 + 1}.get(target.kind, n)
    return tuple(pool[:count])


def cut_unavailable(cluster: Cluster, links: Iterable[LinkId], drawn: bool = False) -> str | None:
    """Why editing the proxies of ``links`` would cut other traffic too on this cluster (the
    cluster's topology answers, ``Cluster.cut_unavailable``), None when it would not; client
    links always have a proxy of their own. ``drawn``: the links are a representative
    resolution (``representative``), and the reason says its node ids stand for any draw."""
    pairs = sorted({(link.src, link.dst) for link in links if not link.is_client})
    reason = cluster.cut_unavailable(pairs) if pairs else None
    return f"{reason} (nodes drawn at injection: any draw alike)" if reason and drawn else reason


class Endpoints:
    """``src``/``dst`` of a directed link: node ids or single-node targets (``leader``, ``one``)."""

    def __init__(self, src: Target | str, dst: Target | str) -> None:
        self.src = as_target(src, "src")
        self.dst = as_target(dst, "dst")
        if self.src.ids and self.src == self.dst:
            raise FaultError(f"a link needs two different nodes, got {self.src} -> {self.dst}")

    def check(self, cluster: Cluster) -> str | None:
        """Why the link cannot exist on this cluster (None if it can), the proxy shape included:
        etcd's ingress proxies on the local backend have no proxy of one directed link, and saying
        so here keeps the fault from being tried and refused at injection. Unknown ids raise
        FaultError."""
        check_known(cluster, self.src, "src")
        check_known(cluster, self.dst, "dst")
        reason = self.src.unavailable_reason(cluster.nodes) or self.dst.unavailable_reason(cluster.nodes)
        if reason is not None:
            return reason
        src = representative(self.src, cluster.nodes)
        dst = representative(self.dst, cluster.nodes, exclude=src[:1])
        if not src or not dst or src[0] == dst[0]:
            return None  # resolves at injection (FaultError there names it)
        drawn = not (self.src.kind is TargetKind.NODES and self.dst.kind is TargetKind.NODES)
        return cut_unavailable(cluster, [LinkId(src[0], dst[0])], drawn)

    def resolve(self, cluster: Cluster) -> tuple[LinkId, tuple[str, ...], int | None]:
        """The link, the two nodes it joins (the record's targets) and the term, resolved now."""
        statuses, rng = cluster.statuses(), nemesis_rng(cluster)
        src, term = one_node(self.src, statuses, cluster.nodes, rng, "src")
        others = [n for n in cluster.nodes if n != src]  # "one" as dst: one of the other nodes
        dst, _ = one_node(self.dst, statuses, others if self.dst.kind is TargetKind.ONE else cluster.nodes,
                          rng, "dst")
        if src == dst:
            raise FaultError(f"link {self.src} -> {self.dst} resolved to the same node {src}")
        return LinkId(src, dst), (src, dst), term
