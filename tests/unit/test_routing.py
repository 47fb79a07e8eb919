"""RoutingTable (nodes/routing.py): kuduraft routing-test cases and the B43/B44 routing rules."""

from __future__ import annotations

import pytest

from nodes.routing import RoutingError, RoutingTable

MEMBERS = ("0", "1", "2", "3", "4", "5")
# kuduraft routing-test edges "0->1, 2->3, 3->4, 3->5" (proxy -> fed peer); ours map peer -> proxy.
EDGES = {"1": "0", "3": "2", "4": "3", "5": "3"}


@pytest.mark.parametrize(("src", "dest", "hop"), [
    ("3", "5", "5"),  # leader to its own child: direct
    ("3", "1", "0"),  # via the root of a tree hung under the leader
    ("5", "1", "3"),  # up to the parent
    ("2", "4", "3"),  # down through the child whose subtree holds dest
])
def test_routing_table_spec_examples(src: str, dest: str, hop: str) -> None:
    """Spec 3.2 (routing-test TestRoutingTable): edges 0->1, 2->3, 3->4, 3->5, leader 3:
    3->5 direct; 3->1 via 0; 5->1 via 3; 2->4 via 3."""
    assert RoutingTable(MEMBERS, EDGES, "3").next_hop(src, dest) == hop


def test_trees_without_leader_hang_under_the_leader() -> None:
    """Spec 3.2. All trees not containing the leader are hung under the leader (not under the
    root of the leader's tree), giving one tree whose root is the leader's topmost ancestor."""
    table = RoutingTable(MEMBERS, EDGES, "3")
    assert table.parent("0") == "3"
    assert table.parent("2") is None
    assert table.next_hop("2", "1") == "3"
    assert table.next_hop("1", "4") == "0"
    assert table.next_hop("0", "2") == "3"


def test_src_equals_dest_is_direct() -> None:
    """Spec 3.2. Next hop from src to dest is dest itself if src == dest."""
    assert RoutingTable(MEMBERS, EDGES, "3").next_hop("4", "4") == "4"


def test_unknown_src_or_dest_is_not_found() -> None:
    """Spec 3.2. Unknown src or dest => NotFound."""
    table = RoutingTable(MEMBERS, EDGES, "3")
    with pytest.raises(RoutingError):
        table.next_hop("3", "9")
    with pytest.raises(RoutingError):
        table.next_hop("9", "3")


def test_proxy_not_in_config_falls_back_to_direct() -> None:
    """Spec 3.2 (TestProxyFromNotInRaftConfig). An edge whose proxy is not in the config is
    ignored; that peer is routed directly."""
    table = RoutingTable(("A", "B", "C"), {"C": "X"}, "A")
    assert table.ignored_edges == {"C": "X"}
    assert table.next_hop("A", "C") == "C"


def test_stale_router_without_edges_routes_directly() -> None:
    """Spec 3.2 (TestStaleRouter) and B43. With a routing table and no edges at all, routing is
    direct, also between followers."""
    table = RoutingTable(("A", "B", "C"), {}, "A")
    assert table.next_hop("B", "C") == "C"
    assert table.next_hop("A", "B") == "B"


@pytest.mark.parametrize("leader", [None, "Z"])
def test_no_known_leader_routes_members_directly(leader: str | None) -> None:
    """Spec 3.1. Without a known leader, or leader not in config, routing is direct for config
    members and NotFound for non-members."""
    table = RoutingTable(("A", "B", "C"), {"C": "B"}, leader)
    assert table.next_hop("A", "C") == "C"
    with pytest.raises(RoutingError):
        table.next_hop("A", "Z")


def test_leader_routes_through_proxy_chain() -> None:
    """Spec 3.2/B44. Leader A, C fed by B, D fed by C: A reaches D via B; B reaches D via C."""
    table = RoutingTable(("A", "B", "C", "D"), {"C": "B", "D": "C"}, "A")
    assert table.next_hop("A", "D") == "B"
    assert table.next_hop("B", "D") == "C"
    assert table.next_hop("C", "D") == "D"
    assert table.next_hop("D", "A") == "C"
