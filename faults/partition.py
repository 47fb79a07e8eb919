"""Partition faults: a shape (isolate, halves, majority-minority, bridge, ring, one-way) compiled onto the proxies."""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from faults.base import as_enum, as_target, check_known
from faults.links import cut_unavailable, representative
from faults.proxyops import ProxyEditFault
from faults.shapes import (
    Mode,
    ShapeKind,
    compile_cuts,
    from_groups,
    plan_shape,
    proxy_plan,
    resolve_shape,
    unavailable_reason,
)
from faults.verify import Verification
from harness.backend import LinkId
from harness.errors import FaultError
from harness.fault import FaultRecord, Target, TargetKind, nemesis_rng, resolve_target

if TYPE_CHECKING:
    from harness.cluster import Cluster

# Which resolved group the ``targets`` of the record name (the nodes "hit" by the partition).
_HIT_GROUP = {ShapeKind.ISOLATE: 0, ShapeKind.MAJORITY_MINORITY: 0, ShapeKind.ONE_WAY: 0,
              ShapeKind.HALVES: 0, ShapeKind.BRIDGE: 1, ShapeKind.MAJORITIES_RING: 0}


class Partition(ProxyEditFault):
    """Cut the cluster along ``shape`` in ``mode`` (``refused`` or ``blackhole``).

    ``target`` (isolate: who is isolated, default ``one``; majority-minority: who must be in the
    minority, e.g. ``leader``; one-way: the senders) and ``dst`` (one-way: the receivers, default
    everyone else) are resolved at injection. ``groups`` fixes the groups instead of drawing them
    (a replay passes the recorded ones). ``include_client`` also cuts the client links of the
    first group. The fault event records the groups drawn and every link touched; the heal event
    whether the cut bit (traffic crossed it and was dropped)."""

    def __init__(self, shape: ShapeKind | str, mode: Mode | str = Mode.REFUSED, target: Target | str | None = None,
                 dst: Target | str | None = None, groups: Sequence[Sequence[str]] | None = None,
                 include_client: bool = False) -> None:
        self.shape: ShapeKind = as_enum(ShapeKind, shape, "shape")
        self.mode: Mode = as_enum(Mode, mode, "mode")
        needs_target = self.shape in (ShapeKind.ISOLATE, ShapeKind.ONE_WAY)
        if target is None and needs_target and groups is None:
            target = "one"
        if target is not None and self.shape in (ShapeKind.HALVES, ShapeKind.BRIDGE, ShapeKind.MAJORITIES_RING):
            raise FaultError(f"a {self.shape.value} partition draws its own sides: it takes no target")
        if dst is not None and self.shape is not ShapeKind.ONE_WAY:
            raise FaultError("dst applies to one-way cuts only")
        self.target = as_target(target, "target") if target is not None else None
        self.dst = as_target(dst, "dst") if dst is not None else None
        if groups is not None and (not isinstance(groups, Sequence) or isinstance(groups, str)
                                   or not all(isinstance(g, Sequence) and not isinstance(g, str) for g in groups)):
            raise FaultError(f"groups must be a list of lists of node ids, got {groups!r}")
        self.groups = [list(g) for g in groups] if groups is not None else None
        if not isinstance(include_client, bool):
            raise FaultError(f"include_client must be a bool, got {include_client!r}")
        self.include_client = include_client
        self.name = "isolate" if self.shape is ShapeKind.ISOLATE else f"partition-{self.shape.value}"
        super().__init__()

    def available(self, cluster: Cluster) -> str | None:
        """Also whether the cluster's proxies can express this cut (``faults.links.cut_unavailable``):
        on etcd's ingress proxies (local backend) no node can be isolated without cutting its peers'
        traffic to each other, and saying so here keeps the fault from being tried and refused at
        injection (a refused attempt leaves the run's verdicts unknown)."""
        for t in (self.target, self.dst):
            if t is not None:
                check_known(cluster, t)
        reason = unavailable_reason(self.shape, len(cluster.nodes))
        for t in (self.target, self.dst):
            if reason is None and t is not None:
                reason = t.unavailable_reason(cluster.nodes)
        if reason is not None:
            return reason
        try:
            links = self._representative_links(cluster)
        except FaultError:
            return None  # groups that cannot resolve: injection raises with the reason
        fixed = self.groups is not None or (self.shape in (ShapeKind.ISOLATE, ShapeKind.ONE_WAY) and all(
            t is None or t.kind is TargetKind.NODES for t in (self.target, self.dst)))
        return cut_unavailable(cluster, links, drawn=not fixed)

    def _representative_links(self, cluster: Cluster) -> list[LinkId]:
        """The peer links a cut of this shape edits, for the recorded groups or (drawn at injection)
        a representative resolution of the same sizes (``faults.links.representative``), drawn
        from a private rng so the run's nemesis sequence does not move."""
        nodes = cluster.nodes
        if self.groups is not None:
            resolved = from_groups(self.shape, nodes, self.groups)
        else:
            first = representative(self.target, nodes) if self.target is not None else ()
            second = representative(self.dst, nodes, exclude=first) if self.dst is not None else ()
            resolved = resolve_shape(self.shape, nodes, random.Random(0), first, second)
        return [LinkId.parse(op.link) for op in proxy_plan(compile_cuts(resolved.blocked, self.mode))]

    def setup(self, cluster: Cluster) -> None:
        """Nothing to prepare: resetting every link here would heal a fault this one nests in."""

    def params(self) -> dict[str, Any]:
        out: dict[str, Any] = {"shape": self.shape.value, "mode": self.mode.value}
        if self.target is not None:
            out["target"] = str(self.target)
        if self.dst is not None:
            out["dst"] = str(self.dst)
        if self.include_client:
            out["include_client"] = True
        return out

    def _resolve(self, cluster: Cluster) -> tuple[list[list[str]], int | None]:
        first: tuple[str, ...] = ()
        second: tuple[str, ...] = ()
        term = None
        if self.groups is not None:
            _, term = resolve_target(cluster, Target.all())
            return self.groups, term
        if self.target is not None:
            first, term = resolve_target(cluster, self.target)
        if self.dst is not None:
            second, _ = resolve_target(cluster, self.dst)
        if self.target is None:
            _, term = resolve_target(cluster, Target.all())
        resolved, _, _ = plan_shape(self.shape, cluster.nodes, self.mode, nemesis_rng(cluster), first, second)
        return [list(g) for g in resolved.groups], term

    def inject(self, cluster: Cluster) -> FaultRecord:
        if self._record is not None:
            raise FaultError(f"{self.name} is already injected")
        groups, term = self._resolve(cluster)
        resolved = from_groups(self.shape, cluster.nodes, groups)
        clients = resolved.groups[0] if self.include_client else ()
        cuts = compile_cuts(resolved.blocked, self.mode, clients)
        ops = proxy_plan(cuts)
        hit = resolved.groups[_HIT_GROUP[self.shape]]
        params = {**self.params(), "groups": [list(g) for g in resolved.groups],
                  "links": sorted({op.link for op in ops})}
        return self._apply(cluster, ops, f"{self.name} {self.mode.value}", params, hit, term)

    judges_cut = True

    def verify(self, cluster: Cluster) -> Verification:
        """Whether a node sent across the cut while it was in place (``faults.bite``)."""
        return self.verify_cut(cluster)
