"""RaftConsensus: the one owner of term, vote, log and role; leader write path and commit/apply."""

from __future__ import annotations

import asyncio
import enum
import logging
import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from nodes.clock import Clock
from nodes.config import ClusterConfig
from nodes.events import NodeEvents
from nodes.faultpoints import FaultPoints
from nodes.flags import Flags
from nodes.kv import KvStore
from nodes.log import MIN_OPID, OpId, RaftLog
from nodes.meta import MetadataStore, MetadataWriter
from nodes.peer import Peer, PeerTransport
from nodes.queue import PeerMessageQueue
from nodes.routing import RoutingTable
from nodes.slot import CallbackSlot
from nodes.storage import WalWriter
from nodes.timer import PeriodicTimer
from nodes.wal import LogEntry


class Role(enum.Enum):
    LEADER = "LEADER"
    FOLLOWER = "FOLLOWER"
    CANDIDATE = "CANDIDATE"


class NotLeader(Exception):
    """Definitely not executed: this node is not the leader (carries the leader hint)."""

    def __init__(self, leader: str | None) -> None:
        super().__init__(f"not the leader (leader: {leader})")
        self.leader = leader


class LeadershipLost(Exception):
    """Indeterminate: the op was appended but leadership changed before it committed here."""


Waiter = asyncio.Future[dict[str, Any]] | CallbackSlot[dict[str, Any]]
"""Who hears that a client op was applied (its result) or lost (LeadershipLost)."""


class RpcCaller(Protocol):
    async def call(self, uuid: str, rpc: str, body: dict[str, Any], timeout_s: float) -> dict[str, Any]:
        ...


@dataclass
class ConsensusCounters:
    elections_started: int = 0
    pre_elections_started: int = 0
    elections_won: int = 0
    updates_received: int = 0
    updates_rejected: int = 0
    step_downs: int = 0


class RaftConsensus:
    """State owner. Elections (election.py), follower updates (update.py) and proxying
    (proxy.py) act on it through its methods; nothing else mutates term, vote, log or role.
    """

    def __init__(self, uuid: str, config: ClusterConfig, flags: Flags, clock: Clock,
                 rng: random.Random, meta: MetadataStore, writer: WalWriter, log: RaftLog,
                 peer_transport: PeerTransport, rpc: RpcCaller, faults: FaultPoints,
                 logger: logging.Logger) -> None:
        self.uuid = uuid
        self.config = config
        self.flags = flags
        self.clock = clock
        self.rng = rng
        self.meta = meta
        self.writer = writer
        self.log = log
        self.peer_transport = peer_transport
        self.rpc = rpc
        self.faults = faults
        self.logger = logger
        self.kv = KvStore()
        self.term, self.voted_for = meta.load()
        self.meta_writer = MetadataWriter(meta, self._meta_flush_failed)
        self.role = Role.FOLLOWER
        self.leader_uuid: str | None = None
        self.commit_index = 0
        self.applied_index = 0
        self.durable_index = log.last_index
        self.last_received_cur_leader: OpId = MIN_OPID
        self.withhold_votes_until = 0.0
        self.last_leader_contact: float | None = None
        self.failed_elections = 0
        self.counters = ConsensusCounters()
        self.events = NodeEvents(clock)  # observability only (GET /events), never read back
        self.update_lock = asyncio.Lock()
        self.peers: dict[str, Peer] = {}
        if not faults.uuid:
            faults.uuid = uuid
        if faults.data_dir is None:
            faults.data_dir = meta.directory
        self.queue = PeerMessageQueue(uuid, log, clock, flags, self.routing_table,
                                      self._on_queue_commit, self._on_queue_higher_term, logger,
                                      on_invariant_violation=faults.invariant_violation)
        self._waiters: dict[int, tuple[int, Waiter]] = {}
        # The WAL batch the leader's appends are joining: its future and [its last entry so far].
        self._local_batch: tuple[asyncio.Future[None], list[LogEntry]] | None = None
        self._notify_at = 0.0
        self._token_pending = 0  # tasks queued on the serial notification token
        self.fd = PeriodicTimer(clock, flags.failure_timeout_s, self._on_fd_expired, rng)
        self.elections: Any = None  # set by election.Elections (it needs this object first)

    # ----- membership and routing -----
    @property
    def voters(self) -> list[str]:
        return self.config.voters

    @property
    def majority(self) -> int:
        return len(self.voters) // 2 + 1

    def routing_table(self) -> RoutingTable:
        return RoutingTable(self.voters, self.config.topology, self.leader_uuid)

    # ----- durable state -----
    def persist(self) -> int:
        """Request a flush of term and vote (on the metadata writer's thread); returns its version.

        Whatever depends on them (a vote grant, a reply or request carrying the term) must
        ``await meta_durable()`` before it leaves: the consensus service gates every reply so,
        and elections gate their vote requests. fault_crash_before_cmeta_flush fires here, where
        kuduraft's ConsensusMetadata::Flush is called, before any byte is written."""
        self.faults.maybe_fault("fault_crash_before_cmeta_flush")
        return self.meta_writer.request(self.term, self.voted_for)

    async def meta_durable(self, version: int | None = None) -> None:
        """Until ``version`` (default: the newest requested) of term and vote is on disk."""
        await self.meta_writer.wait_durable(version)

    def _meta_flush_failed(self, e: Exception) -> None:
        """kuduraft CHECKs every consensus-metadata flush (raft_consensus.cc,
        SetCurrentTermUnlocked / SetVotedForCurrentTermUnlocked: CHECK_OK(cmeta_->Flush())):
        a failed save is a fatal storage error, exit 74, like a failed WAL write."""
        self.faults.storage_fatal("cmeta_flush_failed", f"consensus metadata flush failed: {e!r}")

    def adopt_term(self, term: int, *, reason: str, flush: bool = True) -> None:
        """Move to a higher term: clear the vote, step down if leading, flush (``flush=False`` only
        when the caller flushes right after, e.g. together with a vote)."""
        if term <= self.term:
            return
        self.logger.info("advancing to term %d (%s)", term, reason)
        was_leader = self.role is Role.LEADER
        self.term = term
        self.voted_for = None
        self.leader_uuid = None
        self.last_received_cur_leader = MIN_OPID
        if flush:
            self.persist()
        if was_leader or self.role is Role.CANDIDATE:
            self.become_follower(reason)

    # ----- roles -----
    def become_follower(self, reason: str) -> None:
        was_leader = self.role is Role.LEADER
        self.role = Role.FOLLOWER
        if was_leader:
            self.logger.info("stepping down in term %d: %s", self.term, reason)
            self.counters.step_downs += 1
            self.events.record_node("stepped_down", term=self.term, reason=reason)
            self._close_peers()
            self.queue.set_non_leader_mode()
            self._fail_waiters(LeadershipLost(f"leadership lost: {reason}"))
        if self.uuid in self.voters and self.flags["enable_leader_failure_detection"]:
            self.fd.start()

    def become_leader(self) -> None:
        self.logger.info("became leader in term %d (log %s, commit %d)", self.term,
                         tuple(self.log.last_opid), self.commit_index)
        self.role = Role.LEADER
        self.leader_uuid = self.uuid
        self.counters.elections_won += 1
        self.events.record_node("became_leader", term=self.term)
        self.failed_elections = 0
        self.fd.stop()
        self._close_peers()
        self.queue.set_leader_mode(self.commit_index, self.term, set(self.voters))
        self.queue.local_peer_appended(OpId(self.log.term_at(self.durable_index) or 0,
                                            self.durable_index))
        for uuid in self.voters:
            if uuid == self.uuid:
                continue
            peer = Peer(uuid, self.uuid, self.queue, self.peer_transport, self.clock, self.flags,
                        self.rng, self.faults, self.logger, events=self.events)
            self.peers[uuid] = peer
            peer.init()
        # kuduraft's BecomeLeaderUnlocked (raft_consensus.cc) appends the NO_OP with no signal:
        # each peer's first request leaves on its heartbeater, P x [0.75, 1.25] after Peer::Init,
        # unless a write (Replicate) or a commit notification signals it first (B4, B5).
        entry = self._append_local("NO_OP", None)
        self.queue.note_first_index_in_term(entry.index)

    def _close_peers(self) -> None:
        for peer in self.peers.values():
            peer.close()
        self.peers.clear()

    def step_down(self) -> None:
        """Leader-only: term + 1, follower, no election of our own for 2 x MET (B41).

        As kuduraft's RaftConsensus::StepDown (raft_consensus.cc), the new term is not flushed
        (HandleTermAdvanceUnlocked with SKIP_FLUSH_TO_DISK): the next vote or term change
        flushes it, and a crash before that restarts in the old term, which is safe."""
        if self.role is not Role.LEADER:
            raise NotLeader(self.leader_uuid)
        self.become_follower("step down requested")
        self.term += 1
        self.voted_for = None
        self.leader_uuid = None
        self.last_received_cur_leader = MIN_OPID
        self.fd.snooze(2 * self.flags.failure_timeout_s)

    # ----- leader write path -----
    def _append_local(self, kind: str, payload: dict[str, Any] | None) -> LogEntry:
        """Append to the log and queue the WAL write, merged with the other appends that queue
        while the append thread is busy (``WalWriter.append(merge=True)``; with the thread idle
        it goes at once): one completion per batch, whose local vote
        counts the batch's last entry, as kuduraft's PeerMessageQueue::AppendOperations
        (consensus_queue.cc) counts one local vote for the last of the messages it appends.

        kuduraft's leader appends one round per RaftConsensus::Replicate, so each round has its
        own local-vote task and may make its own commit notification; one vote for the last
        entry differs from that only in how many notifications a group makes, which shows when
        consensus_inject_latency_ms_in_notifications delays each of them. With that flag set,
        every write keeps its own completion and vote."""
        entry = LogEntry(term=self.term, index=self.log.last_index + 1, kind=kind, payload=payload)
        self.log.append(entry)
        merge = int(self.flags["consensus_inject_latency_ms_in_notifications"]) <= 0
        fut = self.writer.append([entry], merge=merge)
        batch = self._local_batch
        if batch is not None and batch[0] is fut:
            batch[1][0] = entry
            return entry
        last = [entry]
        self._local_batch = (fut, last)
        term = self.term
        # Straight from the WAL's hand-back, not a done-callback one loop turn later (issue #14).
        self.writer.on_durable(fut, lambda: self._local_durable(last[0], term, fut))
        return entry

    def _local_durable(self, entry: LogEntry, term: int, fut: asyncio.Future[None]) -> None:
        """The leader's own ack (kuduraft's PeerMessageQueue::LocalPeerAppendFinished, with
        async_local_vote_count on by default) is counted on the serial observer token, behind
        notifications already queued there (each delayed by
        consensus_inject_latency_ms_in_notifications); the commit it may produce is then one
        more delayed notification. ``entry`` is the last of the batch the WAL made durable."""
        if self._local_batch is not None and self._local_batch[0] is fut:
            self._local_batch = None
        if fut.cancelled() or fut.exception() is not None:
            return
        self.durable_index = max(self.durable_index, entry.index)

        def count_local_vote() -> None:
            if (self.role is Role.LEADER and self.term == term
                    and self.log.has(OpId(entry.term, entry.index))):
                self.queue.local_peer_appended(OpId(entry.term, entry.index))
        self.notify(count_local_vote, inject_latency=False)

    def replicate(self, op: dict[str, Any]) -> asyncio.Future[dict[str, Any]]:
        """Append a client op; the future resolves with its result once applied."""
        fut: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._replicate(op, fut)
        return fut

    def replicate_then(self, op: dict[str, Any],
                       on_applied: Callable[[dict[str, Any] | Exception], None]) -> None:
        """``replicate`` for a caller with one callback (the HTTP API): ``on_applied(result or
        LeadershipLost)`` runs as the entry is applied or lost, in that call, not a loop turn
        later through a future (issue #14). NotLeader is raised here, as by ``replicate``."""
        self._replicate(op, CallbackSlot(on_applied))

    def _replicate(self, op: dict[str, Any], waiter: Waiter) -> None:
        if self.role is not Role.LEADER:
            raise NotLeader(self.leader_uuid)
        entry = self._append_local("WRITE", op)
        self._waiters[entry.index] = (entry.term, waiter)
        self.signal_peers()

    def signal_peers(self) -> None:
        for peer in list(self.peers.values()):
            peer.signal_request(False)

    # ----- notifications (kuduraft's serial observer token) -----
    def notify(self, fn: Callable[[], None], inject_latency: bool = True,
               inline_when_idle: bool = False) -> None:
        """Run ``fn`` later, in order, delayed by consensus_inject_latency_ms_in_notifications
        (kuduraft's NotifyObserversTask; ``inject_latency=False`` for other tasks on the token).

        ``inline_when_idle``: with no latency to inject and nothing queued on the token, run
        ``fn`` now. kuduraft submits the task to its observers token, whose thread may run it at
        once, while the submitter still holds its own locks; running it in the caller is that
        interleaving, without a loop turn (and a timer) per commit (issue #14)."""
        max_ms = int(self.flags["consensus_inject_latency_ms_in_notifications"])
        delay = self.rng.uniform(0, max_ms) / 1000.0 if max_ms > 0 and inject_latency else 0.0
        if (not inject_latency or (inline_when_idle and max_ms <= 0)) and self._token_pending == 0:
            # Nothing queued ahead on the token: run now (the caller is already a callback of
            # its own, e.g. the WAL future's, so this stays off the writer's path).
            fn()
            return
        now = self.clock.now()
        self._notify_at = max(self._notify_at, now) + delay
        self._token_pending += 1

        def run() -> None:
            self._token_pending -= 1
            fn()
        self.clock.call_later(self._notify_at - now, run)

    def _on_queue_commit(self, index: int) -> None:
        """The commit notification (consensus_queue.cc, NotifyObserversOfCommitIndexChange ->
        RaftConsensus::NotifyCommitIndex): apply, then signal every peer. Run inline when the token
        is idle and no latency is injected (see ``notify``); a higher-term notification stays
        deferred, since stepping down inside ResponseFromPeer would close the replying Peer."""
        term = self.term

        def deliver() -> None:
            if self.role is Role.LEADER and self.term == term:
                self.advance_commit(index)
                self.signal_peers()
        self.notify(deliver, inline_when_idle=True)

    def _on_queue_higher_term(self, term: int) -> None:
        self.notify(lambda: self.adopt_term(term, reason="a peer answered with a higher term"))

    # ----- commit and apply -----
    def advance_commit(self, index: int) -> None:
        index = min(index, self.log.last_index)
        if index <= self.commit_index:
            return
        self.commit_index = index
        self._apply()

    def _apply(self) -> None:
        while self.applied_index < self.commit_index:
            self.faults.maybe_fault("fault_crash_before_append_commit")
            idx = self.applied_index + 1
            entry = self.log.get(idx)
            result: dict[str, Any] = {}
            if entry.kind == "WRITE" and entry.payload is not None:
                result = self.kv.apply(entry.payload)
            self.applied_index = idx
            waiter = self._waiters.pop(idx, None)
            if waiter is not None:
                term, fut = waiter
                if fut.done():
                    continue
                if term == entry.term:
                    result["index"] = idx
                    fut.set_result(result)
                else:
                    fut.set_exception(LeadershipLost("entry replaced by another leader's"))

    def _fail_waiters(self, exc: Exception) -> None:
        waiters, self._waiters = self._waiters, {}
        for _, fut in waiters.values():
            if not fut.done():
                fut.set_exception(exc)

    def truncate_after(self, index: int) -> None:
        """Drop a conflicting uncommitted suffix, in memory and durably (in WAL order)."""
        if index < self.commit_index:
            # kuduraft CHECKs the same (pending_rounds.cc, PendingRounds::AbortOpsAfter: CHECK_EQ of
            # the new preceding index and the committed index).
            self.faults.invariant_violation(
                "truncate_committed", self.term, {"node": self.uuid, "leader": self.leader_uuid},
                {"truncate_after": [self.log.term_at(index) or 0, index],
                 "committed": [self.log.term_at(self.commit_index) or 0, self.commit_index]},
                f"refusing to truncate committed entries ({index} < {self.commit_index})")
        dropped = self.log.truncate_after(index)
        if not dropped:
            return
        self.logger.info("truncated %d uncommitted entries after index %d", len(dropped), index)
        self.durable_index = min(self.durable_index, index)
        if self.last_received_cur_leader.index > index:
            self.last_received_cur_leader = self.log.last_opid
        self.writer.truncate_after(index)
        for e in dropped:
            waiter = self._waiters.pop(e.index, None)
            if waiter is not None and not waiter[1].done():
                waiter[1].set_exception(LeadershipLost("entry truncated"))

    # ----- failure detector -----
    def start_failure_detector(self) -> None:
        if self.uuid not in self.voters or not self.flags["enable_leader_failure_detection"]:
            return
        if self.term == 0:
            self.fd.start(self.rng.uniform(0, self.flags.heartbeat_s))
        else:
            self.fd.start()

    def snooze_fd_after_update(self) -> None:
        met = self.flags.failure_timeout_s
        ratio = float(self.flags["snooze_for_leader_ban_ratio"])
        self.fd.snooze(self.rng.uniform(met, 1.5 * met) if ratio == 1.0 else met * ratio)

    def _on_fd_expired(self) -> None:
        if self.role is Role.LEADER or not self.flags["enable_leader_failure_detection"]:
            return
        if self.elections is not None:
            self.elections.on_failure_detected()

    # ----- status -----
    def status(self) -> dict[str, Any]:
        last = self.log.last_opid
        c = self.counters
        return {
            "uuid": self.uuid, "role": self.role.value, "term": self.term,
            "voted_for": self.voted_for, "leader": self.leader_uuid,
            "last_index": last.index, "last_term": last.term,
            "commit_index": self.commit_index, "applied_index": self.applied_index,
            "durable_index": self.durable_index,
            "elections_started": c.elections_started,
            "pre_elections_started": c.pre_elections_started,
            "elections_won": c.elections_won, "step_downs": c.step_downs,
            "failed_elections": self.failed_elections,
            "last_leader_contact_age_ms": (
                None if self.last_leader_contact is None
                else round((self.clock.now() - self.last_leader_contact) * 1000, 1)),
            "updates_received": c.updates_received, "updates_rejected": c.updates_rejected,
            "crash_flag_draws": {
                f: self.faults.draws.get(f, 0)
                for f in ("fault_crash_on_leader_request_fraction",
                          "fault_crash_after_leader_request_fraction")},
            "metadata_flushes": self.meta.flush_count,
            "fatal": self.faults.fatal_record,
            "peers": {u: p.view() for u, p in sorted(self.peers.items())},
        }
