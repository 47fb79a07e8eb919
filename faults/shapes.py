"""The pure partition compiler: a partition shape over node ids → the set of (link, stream, mode) cuts.

No cluster, no proxies, no clock: everything here is a function of its arguments (and of an
explicit ``random.Random`` for the shapes that shuffle), so it is unit-tested against a fake
proxy set and replays exactly.

Stream semantics: on the proxy ``a->b`` (a's outbound RPC connection to b) ``upstream`` carries
a's requests and ``downstream`` b's replies. So "x's traffic to y" is x's requests on ``x->y``
*and* x's replies on ``y->x``: cutting it means cutting ``(x->y, upstream)`` and
``(y->x, downstream)``. A shape is first reduced to the set of ordered pairs ``(x, y)`` whose
traffic is dropped (``blocked``), then compiled into stream cuts, then into proxy operations:

- ``refused``: a link whose both streams are cut is disabled (dials fail at once: connection
  refused); a link with one stream cut gets a ``reset_peer`` toxic (timeout 0) on that stream,
  so the first byte sent that way resets the connection (the sender sees a reset at once; what
  the other stream had already delivered stays delivered: TCP has no half-refused connection).
- ``blackhole``: a ``timeout`` toxic (timeout 0) on every cut stream: bytes vanish and nothing
  is closed, so an RPC hangs until ``consensus_rpc_timeout_ms`` (B20).
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum

from harness.backend import CLIENT, LinkId
from harness.errors import FaultError
from harness.toxi import Stream

Pair = tuple[str, str]


class Mode(StrEnum):
    REFUSED = "refused"
    BLACKHOLE = "blackhole"


class ShapeKind(StrEnum):
    ISOLATE = "isolate"                  # the given nodes from everyone else (they keep each other)
    HALVES = "halves"                    # a random split into floor(n/2) and ceil(n/2)
    MAJORITY_MINORITY = "majority-minority"  # a minority side ((n-1)//2 nodes, given ones first)
    BRIDGE = "bridge"                    # two halves that only one bridge node connects
    MAJORITIES_RING = "majorities-ring"  # every node sees a majority, each a different one
    ONE_WAY = "one-way"                  # traffic from the ``src`` nodes to the ``dst`` nodes only


@dataclass(frozen=True, order=True)
class StreamCut:
    """One compiled action: cut ``stream`` of the proxy ``link`` in ``mode``."""

    link: str
    stream: Stream
    mode: Mode

    @property
    def link_id(self) -> LinkId:
        return LinkId.parse(self.link)


@dataclass(frozen=True)
class ProxyOp:
    """One operation on a proxy: ``disable`` it, or add a ``toxic`` (type, stream, attributes)."""

    link: str
    op: str  # "disable" or "toxic"
    toxic_type: str | None = None
    stream: Stream | None = None
    attributes: tuple[tuple[str, int], ...] = ()


@dataclass(frozen=True)
class Resolved:
    """A shape resolved on concrete nodes: the groups it drew (for the record) and the blocked pairs."""

    kind: ShapeKind
    groups: tuple[tuple[str, ...], ...]
    blocked: frozenset[Pair]


def _check_nodes(nodes: Sequence[str], given: Iterable[str], what: str) -> list[str]:
    ids = list(given)
    unknown = [i for i in ids if i not in nodes]
    if unknown:
        raise FaultError(f"{what}: unknown node(s) {', '.join(unknown)} (nodes are {', '.join(nodes)})")
    return ids


def groups_blocked(nodes: Sequence[str], groups: Sequence[Sequence[str]]) -> frozenset[Pair]:
    """Every ordered pair of nodes in different groups (nodes in no group form one more group)."""
    placed = {n for g in groups for n in g}
    all_groups = [list(g) for g in groups if g] + ([[n for n in nodes if n not in placed]]
                                                   if len(placed) < len(nodes) else [])
    side = {n: i for i, g in enumerate(all_groups) for n in g}
    return frozenset((x, y) for x in nodes for y in nodes if x != y and side[x] != side[y])


def allowed_blocked(nodes: Sequence[str], allowed: Iterable[frozenset[str]]) -> frozenset[Pair]:
    """Every ordered pair not in ``allowed`` (a set of unordered pairs that may talk)."""
    ok = set(allowed)
    return frozenset((x, y) for x in nodes for y in nodes if x != y and frozenset((x, y)) not in ok)


def unavailable_reason(kind: ShapeKind, n: int) -> str | None:
    """Why ``kind`` cannot cut anything on a cluster of ``n`` nodes (None when it can)."""
    need = {ShapeKind.MAJORITY_MINORITY: 3, ShapeKind.BRIDGE: 3, ShapeKind.MAJORITIES_RING: 4}.get(kind, 2)
    if n < need:
        return f"a {kind.value} partition needs at least {need} nodes, cluster has {n}"
    return None


def resolve_shape(kind: ShapeKind, nodes: Sequence[str], rng: random.Random,
                  first: Sequence[str] = (), second: Sequence[str] = ()) -> Resolved:
    """Resolve ``kind`` on ``nodes``: draw its groups, then ``from_groups``. ``first``: the isolated
    nodes (isolate), the nodes that must be on the minority side (majority-minority), the senders
    (one-way); ``second``: the receivers of a one-way cut (default: everyone else). Random choices
    draw from ``rng`` only."""
    nodes = list(nodes)
    reason = unavailable_reason(kind, len(nodes))
    if reason:
        raise FaultError(reason)
    first = list(dict.fromkeys(_check_nodes(nodes, first, kind.value)))
    second = list(dict.fromkeys(_check_nodes(nodes, second, kind.value)))
    groups: list[list[str]]
    if kind is ShapeKind.ISOLATE:
        groups = [first, _rest(nodes, first)]
    elif kind is ShapeKind.HALVES:
        order = rng.sample(nodes, len(nodes))
        groups = [order[: len(nodes) // 2], order[len(nodes) // 2:]]
    elif kind is ShapeKind.MAJORITY_MINORITY:
        size = (len(nodes) - 1) // 2
        if len(first) > size:
            raise FaultError(f"majority-minority: {first} does not fit a minority of {size}")
        minority = first + rng.sample(_rest(nodes, first), size - len(first))
        groups = [minority, _rest(nodes, minority)]
    elif kind is ShapeKind.BRIDGE:
        order = rng.sample(nodes, len(nodes))
        half = (len(nodes) - 1) // 2
        groups = [order[:half], [order[half]], order[half + 1:]]
    elif kind is ShapeKind.MAJORITIES_RING:
        groups = [rng.sample(nodes, len(nodes))]
    else:
        groups = [first, second or _rest(nodes, first)]
    return from_groups(kind, nodes, groups)


def from_groups(kind: ShapeKind, nodes: Sequence[str], groups: Sequence[Sequence[str]]) -> Resolved:
    """The blocked pairs of ``kind`` with its groups given (what a replay uses): isolate and
    majority-minority ``[side, rest]``, halves ``[a, b]``, bridge ``[left, [bridge], right]``,
    majorities-ring ``[ring order]``, one-way ``[senders, receivers]``."""
    nodes = list(nodes)
    groups = [_check_nodes(nodes, g, kind.value) for g in groups]
    flat = [n for g in groups for n in g]
    if len(flat) != len(set(flat)):
        raise FaultError(f"{kind.value}: a node is in two groups: {groups}")
    if kind is ShapeKind.ONE_WAY:
        if len(groups) != 2 or not groups[0] or not groups[1]:
            raise FaultError(f"one-way needs disjoint non-empty src and dst, got {groups}")
        blocked = frozenset((x, y) for x in groups[0] for y in groups[1])
    elif set(flat) != set(nodes):
        raise FaultError(f"{kind.value}: groups {groups} must cover every node ({', '.join(nodes)})")
    elif kind is ShapeKind.BRIDGE:
        if len(groups) != 3 or len(groups[1]) != 1:
            raise FaultError(f"bridge needs [left, [bridge], right], got {groups}")
        left, bridge, right = list(groups[0]), list(groups[1]), list(groups[2])
        allowed = {frozenset((x, y)) for side in (left, right) for x in side + bridge
                   for y in side + bridge if x != y}
        blocked = allowed_blocked(nodes, allowed)
    elif kind is ShapeKind.MAJORITIES_RING:
        if len(groups) != 1:
            raise FaultError(f"majorities-ring needs one ring order, got {groups}")
        order = list(groups[0])
        n, majority = len(order), len(order) // 2 + 1
        reach = -(-(majority - 1) // 2)  # ceil: neighbours on each side, so each node sees a majority
        allowed = {frozenset((order[i], order[(i + d) % n])) for i in range(n) for d in range(1, reach + 1)}
        blocked = allowed_blocked(nodes, allowed)
    else:
        if len(groups) != 2 or not groups[0] or not groups[1]:
            raise FaultError(f"{kind.value} needs two non-empty sides, got {groups}")
        blocked = groups_blocked(nodes, groups)
    ordered = tuple(tuple(sorted(g, key=nodes.index)) if kind is not ShapeKind.MAJORITIES_RING else tuple(g)
                    for g in groups)
    return Resolved(kind, ordered, blocked)


def _rest(nodes: Sequence[str], taken: Sequence[str]) -> list[str]:
    return [n for n in nodes if n not in taken]


def traffic_streams(src: str, dst: str) -> tuple[tuple[LinkId, Stream], tuple[LinkId, Stream]]:
    """The two streams that carry ``src``'s traffic to ``dst``: its requests on ``src->dst`` and its
    replies on ``dst->src``."""
    return (LinkId(src, dst), Stream.UPSTREAM), (LinkId(dst, src), Stream.DOWNSTREAM)


def compile_cuts(blocked: Iterable[Pair], mode: Mode | str, clients_of: Iterable[str] = ()) -> frozenset[StreamCut]:
    """The stream cuts that drop exactly the ``blocked`` traffic; ``clients_of``: nodes whose client
    link is cut too (both streams)."""
    mode = Mode(mode)
    cuts = {StreamCut(link.name, stream, mode) for x, y in blocked for link, stream in traffic_streams(x, y)}
    for node in clients_of:
        cuts |= {StreamCut(LinkId(CLIENT, node).name, s, mode) for s in Stream}
    return frozenset(cuts)


def proxy_plan(cuts: Iterable[StreamCut]) -> list[ProxyOp]:
    """Proxy operations that realise ``cuts`` (see the module docstring), in a stable order."""
    by_link: dict[str, dict[Stream, Mode]] = {}
    for cut in sorted(cuts):
        modes = by_link.setdefault(cut.link, {})
        if cut.stream in modes and modes[cut.stream] is not cut.mode:
            raise FaultError(f"{cut.link} {cut.stream.value}: cut both refused and blackholed")
        modes[cut.stream] = cut.mode
    ops: list[ProxyOp] = []
    for link, modes in sorted(by_link.items()):
        if len(modes) == 2 and set(modes.values()) == {Mode.REFUSED}:
            ops.append(ProxyOp(link, "disable"))
            continue
        for stream, mode in sorted(modes.items()):
            toxic = "reset_peer" if mode is Mode.REFUSED else "timeout"
            ops.append(ProxyOp(link, "toxic", toxic, stream, (("timeout", 0),)))
    return ops


def plan_shape(kind: ShapeKind, nodes: Sequence[str], mode: Mode | str, rng: random.Random,
               first: Sequence[str] = (), second: Sequence[str] = (),
               clients_of: Iterable[str] = ()) -> tuple[Resolved, frozenset[StreamCut], list[ProxyOp]]:
    """resolve → compile → plan in one call."""
    resolved = resolve_shape(kind, nodes, rng, first, second)
    cuts = compile_cuts(resolved.blocked, mode, clients_of)
    return resolved, cuts, proxy_plan(cuts)
