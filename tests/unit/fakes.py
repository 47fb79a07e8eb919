"""Deterministic fakes for the leader's Peer/queue unit tests: clock, transport, follower, fixture."""

from __future__ import annotations

import copy
import heapq
import itertools
import logging
import random
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, NoReturn

from nodes.faultpoints import FaultPoints
from nodes.flags import Flags
from nodes.log import MIN_OPID, OpId, RaftLog
from nodes.peer import Peer, RpcOutcome
from nodes.queue import PeerMessageQueue
from nodes.routing import RoutingTable
from nodes.rpc import RemoteRpcError, RpcLayerError, RpcTimeout
from nodes.wal import LogEntry

LOG = logging.getLogger("test.peer")
MAX_CALLBACKS_PER_INSTANT = 10_000
"""More callbacks than this without time moving means the code under test livelocked."""


# ----- clock -----

class _Handle:
    def __init__(self) -> None:
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


class FakeClock:
    """nodes.clock.Clock driven by hand: ``advance(dt)`` runs due callbacks in (time, FIFO) order.

    A callback runs with ``now()`` equal to its due time, and callbacks it schedules inside the
    window also run before ``advance`` returns. Exceptions propagate to the caller.
    """

    def __init__(self, start_s: float = 0.0) -> None:
        self._now = start_s
        self._heap: list[tuple[float, int, _Handle, Callable[[], None]]] = []
        self._seq = itertools.count()

    def now(self) -> float:
        return self._now

    def call_later(self, delay_s: float, fn: Callable[[], None]) -> _Handle:
        handle = _Handle()
        heapq.heappush(self._heap, (self._now + max(0.0, delay_s), next(self._seq), handle, fn))
        return handle

    def advance(self, dt_s: float) -> None:
        """Move time forward by ``dt_s`` (>= 0), running every callback due by then."""
        if dt_s < 0:
            raise ValueError(f"cannot go back in time ({dt_s})")
        self.advance_to(self._now + dt_s)

    def advance_to(self, t_s: float) -> None:
        target = max(t_s, self._now)
        same_instant = 0
        while self._heap and self._heap[0][0] <= target:
            due, _, handle, fn = heapq.heappop(self._heap)
            if handle.cancelled:
                continue
            same_instant = same_instant + 1 if due <= self._now else 0
            if same_instant > MAX_CALLBACKS_PER_INSTANT:
                raise AssertionError(f"livelock: over {MAX_CALLBACKS_PER_INSTANT} callbacks at t={self._now}")
            self._now = max(self._now, due)
            fn()
        self._now = target

    def run_due(self) -> None:
        """Run what is due now (e.g. zero-latency replies) without moving time."""
        self.advance(0.0)

    def pending_count(self) -> int:
        return sum(1 for _, _, h, _ in self._heap if not h.cancelled)


# ----- transport -----

@dataclass
class Sent:
    """One UpdateConsensus the Peer handed to the transport."""

    hop: str
    body: dict[str, Any]
    timeout_s: float
    done: Callable[[RpcOutcome], None]
    at: float
    replied: bool = False

    @property
    def dest(self) -> str:
        return str(self.body["dest_uuid"])

    @property
    def ops(self) -> list[dict[str, Any]]:
        return list(self.body.get("ops", []))

    @property
    def op_indexes(self) -> list[int]:
        return [int(op["index"]) for op in self.ops]

    def reply(self, outcome: RpcOutcome) -> None:
        if self.replied:
            raise AssertionError(f"request to {self.dest} at {self.at} answered twice")
        self.replied = True
        self.done(outcome)

    def reply_body(self, body: dict[str, Any]) -> None:
        self.reply(RpcOutcome(body=body))

    def reply_error(self, error: Exception) -> None:
        self.reply(RpcOutcome(error=error))


Responder = Callable[[Sent], RpcOutcome | None]
"""Auto-answer for a send; None leaves it pending for the test to answer by hand."""


class FakeTransport:
    """nodes.peer.PeerTransport recording every send.

    With ``responder`` set for a destination, the answer is delivered ``latency_s`` later through
    the fake clock (never re-entrantly inside ``send_update``). With ``auto_timeout`` a request still
    unanswered after its timeout gets RpcLayerError, as the real RPC client does.
    """

    def __init__(self, clock: FakeClock, hops: Iterable[str]) -> None:
        self.clock = clock
        self.hops = set(hops)
        self.sent: list[Sent] = []
        self.responders: dict[str, Responder] = {}
        self.latency_s = 0.0
        self.auto_timeout = False
        self.max_in_flight: dict[str, int] = {}
        self._in_flight: dict[str, int] = {}

    def has_hop(self, uuid: str) -> bool:
        return uuid in self.hops

    def send_update(self, hop: str, body: dict[str, Any], timeout_s: float,
                    done: Callable[[RpcOutcome], None]) -> None:
        dest = str(body["dest_uuid"])

        def finish(outcome: RpcOutcome) -> None:
            self._in_flight[dest] -= 1
            done(outcome)
        sent = Sent(hop, copy.deepcopy(body), timeout_s, finish, self.clock.now())
        self._in_flight[dest] = self._in_flight.get(dest, 0) + 1
        self.max_in_flight[dest] = max(self.max_in_flight.get(dest, 0), self._in_flight[dest])
        self.sent.append(sent)
        responder = self.responders.get(sent.dest)
        if responder is not None:
            outcome = responder(sent)
            if outcome is not None:
                self.clock.call_later(self.latency_s, lambda: None if sent.replied else sent.reply(outcome))
        if self.auto_timeout:
            def expire() -> None:
                if not sent.replied:
                    sent.reply_error(RpcTimeout(f"UpdateConsensus to {hop} timed out after {timeout_s}s"))
            self.clock.call_later(timeout_s, expire)

    def to(self, dest: str) -> list[Sent]:
        return [s for s in self.sent if s.dest == dest]

    def pending(self, dest: str) -> list[Sent]:
        return [s for s in self.sent if s.dest == dest and not s.replied]

    def last(self, dest: str) -> Sent:
        sends = self.to(dest)
        assert sends, f"nothing was sent to {dest}"
        return sends[-1]


# ----- replies -----

def update_reply(term: int, last_received: OpId | tuple[int, int] = MIN_OPID,
                 lrcl: OpId | tuple[int, int] | None = None, committed: int = 0,
                 error: tuple[str, str] | None = None, uuid: str = "F") -> dict[str, Any]:
    """A follower's UpdateConsensus body (``status`` present; consensus-level ``error`` optional)."""
    lr = OpId(*last_received)
    status: dict[str, Any] = {
        "last_received": list(lr),
        "last_received_current_leader": list(OpId(*(lrcl if lrcl is not None else lr))),
        "last_committed_idx": committed,
    }
    if error is not None:
        status["error"] = {"code": error[0], "message": error[1]}
    return {"responder_uuid": uuid, "responder_term": term, "status": status}


def server_error_reply(code: str = "UNKNOWN_ERROR", message: str = "boom", term: int = 1,
                       uuid: str = "F") -> dict[str, Any]:
    """A server-level error body (tserver error, no consensus status)."""
    return {"responder_uuid": uuid, "responder_term": term, "error": {"code": code, "message": message}}


def ok(body: dict[str, Any]) -> RpcOutcome:
    return RpcOutcome(body=body)


def remote_error(code: str = "SERVICE_UNAVAILABLE", message: str = "too busy") -> RpcOutcome:
    return RpcOutcome(error=RemoteRpcError(code, message))


def rpc_layer_error(message: str = "connection refused") -> RpcOutcome:
    return RpcOutcome(error=RpcLayerError(message))


@dataclass
class FakeFollower:
    """Just enough of RaftConsensus::Update to drive the leader: log matching, append, commit."""

    uuid: str
    term: int = 1
    log: list[OpId] = field(default_factory=list)
    committed: int = 0
    lrcl: OpId = MIN_OPID
    requests: list[dict[str, Any]] = field(default_factory=list)

    @property
    def last(self) -> OpId:
        return self.log[-1] if self.log else MIN_OPID

    def _has(self, opid: OpId) -> bool:
        return opid.index == 0 or (opid.index <= len(self.log) and self.log[opid.index - 1] == opid)

    def handle(self, body: dict[str, Any]) -> dict[str, Any]:
        self.requests.append(body)
        caller_term = int(body["caller_term"])
        if caller_term < self.term:
            return update_reply(self.term, self.last, self.lrcl, self.committed,
                                ("INVALID_TERM", "stale term"), self.uuid)
        self.term = caller_term
        prec = OpId.of(body["preceding_id"])
        if not self._has(prec):
            return update_reply(self.term, self.last, self.lrcl, self.committed,
                                ("PRECEDING_ENTRY_DIDNT_MATCH", "Log matching property violated"),
                                self.uuid)
        ops = [OpId(int(op["term"]), int(op["index"])) for op in body.get("ops", [])]
        if ops:
            del self.log[prec.index:]
            self.log.extend(ops)
        self.lrcl = ops[-1] if ops else prec
        self.committed = max(self.committed, min(int(body["committed_index"]), self.lrcl.index))
        return update_reply(self.term, self.last, self.lrcl, self.committed, None, self.uuid)

    def responder(self, sent: Sent) -> RpcOutcome:
        return ok(self.handle(sent.body))


def script(*steps: Responder, then: Responder) -> Responder:
    """A responder answering the first sends with ``steps`` in order, every later one with ``then``."""
    queue = list(steps)

    def respond(sent: Sent) -> RpcOutcome | None:
        return queue.pop(0)(sent) if queue else then(sent)
    return respond


def always(outcome: RpcOutcome) -> Responder:
    return lambda sent: outcome


# ----- faults -----

class InjectedCrash(Exception):
    """Raised by the fake exit function where the node would call os._exit."""

    def __init__(self, code: int) -> None:
        super().__init__(f"injected crash, exit status {code}")
        self.code = code


def crash_exit(code: int) -> NoReturn:
    raise InjectedCrash(code)


# ----- leader fixture -----

def make_entries(n: int, term: int = 1, start: int = 1, payload_bytes: int = 8) -> list[LogEntry]:
    return [LogEntry(term, i, "WRITE", {"key": f"k{i}", "value": "v" * payload_bytes})
            for i in range(start, start + n)]


class LeaderFixture:
    """A leader's queue in leader mode with its local peer acked and one Peer per remote voter.

    ``notify_commits`` mimics consensus: a commit advance signals every peer with False on the
    next clock turn (kuduraft's observer token). Followers get a FakeFollower auto-responder
    unless listed in ``manual``.
    """

    def __init__(self, *, voters: Iterable[str] = ("A", "B", "C"), leader: str = "A",
                 n_entries: int = 0, term: int = 1, entry_term: int | None = None,
                 committed: int = 0, flags: Mapping[str, Any] | None = None, seed: int = 1,
                 topology: Mapping[str, str] | None = None, peers: Iterable[str] | None = None,
                 manual: Iterable[str] = (), notify_commits: bool = True,
                 non_voters: Iterable[str] = ()) -> None:
        self.leader = leader
        self.voters = list(voters)
        self.term = term
        self.topology = dict(topology or {})
        self.clock = FakeClock()
        self.flags = Flags(dict(flags or {}))
        self.rng = random.Random(seed)
        self.fault_rng = random.Random(seed * 7919 + 1)
        self.faults = FaultPoints(self.flags, self.fault_rng, LOG, exit_fn=crash_exit)
        self.log = RaftLog(make_entries(n_entries, entry_term if entry_term is not None else term))
        self.transport = FakeTransport(self.clock, self.voters + list(non_voters))
        self.commits: list[int] = []
        self.higher_terms: list[int] = []
        self.notify_commits = notify_commits
        self.queue = PeerMessageQueue(leader, self.log, self.clock, self.flags, self.routing,
                                      self._on_commit, self.higher_terms.append, LOG)
        self.queue.set_leader_mode(committed, term, set(self.voters))
        first = next((e.index for e in self._entries() if e.term == term), None)
        if first is not None:
            self.queue.note_first_index_in_term(first)
        self.queue.local_peer_appended(self.log.last_opid)
        self.followers: dict[str, FakeFollower] = {}
        self.peers: dict[str, Peer] = {}
        remote = [u for u in (peers if peers is not None else self.voters) if u != leader]
        for uuid in remote:
            self.add_peer(uuid, manual=uuid in set(manual))

    def _entries(self) -> list[LogEntry]:
        return [self.log.get(i) for i in range(self.log.first_index, self.log.last_index + 1)]

    def routing(self) -> RoutingTable:
        return RoutingTable(self.voters, self.topology, self.leader)

    def add_peer(self, uuid: str, manual: bool = False) -> Peer:
        follower = self.followers.setdefault(uuid, FakeFollower(uuid, term=self.term))
        if not manual:
            self.transport.responders[uuid] = follower.responder
        peer = Peer(uuid, self.leader, self.queue, self.transport, self.clock, self.flags,
                    self.rng, self.faults, LOG)
        self.peers[uuid] = peer
        peer.init()
        return peer

    def rebuild_peers(self, term: int) -> None:
        """Become leader again in ``term``: close every Peer, reset the queue, create new Peers."""
        for peer in self.peers.values():
            peer.close()
        remote = list(self.peers)
        manual = [u for u in remote if u not in self.transport.responders]
        self.peers.clear()
        self.term = term
        self.queue.set_leader_mode(self.queue.committed_index, term, set(self.voters))
        self.queue.local_peer_appended(self.log.last_opid)
        for uuid in remote:
            self.add_peer(uuid, manual=uuid in manual)

    def _on_commit(self, index: int) -> None:
        self.commits.append(index)
        if self.notify_commits:
            self.clock.call_later(0.0, lambda: self.signal_all(False))

    def signal_all(self, even_if_queue_empty: bool = False) -> None:
        for peer in list(self.peers.values()):
            peer.signal_request(even_if_queue_empty)

    def append(self, n: int = 1, signal: bool = True, payload_bytes: int = 8) -> list[LogEntry]:
        """Leader write path: append, the local WAL acks at once, then signal peers (Replicate)."""
        entries = make_entries(n, self.term, self.log.last_index + 1, payload_bytes)
        for e in entries:
            self.log.append(e)
            self.queue.note_first_index_in_term(e.index)
            self.queue.local_peer_appended(OpId(e.term, e.index))
        if signal:
            self.signal_all(False)
        return entries

    def responder(self, dest: str, fn: Responder | None) -> None:
        if fn is None:
            self.transport.responders.pop(dest, None)
        else:
            self.transport.responders[dest] = fn

    def settle(self) -> None:
        """Deliver everything due now (zero-latency replies and the sends they trigger)."""
        self.clock.run_due()

    def caught_up(self, uuid: str) -> None:
        """Run the negotiation so ``uuid``'s follower holds the leader's whole log (status OK)."""
        f = self.followers[uuid]
        f.log = [OpId(e.term, e.index) for e in self._entries()]
        f.committed = self.queue.committed_index
        self.peers[uuid].signal_request(True)
        self.settle()
