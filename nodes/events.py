"""The node's own event trace: bounded rings of request/reply and election events, node-clock stamped.

kuduraft has no such ring; it is raftchaos observability, so nothing in consensus reads it back.
Why it exists: a bound on the node's timing ("the next request left at once after the reply",
"a black-holed request stayed pending for the whole RPC timeout") must be computed from two
timestamps the node took itself, on its own monotonic clock (``nodes.clock.Clock``), not from when
a harness poll happened to see a counter move. The harness reads it with ``GET /events?since=SEQ``
(docs/node-api.md) and records it into the run's history.

One sequence counter for the whole node (strictly increasing, starting at 1) orders every event;
each remote peer has its own bounded ring, and the node-level events (elections, leadership) one
more, so a chatty peer cannot evict another's or the election history. The rings live as long as
the process: a leader rebuilds its Peers every term (B5), its peers' events stay.
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Iterable
from typing import Any

from nodes.clock import Clock

PEER_RING_SIZE = 1024
NODE_RING_SIZE = 256
MAX_EVENTS_PER_READ = 4096


class _Ring:
    """A bounded deque that remembers the highest sequence number it had to evict."""

    def __init__(self, size: int) -> None:
        self.items: deque[dict[str, Any]] = deque()
        self.size = size
        self.evicted_seq = 0

    def add(self, event: dict[str, Any]) -> None:
        if len(self.items) >= self.size:
            self.evicted_seq = self.items.popleft()["seq"]
        self.items.append(event)


class NodeEvents:
    """The node's trace. ``record_*`` are called on the event loop; ``read`` serves the HTTP API."""

    def __init__(self, clock: Clock, peer_ring_size: int = PEER_RING_SIZE,
                 node_ring_size: int = NODE_RING_SIZE) -> None:
        self._clock = clock
        self._peer_ring_size = peer_ring_size
        self._node = _Ring(node_ring_size)
        self._peers: dict[str, _Ring] = {}
        self._seq = 0
        # Tells one process's trace from the next one's after a restart (seq starts over).
        self.boot = f"{os.getpid()}-{int(clock.now() * 1e6)}"

    @property
    def last_seq(self) -> int:
        return self._seq

    def _event(self, name: str, fields: dict[str, Any]) -> dict[str, Any]:
        self._seq += 1
        return {"seq": self._seq, "t": round(self._clock.now(), 6), "event": name, **fields}

    def record_peer(self, peer: str, name: str, **fields: Any) -> dict[str, Any]:
        """A request/reply event of the leader's Peer for ``peer``."""
        event = self._event(name, {"peer": peer, **fields})
        ring = self._peers.get(peer)
        if ring is None:
            ring = self._peers[peer] = _Ring(self._peer_ring_size)
        ring.add(event)
        return event

    def record_node(self, name: str, **fields: Any) -> dict[str, Any]:
        """A node-level event (election started/decided, became leader, stepped down)."""
        event = self._event(name, fields)
        self._node.add(event)
        return event

    def _rings(self) -> Iterable[_Ring]:
        yield self._node
        yield from self._peers.values()

    def read(self, since: int = 0, limit: int = MAX_EVENTS_PER_READ) -> dict[str, Any]:
        """Events with ``seq > since`` in sequence order (at most ``limit``), and whether any such
        event was already evicted (``complete: false``: the reader fell behind a ring)."""
        picked = sorted((e for ring in self._rings() for e in ring.items if e["seq"] > since),
                        key=lambda e: e["seq"])
        complete = all(ring.evicted_seq <= since for ring in self._rings())
        truncated = len(picked) > limit
        picked = picked[:limit]
        next_since = picked[-1]["seq"] if truncated else self._seq
        return {"boot": self.boot, "now": round(self._clock.now(), 6), "last_seq": self._seq,
                "next_since": next_since, "complete": complete, "truncated": truncated,
                "events": [dict(e) for e in picked]}
