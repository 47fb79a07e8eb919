"""kuduraft's PeerMessageQueue: per-peer cursors, request building, watermarks and commit index."""

from __future__ import annotations

import enum
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NoReturn

from nodes.clock import Clock
from nodes.flags import Flags
from nodes.log import MIN_OPID, LogGone, LogReadAhead, OpId, RaftLog
from nodes.routing import RoutingError, RoutingTable

InvariantHook = Callable[[str, int, dict[str, str | None], dict[str, list[int]], str], NoReturn]
"""(what, term, uuids, op ids, message): the node's abort on a broken invariant."""

LMP_MISMATCH_CODE = "PRECEDING_ENTRY_DIDNT_MATCH"
INVALID_TERM_CODE = "INVALID_TERM"


class PeerStatus(enum.Enum):
    NEW = "NEW"
    OK = "OK"
    REMOTE_ERROR = "REMOTE_ERROR"
    RPC_LAYER_ERROR = "RPC_LAYER_ERROR"
    INVALID_TERM = "INVALID_TERM"
    CANNOT_PREPARE = "CANNOT_PREPARE"
    LMP_MISMATCH = "LMP_MISMATCH"


class Health(enum.Enum):
    UNKNOWN = "UNKNOWN"
    HEALTHY = "HEALTHY"
    FAILED = "FAILED"
    FAILED_UNRECOVERABLE = "FAILED_UNRECOVERABLE"


class QueueError(Exception):
    """RequestForPeer could not build a request; the Peer counts it as a failed attempt."""


class PeerNotTracked(QueueError):
    pass


@dataclass
class TrackedPeer:
    uuid: str
    voter: bool
    next_index: int
    last_communication_time: float
    last_received: OpId = MIN_OPID
    last_known_committed_index: int = 0
    status: PeerStatus = PeerStatus.NEW
    wal_catchup_possible: bool = True
    health: Health = Health.UNKNOWN


@dataclass(frozen=True)
class UpdateResponse:
    """The fields of an UpdateConsensus reply the queue reads, validated from the wire dict."""

    responder_term: int
    last_received: OpId
    last_received_current_leader: OpId
    last_committed_index: int
    error_code: str | None = None
    error_message: str = ""

    @classmethod
    def parse(cls, body: dict[str, Any]) -> UpdateResponse:
        """Raise ValueError naming the first missing or ill-typed field."""
        status = body.get("status")
        if not isinstance(status, dict):
            raise ValueError("response has no 'status' object")
        term = body.get("responder_term")
        committed = status.get("last_committed_idx")
        if not isinstance(term, int) or not isinstance(committed, int):
            raise ValueError("response lacks integer responder_term / last_committed_idx")
        err = status.get("error")
        code = msg = None
        if err is not None:
            if not isinstance(err, dict) or not isinstance(err.get("code"), str):
                raise ValueError("status.error must be an object with a string code")
            code, msg = err["code"], str(err.get("message", ""))
        return cls(term, OpId.of(status.get("last_received")),
                   OpId.of(status.get("last_received_current_leader")), committed, code, msg or "")


@dataclass
class QueueWatermarks:
    committed_index: int = 0
    majority_replicated_index: int = 0
    all_replicated_index: int = 0
    first_index_in_current_term: int | None = None


@dataclass
class RequestPlan:
    """What RequestForPeer decided besides the request body: where it goes."""

    next_hop: str
    proxied: bool = False


class PeerMessageQueue:
    """Decides what each peer gets next and turns acks into the commit index.

    ``on_commit(index)`` and ``on_higher_term(term)`` are consensus's observers; consensus
    delivers them asynchronously, as kuduraft does on its serial notification token.
    """

    def __init__(self, local_uuid: str, log: RaftLog, clock: Clock, flags: Flags,
                 routing: Callable[[], RoutingTable],
                 on_commit: Callable[[int], None], on_higher_term: Callable[[int], None],
                 logger: logging.Logger | None = None,
                 on_invariant_violation: InvariantHook | None = None) -> None:
        self.local_uuid = local_uuid
        self._log = log
        self._clock = clock
        self._flags = flags
        self._routing = routing
        self._on_commit = on_commit
        self._on_higher_term = on_higher_term
        self._logger = logger or logging.getLogger("raftchaos.queue")
        self._on_invariant_violation = on_invariant_violation
        self.peers: dict[str, TrackedPeer] = {}
        self.leader_mode = False
        self.term = 0
        self.majority_size = 1
        self.marks = QueueWatermarks()

    # ----- modes and tracking -----
    def set_leader_mode(self, committed_index: int, term: int, voters: set[str]) -> None:
        self.leader_mode = True
        self.term = term
        self.marks.committed_index = committed_index
        self.marks.majority_replicated_index = committed_index
        self.marks.first_index_in_current_term = None
        self.majority_size = len(voters) // 2 + 1
        self.untrack_peer(self.local_uuid)
        self.track_peer(self.local_uuid, voter=True)
        now = self._clock.now()
        for peer in self.peers.values():
            peer.last_communication_time = now

    def set_non_leader_mode(self) -> None:
        self.leader_mode = False

    def track_peer(self, uuid: str, voter: bool = True) -> TrackedPeer:
        peer = TrackedPeer(uuid, voter, self._log.last_index + 1, self._clock.now())
        self.peers[uuid] = peer
        self.marks.all_replicated_index = 0
        return peer

    def untrack_peer(self, uuid: str) -> None:
        self.peers.pop(uuid, None)

    def note_first_index_in_term(self, index: int) -> None:
        """The leader's first op of its own term (its NO_OP); nothing commits before it."""
        if self.marks.first_index_in_current_term is None:
            self.marks.first_index_in_current_term = index

    @property
    def committed_index(self) -> int:
        return self.marks.committed_index

    # ----- RequestForPeer -----
    def request_for_peer(self, uuid: str, read_ops: bool, request: dict[str, Any]) -> RequestPlan:
        """Fill the reused ``request`` for ``uuid``; raise QueueError when nothing can be built."""
        peer = self.peers.get(uuid)
        if peer is None or not self.leader_mode:
            raise PeerNotTracked(f"peer {uuid} is not tracked or the queue is not in leader mode")
        log = self._log
        request["committed_index"] = self.marks.committed_index
        request["all_replicated_index"] = self.marks.all_replicated_index
        request["last_idx_appended_to_leader"] = log.last_index
        request["caller_term"] = self.term
        request["region_durable_index"] = self.marks.committed_index
        request["ops"] = []
        try:
            hop = self._routing().next_hop(self.local_uuid, uuid)
        except RoutingError as e:
            raise QueueError(str(e)) from None
        try:
            plan = RequestPlan(next_hop=hop)
            if hop != uuid and not self._proxy_usable(hop, peer):
                hop = plan.next_hop = uuid
            plan.proxied = hop != uuid
            if plan.proxied:
                request["proxy_dest_uuid"] = hop
            else:
                request.pop("proxy_dest_uuid", None)
            if peer.status is not PeerStatus.NEW and read_ops:
                self._read_ops(peer, request, plan)
            else:
                request["preceding_id"] = list(log.last_opid)
            if not request["ops"] and self._flags["safe_time_advancement_without_writes"]:
                request["safe_timestamp"] = self._clock.now()
            return plan
        finally:
            self._update_health(peer)

    def _read_ops(self, peer: TrackedPeer, request: dict[str, Any], plan: RequestPlan) -> None:
        log = self._log
        try:
            prev_term = log.term_at(peer.next_index - 1)
            if prev_term is None:
                if peer.next_index - 1 > log.last_index:
                    raise LogReadAhead(f"peer {peer.uuid} next_index {peer.next_index} is past the log")
                raise LogGone(f"entry {peer.next_index - 1} was garbage-collected")
            entries = log.read(peer.next_index, int(self._flags["consensus_max_batch_size_bytes"]))
        except LogGone as e:
            peer.wal_catchup_possible = False
            raise QueueError(f"cannot read ops for {peer.uuid}: {e}") from None
        except LogReadAhead as e:
            raise QueueError(f"cannot read ops for {peer.uuid}: {e}") from None
        peer.wal_catchup_possible = True
        request["preceding_id"] = [prev_term, peer.next_index - 1]
        if plan.proxied:
            request["ops"] = [{"kind": "PROXY_OP", "term": e.term, "index": e.index} for e in entries]
        else:
            request["ops"] = [e.to_json() for e in entries]

    def _proxy_usable(self, proxy: str, dest: TrackedPeer) -> bool:
        """kuduraft's single-hop proxy health check (B45)."""
        p = self.peers.get(proxy)
        if p is None:
            return False
        threshold_s = float(self._flags["raft_proxy_failure_threshold_ms"]) / 1000.0
        if self._clock.now() - p.last_communication_time > threshold_s:
            return False
        return dest.next_index - p.next_index <= int(self._flags["raft_proxy_failure_lag_ops"])

    def _update_health(self, peer: TrackedPeer) -> None:
        if not self._flags["update_peer_health_status"]:
            return
        fail_s = float(self._flags["follower_unavailable_considered_failed_sec"])
        if not peer.wal_catchup_possible:
            peer.health = Health.FAILED_UNRECOVERABLE
        elif self._clock.now() - peer.last_communication_time > fail_s:
            peer.health = Health.FAILED
        elif peer.status is PeerStatus.OK:
            peer.health = Health.HEALTHY
        else:
            peer.health = Health.UNKNOWN

    # ----- responses -----
    def update_peer_status(self, uuid: str, status: PeerStatus) -> None:
        peer = self.peers.get(uuid)
        if peer is None or not self.leader_mode:
            return
        peer.status = status
        if status is not PeerStatus.RPC_LAYER_ERROR:
            peer.last_communication_time = self._clock.now()

    def response_from_peer(self, uuid: str, resp: UpdateResponse) -> bool:
        """Move the peer's cursor and the watermarks; True = send the next request at once."""
        peer = self.peers.get(uuid)
        if peer is None or not self.leader_mode:
            return False
        peer.last_communication_time = self._clock.now()
        peer.last_known_committed_index = resp.last_committed_index
        send_more = False
        if resp.error_code is None:
            peer.status = PeerStatus.OK
        elif resp.error_code == LMP_MISMATCH_CODE:
            peer.status = PeerStatus.LMP_MISMATCH
            send_more = True
        elif resp.error_code == INVALID_TERM_CODE:
            peer.status = PeerStatus.INVALID_TERM
            self._on_higher_term(resp.responder_term)
        else:
            raise ValueError(f"unexpected consensus error {resp.error_code} from {uuid}")

        if self._log.has(resp.last_received):
            peer.last_received = resp.last_received
            peer.next_index = resp.last_received.index + 1
        elif resp.last_received_current_leader.index != 0:
            peer.last_received = resp.last_received_current_leader
            peer.next_index = resp.last_received_current_leader.index + 1
        else:
            peer.next_index = resp.last_committed_index + 1

        if peer.status is not PeerStatus.OK:
            return send_more
        if resp.responder_term > self.term:
            # consensus_queue.cc, PeerMessageQueue::ResponseFromPeer: a reply without an error
            # means the peer's term is not above ours, CHECK_LE(responder_term, current_term).
            message = (f"peer {uuid} answered OK with term {resp.responder_term} above the "
                       f"leader's term {self.term}")
            if self._on_invariant_violation is None:
                raise AssertionError(message)
            self._on_invariant_violation(
                "ok_reply_with_higher_term", self.term,
                {"leader": self.local_uuid, "peer": uuid},
                {"last_received": list(resp.last_received),
                 "last_received_current_leader": list(resp.last_received_current_leader)},
                message)
        self._advance_watermarks()
        return (resp.last_committed_index < self.marks.committed_index
                or peer.next_index <= self._log.last_index)

    def local_peer_appended(self, opid: OpId) -> None:
        """The leader's own WAL made ``opid`` durable: it counts toward the majority now."""
        peer = self.peers.get(self.local_uuid)
        if peer is None or not self.leader_mode:
            return
        peer.status = PeerStatus.OK
        peer.health = Health.HEALTHY
        peer.last_communication_time = self._clock.now()
        if opid > peer.last_received:
            peer.last_received = opid
            peer.next_index = opid.index + 1
        self._advance_watermarks()

    def _advance_watermarks(self) -> None:
        if not self.leader_mode:
            return
        acked = sorted((p.last_received.index for p in self.peers.values()
                        if p.voter and p.status is PeerStatus.OK), reverse=True)
        if len(acked) >= self.majority_size:
            self.marks.majority_replicated_index = acked[self.majority_size - 1]
        every = [p for p in self.peers.values()]
        if every and all(p.status is PeerStatus.OK for p in every):
            self.marks.all_replicated_index = min(p.last_received.index for p in every)
        first = self.marks.first_index_in_current_term
        maj = self.marks.majority_replicated_index
        if first is not None and maj >= first and maj > self.marks.committed_index:
            self.marks.committed_index = maj
            self._on_commit(maj)

    def peer_view(self, uuid: str) -> dict[str, Any]:
        p = self.peers[uuid]
        return {
            "status": p.status.value, "health": p.health.value, "next_index": p.next_index,
            "last_received": list(p.last_received),
            "last_known_committed_index": p.last_known_committed_index,
            "last_contact_age_ms": round((self._clock.now() - p.last_communication_time) * 1000, 1),
            "wal_catchup_possible": p.wal_catchup_possible, "voter": p.voter,
        }
