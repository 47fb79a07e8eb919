"""Proxy routing (kuduraft routing.cc, DURABLE_ROUTING_POLICY): next hop from a proxy topology."""

from __future__ import annotations

from collections.abc import Iterable, Mapping


class RoutingError(LookupError):
    """No route: an unknown source or destination (kuduraft: NotFound)."""


class RoutingTable:
    """One tree over the config: edges "peer is fed by proxy", other trees hung under the leader.

    Edges whose proxy is not a member are ignored (those peers are fed directly), as kuduraft
    does with an Incomplete warning.
    """

    def __init__(self, members: Iterable[str], edges: Mapping[str, str], leader: str | None) -> None:
        self.members = set(members)
        self.leader = leader
        self.ignored_edges: dict[str, str] = {}
        parent: dict[str, str] = {}
        for peer, proxy in edges.items():
            if peer not in self.members:
                continue
            if proxy not in self.members:
                self.ignored_edges[peer] = proxy
                continue
            parent[peer] = proxy
        self._direct = not parent
        if leader is not None and leader in self.members:
            top = leader
            while top in parent:
                top = parent[top]
            for node in self.members:
                if node not in parent and node != top:
                    parent[node] = leader  # other trees hang under the leader itself
        self._parent = parent

    def parent(self, node: str) -> str | None:
        return self._parent.get(node)

    def next_hop(self, src: str, dest: str) -> str:
        """The child of ``src`` whose subtree holds ``dest``, else ``src``'s parent, else direct."""
        if src not in self.members or dest not in self.members:
            raise RoutingError(f"no route from {src!r} to {dest!r}: not a member")
        if src == dest:
            return dest
        if self._direct or self.leader is None or self.leader not in self.members:
            return dest
        node = dest
        while node in self._parent:
            up = self._parent[node]
            if up == src:
                return node
            node = up
        return self._parent.get(src, dest)
