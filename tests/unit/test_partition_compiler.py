"""The pure partition compiler against a fake proxy set: every shape, both modes, each direction."""

from __future__ import annotations

import itertools
import random
from dataclasses import dataclass, field

import pytest

from faults.shapes import Mode, ShapeKind, from_groups, plan_shape, proxy_plan, traffic_streams
from harness.backend import CLIENT, LinkId
from harness.errors import FaultError
from harness.toxi import Stream

SEED = 1234
NODES5 = ("n1", "n2", "n3", "n4", "n5")


@dataclass
class FakeProxy:
    enabled: bool = True
    toxics: dict[Stream, str] = field(default_factory=dict)


class FakeProxySet:
    """One proxy per directed link (as the harness builds them) with only the state the plan touches."""

    def __init__(self, nodes: tuple[str, ...]) -> None:
        self.proxies = {LinkId(a, b).name: FakeProxy() for a, b in itertools.permutations(nodes, 2)}
        self.proxies.update({LinkId(CLIENT, n).name: FakeProxy() for n in nodes})

    def apply(self, ops: list) -> None:  # type: ignore[type-arg]
        for op in ops:
            proxy = self.proxies[op.link]
            if op.op == "disable":
                proxy.enabled = False
            else:
                assert op.stream not in proxy.toxics, f"two toxics on {op.link} {op.stream}"
                proxy.toxics[op.stream] = op.toxic_type

    def stream_fate(self, link: LinkId, stream: Stream) -> str:
        """``ok``, ``refused`` (disabled or reset) or ``blackhole`` (bytes vanish)."""
        proxy = self.proxies[link.name]
        if not proxy.enabled:
            return "refused"
        return {"reset_peer": "refused", "timeout": "blackhole"}.get(proxy.toxics.get(stream, ""), "ok")

    def traffic(self, src: str, dst: str) -> tuple[str, str]:
        """Fate of src's requests to dst and of src's replies to dst."""
        (req_link, req_stream), (rep_link, rep_stream) = traffic_streams(src, dst)
        return self.stream_fate(req_link, req_stream), self.stream_fate(rep_link, rep_stream)


def apply_shape(kind: ShapeKind, nodes: tuple[str, ...], mode: Mode, first: tuple[str, ...] = (),
                second: tuple[str, ...] = ()) -> tuple[FakeProxySet, list[tuple[str, ...]]]:
    resolved, _, ops = plan_shape(kind, nodes, mode, random.Random(SEED), first, second)
    proxies = FakeProxySet(nodes)
    proxies.apply(ops)
    return proxies, [tuple(g) for g in resolved.groups]


def assert_matrix(proxies: FakeProxySet, nodes: tuple[str, ...], mode: Mode, can_send: set[tuple[str, str]]) -> None:
    """For every ordered pair: traffic flows iff allowed, else both its streams fail in ``mode``."""
    for src, dst in itertools.permutations(nodes, 2):
        fate = proxies.traffic(src, dst)
        if (src, dst) in can_send:
            assert fate == ("ok", "ok"), f"{src}->{dst} should flow, got {fate}"
        else:
            assert fate == (mode.value, mode.value), f"{src}->{dst} should be {mode.value}, got {fate}"


def sides(groups: list[tuple[str, ...]]) -> set[tuple[str, str]]:
    return {(a, b) for g in groups for a, b in itertools.permutations(g, 2)}


MODES = [Mode.REFUSED, Mode.BLACKHOLE]


@pytest.mark.parametrize("mode", MODES)
def test_isolate_one_node(mode: Mode) -> None:
    nodes = ("n1", "n2", "n3")
    proxies, groups = apply_shape(ShapeKind.ISOLATE, nodes, mode, ("n2",))
    assert groups == [("n2",), ("n1", "n3")]
    assert_matrix(proxies, nodes, mode, {("n1", "n3"), ("n3", "n1")})


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("n", [2, 3, 4, 5])
def test_halves(mode: Mode, n: int) -> None:
    nodes = NODES5[:n]
    proxies, groups = apply_shape(ShapeKind.HALVES, nodes, mode)
    assert sorted(len(g) for g in groups) == [n // 2, n - n // 2]
    assert_matrix(proxies, nodes, mode, sides(groups))


@pytest.mark.parametrize("mode", MODES)
def test_majority_minority_keeps_the_given_node_in_the_minority(mode: Mode) -> None:
    proxies, groups = apply_shape(ShapeKind.MAJORITY_MINORITY, NODES5, mode, ("n4",))
    minority, majority = groups
    assert "n4" in minority and len(minority) == 2 and len(majority) == 3
    assert_matrix(proxies, NODES5, mode, sides(groups))


@pytest.mark.parametrize("mode", MODES)
def test_bridge(mode: Mode) -> None:
    proxies, groups = apply_shape(ShapeKind.BRIDGE, NODES5, mode)
    left, (bridge,), right = groups
    assert len(left) == len(right) == 2
    allowed = sides([left + (bridge,), right + (bridge,)])
    assert_matrix(proxies, NODES5, mode, allowed)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("n", [4, 5, 7])
def test_majorities_ring_each_node_sees_a_different_majority(mode: Mode, n: int) -> None:
    nodes = tuple(f"n{i}" for i in range(1, n + 1))
    proxies, (ring,) = apply_shape(ShapeKind.MAJORITIES_RING, nodes, mode)
    seen = {x: frozenset([x] + [y for y in nodes if y != x and proxies.traffic(x, y) == ("ok", "ok")])
            for x in nodes}
    assert all(len(v) >= n // 2 + 1 for v in seen.values())
    assert len(set(seen.values())) == n, "every node must see a different majority"
    for x, y in itertools.permutations(nodes, 2):
        fate = proxies.traffic(x, y)
        assert fate in (("ok", "ok"), (mode.value, mode.value))
        assert (fate == ("ok", "ok")) == (proxies.traffic(y, x) == ("ok", "ok")), "ring cuts are symmetric"


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("src,dst", [("n1", "n2"), ("n2", "n1"), ("n3", "n1")])
def test_one_way_cuts_only_that_direction(mode: Mode, src: str, dst: str) -> None:
    nodes = ("n1", "n2", "n3")
    proxies, groups = apply_shape(ShapeKind.ONE_WAY, nodes, mode, (src,), (dst,))
    assert groups == [(src,), (dst,)]
    allowed = {p for p in itertools.permutations(nodes, 2) if p != (src, dst)}
    assert_matrix(proxies, nodes, mode, allowed)
    # the stream semantics spelled out: src's requests ride src->dst upstream, its replies dst->src downstream
    assert proxies.stream_fate(LinkId(src, dst), Stream.UPSTREAM) == mode.value
    assert proxies.stream_fate(LinkId(dst, src), Stream.DOWNSTREAM) == mode.value
    assert proxies.stream_fate(LinkId(src, dst), Stream.DOWNSTREAM) == "ok"
    assert proxies.stream_fate(LinkId(dst, src), Stream.UPSTREAM) == "ok"


def test_refused_disables_a_fully_cut_link_and_resets_a_half_cut_one() -> None:
    _, _, ops = plan_shape(ShapeKind.ISOLATE, ("n1", "n2", "n3"), Mode.REFUSED, random.Random(SEED), ("n1",))
    assert {op.op for op in ops} == {"disable"}
    _, _, ops = plan_shape(ShapeKind.ONE_WAY, ("n1", "n2"), Mode.REFUSED, random.Random(SEED), ("n1",), ("n2",))
    assert [(op.link, op.toxic_type, op.stream) for op in ops] == [
        ("n1->n2", "reset_peer", Stream.UPSTREAM), ("n2->n1", "reset_peer", Stream.DOWNSTREAM)]
    _, _, ops = plan_shape(ShapeKind.ISOLATE, ("n1", "n2"), Mode.BLACKHOLE, random.Random(SEED), ("n1",))
    assert {(op.op, op.toxic_type) for op in ops} == {("toxic", "timeout")}


def test_client_links_of_the_first_group() -> None:
    resolved, cuts, ops = plan_shape(ShapeKind.ISOLATE, ("n1", "n2", "n3"), Mode.REFUSED, random.Random(SEED),
                                     ("n3",), clients_of=("n3",))
    assert any(op.link == "client->n3" and op.op == "disable" for op in ops)


def test_resolution_is_seeded() -> None:
    draws = {tuple(plan_shape(ShapeKind.BRIDGE, NODES5, Mode.REFUSED, random.Random(SEED))[0].groups)
             for _ in range(3)}
    assert len(draws) == 1


def test_from_groups_replays_the_recorded_groups() -> None:
    resolved, _, _ = plan_shape(ShapeKind.HALVES, NODES5, Mode.BLACKHOLE, random.Random(SEED))
    again = from_groups(ShapeKind.HALVES, NODES5, [list(g) for g in resolved.groups])
    assert again.blocked == resolved.blocked


@pytest.mark.parametrize("kind,nodes,first,message", [
    (ShapeKind.MAJORITIES_RING, ("n1", "n2", "n3"), (), "needs at least 4 nodes"),
    (ShapeKind.BRIDGE, ("n1", "n2"), (), "needs at least 3 nodes"),
    (ShapeKind.ISOLATE, ("n1", "n2"), ("n1", "n2"), "isolate"),
    (ShapeKind.ISOLATE, ("n1", "n2"), ("n9",), "unknown node"),
    (ShapeKind.MAJORITY_MINORITY, ("n1", "n2", "n3"), ("n1", "n2"), "does not fit"),
])
def test_impossible_shapes_are_fault_errors(kind: ShapeKind, nodes: tuple[str, ...], first: tuple[str, ...],
                                            message: str) -> None:
    with pytest.raises(FaultError, match=message):
        plan_shape(kind, nodes, Mode.REFUSED, random.Random(SEED), first)


def test_conflicting_modes_on_one_stream_are_refused() -> None:
    from faults.shapes import StreamCut

    cuts = [StreamCut("n1->n2", Stream.UPSTREAM, Mode.REFUSED), StreamCut("n1->n2", Stream.UPSTREAM, Mode.BLACKHOLE)]
    with pytest.raises(FaultError, match="both refused and blackholed"):
        proxy_plan(cuts)
