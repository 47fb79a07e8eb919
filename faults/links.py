"""The ends and streams of one directed link: ``Direction`` (which streams) and ``Endpoints`` (src/dst targets).

Shared by the link faults of ``faults.network`` (the suites' ``partition``/``link_latency``) and
``faults.toxics`` (the catalog's toxics), so both resolve and record a link the same way.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
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


class Endpoints:
    """``src``/``dst`` of a directed link: node ids or single-node targets (``leader``, ``one``)."""

    def __init__(self, src: Target | str, dst: Target | str) -> None:
        self.src = as_target(src, "src")
        self.dst = as_target(dst, "dst")
        if self.src.ids and self.src == self.dst:
            raise FaultError(f"a link needs two different nodes, got {self.src} -> {self.dst}")

    def check(self, cluster: Cluster) -> str | None:
        """Why the link cannot exist on this cluster (None if it can); unknown ids raise FaultError."""
        check_known(cluster, self.src, "src")
        check_known(cluster, self.dst, "dst")
        return self.src.unavailable_reason(cluster.nodes) or self.dst.unavailable_reason(cluster.nodes)

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
