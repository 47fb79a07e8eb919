"""kuduraft's Peer (consensus_peers.cc): the leader's per-follower request loop."""

from __future__ import annotations

import enum
import logging
import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from nodes.clock import Clock
from nodes.events import NodeEvents
from nodes.faultpoints import FaultPoints
from nodes.flags import Flags
from nodes.queue import PeerMessageQueue, PeerStatus, QueueError, UpdateResponse
from nodes.rpc import RemoteRpcError, RpcLayerError, RpcTimeout
from nodes.timer import PeriodicTimer

ROTATE_EVENT_TEXT = "Previous Rotate Event with"
ERROR_LOG_THROTTLE_S = 300.0


class Trigger(enum.Enum):
    """Why SendNextRequest ran, named after kuduraft's call sites (consensus_peers.cc): SIGNAL is
    Peer::SignalRequest from PeerManager (a replicate or a commit-index advance), HEARTBEAT the
    heartbeater's callback, SEND_MORE DoProcessResponse asking for the next batch at once. The
    counters tell heartbeats from write-driven sends; the event trace records it per request."""

    SIGNAL = "signal"
    HEARTBEAT = "heartbeat"
    SEND_MORE = "send_more"


@dataclass
class RpcOutcome:
    """An UpdateConsensus result: the reply body, or the RPC-level exception."""

    body: dict[str, Any] | None = None
    error: Exception | None = None


def outcome_name(outcome: RpcOutcome) -> str:
    """How one UpdateConsensus ended, for the event trace: ``ok``, the consensus error code in
    lower case (``preceding_entry_didnt_match``, ``invalid_term``, ...), ``server_error``, ``remote_error`` (RPC-level
    error from the server), ``timeout`` or ``rpc_error`` (no answer)."""
    if outcome.error is not None:
        if isinstance(outcome.error, RpcTimeout):
            return "timeout"
        return "remote_error" if isinstance(outcome.error, RemoteRpcError) else "rpc_error"
    body = outcome.body or {}
    if body.get("error") is not None:
        return "server_error"
    status = body.get("status")
    error = status.get("error") if isinstance(status, dict) else None
    code = error.get("code") if isinstance(error, dict) else None
    return str(code).lower() if code else "ok"


class PeerTransport(Protocol):
    def has_hop(self, uuid: str) -> bool: ...

    def send_update(self, hop: str, body: dict[str, Any], timeout_s: float,
                    done: Callable[[RpcOutcome], None]) -> None: ...


@dataclass
class PeerCounters:
    requests_sent: int = 0
    requests_with_ops: int = 0
    status_only_requests: int = 0
    heartbeat_sends: int = 0
    signals_dropped_pending: int = 0
    signals_suppressed_failed: int = 0
    ops_read: int = 0
    heartbeater_snoozes: int = 0
    proxied_sends: int = 0
    responses_ok: int = 0
    responses_error: int = 0
    request_for_peer_errors: int = 0
    in_flight: int = 0
    max_in_flight: int = 0


class Peer:
    """One remote member as seen by the leader: one request in flight, a heartbeater, a retry rule.

    Everything runs on the node's event loop, which stands in for kuduraft's peer lock and
    raft thread-pool token: a signal arriving while a request is pending is dropped.
    """

    def __init__(self, uuid: str, leader_uuid: str, queue: PeerMessageQueue,
                 transport: PeerTransport, clock: Clock, flags: Flags, rng: random.Random,
                 faults: FaultPoints, logger: logging.Logger | None = None,
                 tablet_id: str = "raftchaos", events: NodeEvents | None = None) -> None:
        self.uuid = uuid
        self.leader_uuid = leader_uuid
        self._queue = queue
        self._transport = transport
        self._clock = clock
        self._flags = flags
        self._faults = faults
        self._logger = logger or logging.getLogger("raftchaos.peer")
        self._tablet_id = tablet_id
        self.request_pending = False
        self.failed_attempts = 0
        self.closed = False
        self.has_sent_first_request = False
        self.counters = PeerCounters()
        self.last_request_kind: str | None = None
        self.last_hop: str | None = None
        self._request: dict[str, Any] = {}
        self._last_error_log_at: float | None = None
        # Observability only (not in kuduraft): the node's trace of this peer's requests/replies.
        self.events = events if events is not None else NodeEvents(clock)
        self._term = queue.term  # the leader's term this Peer serves (it is rebuilt every term)
        self.heartbeater = PeriodicTimer(clock, flags.heartbeat_s, self._on_heartbeat, rng)

    def init(self) -> None:
        """Track the peer in the queue and start the heartbeater (first beat in 0.75P..1.25P)."""
        self._queue.track_peer(self.uuid, voter=True)
        self.heartbeater.start()

    def _on_heartbeat(self) -> None:
        self.signal_request(True, Trigger.HEARTBEAT)

    def signal_request(self, even_if_queue_empty: bool, trigger: Trigger = Trigger.SIGNAL) -> bool:
        """Ask for a send; dropped (not remembered) while one is pending. False once closed."""
        if self.request_pending:
            self.counters.signals_dropped_pending += 1
            return True
        if self.closed:
            return False
        self._send_next_request(even_if_queue_empty, trigger)
        return True

    def _send_next_request(self, even_if_queue_empty: bool, trigger: Trigger) -> None:
        if self.closed or self.request_pending:
            return
        first = not self.has_sent_first_request
        if first:
            # The negotiation round goes out even with nothing to send.
            even_if_queue_empty = True
            self.has_sent_first_request = True
        if self.failed_attempts > 0 and not even_if_queue_empty:
            # After an error, per-op signals wait for the heartbeat.
            self.counters.signals_suppressed_failed += 1
            return
        read_ops = self.failed_attempts <= 0
        self.request_pending = True
        request = self._request
        commit_before = int(request.get("committed_index", 0))
        try:
            plan = self._queue.request_for_peer(self.uuid, read_ops, request)
        except QueueError as e:
            self.failed_attempts += 1
            self.counters.request_for_peer_errors += 1
            self.events.record_peer(self.uuid, "request_error", term=self._term,
                                    trigger=trigger.value, error=str(e))
            self._logger.debug("RequestForPeer(%s) failed: %s", self.uuid, e)
            self.request_pending = False
            return
        request["tablet_id"] = self._tablet_id
        request["caller_uuid"] = self.leader_uuid
        request["dest_uuid"] = self.uuid
        n_ops = len(request["ops"])
        commit_after = int(request.get("committed_index", 0))
        has_ops = n_ops > 0 or commit_after > commit_before
        if not has_ops and not even_if_queue_empty:
            self.request_pending = False
            return
        if has_ops:
            self.heartbeater.snooze()
            self.counters.heartbeater_snoozes += 1
        self._faults.maybe_fault("fault_crash_on_leader_request_fraction")
        hop = plan.next_hop
        if hop != self.uuid:
            request["proxy_hops_remaining"] = int(self._flags["raft_proxy_max_hops"])
        if not self._transport.has_hop(hop):
            self._logger.critical("peer with uuid %s not found in peer proxy pool", hop)
            raise SystemExit(1)
        self._count_send(trigger, read_ops, n_ops, commit_after > commit_before, plan.proxied)
        self.last_hop = hop
        self.events.record_peer(self.uuid, "request", term=self._term,
                                req=self.counters.requests_sent, request_kind=self.last_request_kind,
                                ops=n_ops, trigger=trigger.value, first=first, hop=hop,
                                proxied=plan.proxied)
        body = dict(request)
        body["ops"] = list(request["ops"])
        self._transport.send_update(hop, body, self._flags.rpc_timeout_s, self._process_response)

    def _count_send(self, trigger: Trigger, read_ops: bool, n_ops: int, commit_moved: bool,
                    proxied: bool) -> None:
        c = self.counters
        c.requests_sent += 1
        c.ops_read += n_ops
        c.in_flight += 1
        c.max_in_flight = max(c.max_in_flight, c.in_flight)
        if n_ops:
            c.requests_with_ops += 1
            kind = "ops"
        elif not read_ops:
            c.status_only_requests += 1
            kind = "status_only"
        elif commit_moved:
            kind = "commit_only"
        elif trigger is Trigger.HEARTBEAT:
            kind = "heartbeat"
        else:
            kind = "empty"
        if trigger is Trigger.HEARTBEAT:
            c.heartbeat_sends += 1
        if proxied:
            c.proxied_sends += 1
        self.last_request_kind = kind

    def _process_response(self, outcome: RpcOutcome) -> None:
        self.counters.in_flight -= 1
        if self.closed:
            # A late reply to a closed peer is ignored; pending stays set.
            self._record_reply(outcome_name(outcome), ignored=True)
            return
        self._faults.maybe_fault("fault_crash_after_leader_request_fraction")
        if outcome.error is not None:
            status = (PeerStatus.REMOTE_ERROR if isinstance(outcome.error, RemoteRpcError)
                      else PeerStatus.RPC_LAYER_ERROR)
            if not isinstance(outcome.error, RemoteRpcError | RpcLayerError):
                self._logger.error("unexpected RPC failure to %s: %r", self.uuid, outcome.error)
            self._record_reply(outcome_name(outcome), error=str(outcome.error))
            self._queue.update_peer_status(self.uuid, status)
            self._process_response_error(status, str(outcome.error))
            return
        body = outcome.body or {}
        server_error = body.get("error")
        if server_error is not None:
            self._record_reply("server_error", error=str(server_error))
            self._queue.update_peer_status(self.uuid, PeerStatus.REMOTE_ERROR)
            self._process_response_error(PeerStatus.REMOTE_ERROR, f"server error: {server_error}")
            return
        try:
            resp = UpdateResponse.parse(body)
        except ValueError as e:
            self._record_reply("malformed", error=str(e))
            self._queue.update_peer_status(self.uuid, PeerStatus.REMOTE_ERROR)
            self._process_response_error(PeerStatus.REMOTE_ERROR, f"malformed response: {e}")
            return
        self._record_reply(outcome_name(outcome), responder_term=resp.responder_term)
        if resp.error_code == "CANNOT_PREPARE":
            self._queue.update_peer_status(self.uuid, PeerStatus.CANNOT_PREPARE)
            self._process_response_error(PeerStatus.CANNOT_PREPARE, resp.error_message)
            return
        if resp.error_code not in (None, "PRECEDING_ENTRY_DIDNT_MATCH", "INVALID_TERM"):
            self._queue.update_peer_status(self.uuid, PeerStatus.REMOTE_ERROR)
            self._process_response_error(PeerStatus.REMOTE_ERROR,
                                         f"unexpected consensus error {resp.error_code}")
            return
        self._do_process_response(resp)

    def _record_reply(self, outcome: str, **fields: Any) -> None:
        """The reply (or failure) of the one request in flight: its ``req`` is the last sent."""
        self.events.record_peer(self.uuid, "reply", term=self._term, req=self.counters.requests_sent,
                                outcome=outcome, **fields)

    def _do_process_response(self, resp: UpdateResponse) -> None:
        # Pending stays set while the queue digests the reply, so signals meanwhile are dropped.
        send_more = self._queue.response_from_peer(self.uuid, resp)
        self.counters.responses_ok += 1
        self.failed_attempts = 0
        self.request_pending = False
        if send_more:
            self._send_next_request(True, Trigger.SEND_MORE)

    def _process_response_error(self, status: PeerStatus, message: str) -> None:
        self.request_pending = False
        self.counters.responses_error += 1
        if status is PeerStatus.CANNOT_PREPARE and ROTATE_EVENT_TEXT in message:
            return  # binlog rotation: not a failure, the next write goes out at once (B9)
        self.failed_attempts += 1
        now = self._clock.now()
        if self._last_error_log_at is None or now - self._last_error_log_at >= ERROR_LOG_THROTTLE_S:
            self._last_error_log_at = now
            self._logger.warning("couldn't send request to peer %s (%s): %s; failed attempts %d",
                                 self.uuid, status.value, message, self.failed_attempts)

    def close(self) -> None:
        """Stop sending; an in-flight RPC is not cancelled and its reply will be ignored."""
        if self.closed:
            return
        self.closed = True
        self.heartbeater.stop()
        self._queue.untrack_peer(self.uuid)

    def view(self) -> dict[str, Any]:
        """This peer's entry in /status (see docs/node-api.md)."""
        c = self.counters
        out = self._queue.peer_view(self.uuid) if self.uuid in self._queue.peers else {}
        out.update({
            "failed_attempts": self.failed_attempts,
            "request_pending": self.request_pending,
            "next_hop": self.last_hop,
            "last_request_kind": self.last_request_kind,
            "counters": {
                "requests_sent": c.requests_sent, "requests_with_ops": c.requests_with_ops,
                "status_only_requests": c.status_only_requests,
                "heartbeat_sends": c.heartbeat_sends,
                "signals_dropped_pending": c.signals_dropped_pending,
                "signals_suppressed_failed": c.signals_suppressed_failed,
                "ops_read": c.ops_read, "heartbeater_snoozes": c.heartbeater_snoozes,
                "proxied_sends": c.proxied_sends, "responses_ok": c.responses_ok,
                "responses_error": c.responses_error,
                "request_for_peer_errors": c.request_for_peer_errors,
                "max_in_flight": c.max_in_flight,
            },
        })
        return out
