"""Leader elections (kuduraft leader_election.cc + RaftConsensus): pre-votes, votes, back-off, vote rules."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import Any

from nodes.consensus import RaftConsensus, Role
from nodes.log import OpId
from nodes.rpc import RpcError


@dataclass
class ElectionRound:
    term: int  # the term asked for
    pre: bool
    backoff_s: float
    voters: list[str]
    yes: set[str] = field(default_factory=set)
    no: set[str] = field(default_factory=set)
    highest_term: int = 0
    decided: bool = False

    def decision(self, majority: int) -> bool | None:
        if len(self.yes) >= majority:
            return True
        if len(self.no) > len(self.voters) - majority:
            return False
        return None


class Elections:
    """Runs (pre-)elections for one node and answers RequestVote."""

    def __init__(self, c: RaftConsensus) -> None:
        self.c = c
        c.elections = self
        self.current: ElectionRound | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    def backoff_s(self) -> float:
        """U[MET, min(MET x 1.5^(n+1), cap)], n = failed elections since a stable leader."""
        c = self.c
        met = c.flags.failure_timeout_s
        cap = float(c.flags["leader_failure_exp_backoff_max_delta_ms"]) / 1000.0
        hi = min(met * 1.5 ** (c.failed_elections + 1), cap)
        return c.rng.uniform(met, max(met, hi))

    def on_failure_detected(self) -> None:
        self.start(pre=bool(self.c.flags["raft_enable_pre_election"]))

    def start(self, pre: bool, forced: bool = False) -> None:
        c = self.c
        if c.role is Role.LEADER or c.uuid not in c.voters:
            return
        backoff = self.backoff_s()
        c.fd.snooze(backoff)
        version = c.meta_writer.requested
        if pre:
            c.counters.pre_elections_started += 1
            ask_term = c.term + 1
        else:
            c.counters.elections_started += 1
            c.term += 1
            c.voted_for = c.uuid
            c.leader_uuid = None
            version = c.persist()
            c.role = Role.CANDIDATE
            ask_term = c.term
        c.logger.info("starting %s for term %d (back-off %.3fs)",
                      "pre-election" if pre else ("forced election" if forced else "election"),
                      ask_term, backoff)
        contact = c.last_leader_contact
        c.events.record_node("pre_election_started" if pre else "election_started", term=c.term,
                             ask_term=ask_term, backoff_s=round(backoff, 6), forced=forced,
                             leader_contact_age_s=(None if contact is None
                                                   else round(c.clock.now() - contact, 6)))
        rnd = ElectionRound(ask_term, pre, backoff, list(c.voters), yes={c.uuid})
        self.current = rnd
        body = {"candidate_uuid": c.uuid, "candidate_term": ask_term,
                "candidate_status": {"last_received": list(c.log.last_opid)},
                "is_pre_election": pre, "ignore_live_leader": forced}
        if c.meta_writer.durable >= version:
            self._solicit(rnd, body)
        else:
            self._spawn(self._solicit_when_durable(rnd, body, version))

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _solicit_when_durable(self, rnd: ElectionRound, body: dict[str, Any],
                                    version: int) -> None:
        """kuduraft's StartElection flushes term and vote (SetVotedForCurrentTermUnlocked) before
        it builds the LeaderElection that sends the requests (raft_consensus.cc); here the flush
        runs off the loop, so neither a request nor a single voter's own win comes before it."""
        await self.c.meta_durable(version)
        self._solicit(rnd, body)

    def _solicit(self, rnd: ElectionRound, body: dict[str, Any]) -> None:
        if rnd.decided or self._decide(rnd):
            return
        for voter in rnd.voters:
            if voter != self.c.uuid:
                self._spawn(self._ask(rnd, voter, body))

    async def _ask(self, rnd: ElectionRound, voter: str, body: dict[str, Any]) -> None:
        try:
            resp = await self.c.rpc.call(voter, "RequestVote", dict(body, dest_uuid=voter),
                                         rnd.backoff_s)
            granted = resp.get("vote_granted") is True
            term = resp.get("responder_term")
            term = term if isinstance(term, int) else 0
        except RpcError:
            granted, term = False, 0
        if rnd.decided:
            return
        if granted:
            rnd.yes.add(voter)
        else:
            rnd.no.add(voter)
            if term > rnd.term:
                rnd.highest_term = max(rnd.highest_term, term)
                self._finish(rnd, won=False)
                return
        self._decide(rnd)

    def _decide(self, rnd: ElectionRound) -> bool:
        won = rnd.decision(self.c.majority)
        if won is None:
            return False
        self._finish(rnd, won)
        return True

    def _finish(self, rnd: ElectionRound, won: bool) -> None:
        """Every decided round, current or superseded, is handled as kuduraft's
        RaftConsensus::DoElectionCallback (raft_consensus.cc) handles an election callback: it
        snoozes the failure detector by LeaderElectionExpBackoffDeltaUnlocked, a loss counts
        toward failed_elections_since_stable_leader_ (and adopts a voter's higher term) whatever
        term or round it came from, and a win is honoured when the term it started in is still
        ours and we do not lead yet, even if the FD fired again meanwhile."""
        c = self.c
        rnd.decided = True
        superseded = self.current is not rnd
        if not superseded:
            self.current = None
        started_in = rnd.term - 1 if rnd.pre else rnd.term
        c.events.record_node("pre_election_decided" if rnd.pre else "election_decided", term=c.term,
                             ask_term=rnd.term, won=won, superseded=superseded,
                             stale=superseded or started_in != c.term or c.role is Role.LEADER,
                             yes=sorted(rnd.yes), no=sorted(rnd.no))
        c.fd.snooze(self.backoff_s())
        if not won:
            c.failed_elections += 1
            c.logger.info("%s for term %d lost (yes %s, no %s)", "pre-election" if rnd.pre else
                          "election", rnd.term, sorted(rnd.yes), sorted(rnd.no))
            if c.role is Role.CANDIDATE and not superseded and c.term == rnd.term:
                c.role = Role.FOLLOWER
            if rnd.highest_term > c.term:
                c.adopt_term(rnd.highest_term, reason="a voter has a higher term")
            return
        if started_in != c.term or c.role is Role.LEADER:
            c.logger.info("%s for term %d won in a defunct term or while leading; ignored",
                          "pre-election" if rnd.pre else "election", rnd.term)
            return
        if rnd.pre:
            self.start(pre=False)
        else:
            c.become_leader()

    # ----- RequestVote -----
    async def handle_request_vote(self, body: dict[str, Any]) -> dict[str, Any]:
        """kuduraft's vote rules (spec 4.4). A vote arriving while an Update holds the update lock
        is answered CONSENSUS_BUSY, except forced votes and votes with the failure detector off,
        which wait for the lock instead."""
        c = self.c
        cand = body.get("candidate_uuid")
        term = body.get("candidate_term")
        status = body.get("candidate_status")
        if not isinstance(cand, str) or not isinstance(term, int) or isinstance(term, bool) \
                or not isinstance(status, dict):
            return self._deny("INVALID_REQUEST", "malformed RequestVote")
        try:
            cand_last = OpId.of(status.get("last_received"))
        except ValueError as e:
            return self._deny("INVALID_REQUEST", str(e))
        pre = body.get("is_pre_election") is True
        forced = body.get("ignore_live_leader") is True
        if bool(c.flags["enable_leader_failure_detection"]) and not forced:
            if c.update_lock.locked():
                return self._deny("CONSENSUS_BUSY", "busy processing an update")
            return self._decide_vote(cand, term, cand_last, pre, forced)
        async with c.update_lock:
            return self._decide_vote(cand, term, cand_last, pre, forced)

    def _decide_vote(self, cand: str, term: int, cand_last: OpId, pre: bool,
                     forced: bool) -> dict[str, Any]:
        c = self.c
        if not forced and (c.role is Role.LEADER or c.clock.now() < c.withhold_votes_until):
            return self._deny("LEADER_IS_ALIVE", "leader is alive")
        if term < c.term:
            return self._deny("INVALID_TERM", f"candidate term {term} < current term {c.term}")
        if term == c.term and c.voted_for is not None:
            if c.voted_for == cand:
                return self._grant()
            return self._deny("ALREADY_VOTED", f"already voted for {c.voted_for} in term {term}")
        adopted = not pre and term > c.term
        if adopted:
            # Term and vote reach the disk in one flush (kuduraft adopts with SKIP_FLUSH_TO_DISK).
            c.adopt_term(term, reason=f"vote request from {cand}", flush=False)
        if cand_last < c.log.last_opid:
            if adopted:
                c.persist()
            return self._deny("LAST_OPID_TOO_OLD", f"candidate last op {tuple(cand_last)} older "
                              f"than ours {tuple(c.log.last_opid)}")
        c.fd.snooze(self.backoff_s())
        if not pre:
            c.voted_for = cand
            c.persist()
        c.fd.snooze(self.backoff_s())
        return self._grant()

    def _grant(self) -> dict[str, Any]:
        return {"responder_uuid": self.c.uuid, "responder_term": self.c.term, "vote_granted": True}

    def _deny(self, code: str, message: str) -> dict[str, Any]:
        return {"responder_uuid": self.c.uuid, "responder_term": self.c.term, "vote_granted": False,
                "error": {"code": code, "message": message}}

    def handle_run_leader_election(self, body: dict[str, Any]) -> dict[str, Any]:
        """Forced election (leadership transfer): skips the pre-election, ignores live leaders."""
        if self.c.role is not Role.LEADER:
            self.start(pre=False, forced=True)
        return {"responder_uuid": self.c.uuid}

    async def close(self) -> None:
        for t in list(self._tasks):
            t.cancel()
