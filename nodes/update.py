"""Follower side of UpdateConsensus (kuduraft RaftConsensus::Update): dedup, log matching, append, commit."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from nodes.consensus import RaftConsensus, Role
from nodes.log import MIN_OPID, OpId
from nodes.wal import LogEntry

ROTATE_MESSAGE = "Previous Rotate Event with file binlog.000042 was not yet committed"


class BadRequest(ValueError):
    """An UpdateConsensus body that does not have the fields and types we need."""


@dataclass(frozen=True)
class UpdateRequest:
    caller_uuid: str
    caller_term: int
    preceding: OpId
    ops: list[LogEntry]
    committed_index: int
    all_replicated_index: int | None


def _int(body: dict[str, Any], name: str) -> int:
    v = body.get(name)
    if not isinstance(v, int) or isinstance(v, bool):
        raise BadRequest(f"field {name!r} must be an integer")
    return v


def parse_update(body: dict[str, Any]) -> UpdateRequest:
    caller = body.get("caller_uuid")
    if not isinstance(caller, str):
        raise BadRequest("field 'caller_uuid' must be a string")
    raw_ops = body.get("ops", [])
    if not isinstance(raw_ops, list):
        raise BadRequest("field 'ops' must be a list")
    ops: list[LogEntry] = []
    for i, raw in enumerate(raw_ops):
        if not isinstance(raw, dict):
            raise BadRequest(f"op #{i} is not an object")
        try:
            ops.append(LogEntry.from_json(raw))
        except (KeyError, TypeError, ValueError) as e:
            raise BadRequest(f"op #{i} is malformed: {e}") from None
        if ops[-1].kind not in ("NO_OP", "WRITE", "CONFIG"):
            raise BadRequest(f"op #{i} has kind {ops[-1].kind!r}")
    try:
        preceding = OpId.of(body.get("preceding_id"))
    except ValueError as e:
        raise BadRequest(str(e)) from None
    ari = body.get("all_replicated_index")
    return UpdateRequest(caller, _int(body, "caller_term"), preceding, ops,
                         _int(body, "committed_index"),
                         ari if isinstance(ari, int) and not isinstance(ari, bool) else None)


def server_error(code: str, message: str, c: RaftConsensus) -> dict[str, Any]:
    return {"responder_uuid": c.uuid, "responder_term": c.term,
            "error": {"code": code, "message": message}}


def reply(c: RaftConsensus, error: tuple[str, str] | None = None, term: int | None = None) -> dict[str, Any]:
    status: dict[str, Any] = {
        "last_received": list(c.log.last_opid),
        "last_received_current_leader": list(c.last_received_cur_leader),
        "last_committed_idx": c.commit_index,
    }
    if error is not None:
        status["error"] = {"code": error[0], "message": error[1]}
    return {"responder_uuid": c.uuid, "responder_term": c.term if term is None else term, "status": status}


async def handle_update(c: RaftConsensus, body: dict[str, Any]) -> dict[str, Any]:
    """Accept or reject one leader request; the reply is sent only after appended ops are durable."""
    c.counters.updates_received += 1
    if c.flags["follower_reject_update_consensus_requests"]:
        c.counters.updates_rejected += 1
        return server_error("UNKNOWN_ERROR", "Illegal state: rejected Update "
                            "(follower_reject_update_consensus_requests)", c)
    try:
        req = parse_update(body)
    except BadRequest as e:
        c.counters.updates_rejected += 1
        return server_error("INVALID_REQUEST", f"Invalid argument: {e}", c)
    async with c.update_lock:
        if req.all_replicated_index is None:
            c.counters.updates_rejected += 1
            return server_error("INVALID_REQUEST", "Invalid argument: request lacks "
                                "all_replicated_index", c)
        # Dedup: drop ops we hold already (committed, or pending with the same OpId).
        preceding = req.preceding
        ops = list(req.ops)
        while ops and (ops[0].index <= c.commit_index or c.log.term_at(ops[0].index) == ops[0].term):
            preceding = OpId(ops[0].term, ops[0].index)
            ops.pop(0)
        if preceding.index <= c.commit_index and c.log.term_at(preceding.index) is not None:
            # A committed preceding id matches whatever term the request names (step 7), so check
            # the new ops' sequence against the term we really hold there.
            preceding = OpId(c.log.term_at(preceding.index) or 0, preceding.index)
        prev = preceding
        for op in ops:
            if op.index != prev.index + 1:
                c.counters.updates_rejected += 1
                return server_error("UNKNOWN_ERROR", "Corruption: New operation's index does not "
                                    f"follow the previous op's index. Current: {op.term}.{op.index}. "
                                    f"Previous: {prev.term}.{prev.index}", c)
            if op.term < prev.term:
                c.counters.updates_rejected += 1
                return server_error("UNKNOWN_ERROR", "Corruption: New operation's term is not >= "
                                    f"than the previous op's term. Current: {op.term}.{op.index}. "
                                    f"Previous: {prev.term}.{prev.index}", c)
            prev = OpId(op.term, op.index)
        if ops and ops[-1].term > req.caller_term:  # no leader writes ops of a term it has not reached
            c.counters.updates_rejected += 1
            return server_error("UNKNOWN_ERROR", f"Corruption: operation {ops[-1].term}.{ops[-1].index} "
                                f"has a term above the caller's term {req.caller_term}", c)
        if req.caller_term < c.term:
            c.counters.updates_rejected += 1
            return reply(c, ("INVALID_TERM", f"Refusing update from remote peer {req.caller_uuid}: "
                             f"caller term {req.caller_term} lower than current term {c.term}"))
        if req.caller_term > c.term:
            c.adopt_term(req.caller_term, reason=f"update from {req.caller_uuid}")
        if c.meta_writer.durable < c.meta_writer.requested:
            # kuduraft flushes a new term under its lock before it goes on with the request
            # (raft_consensus.cc, CheckLeaderRequestUnlocked -> HandleTermAdvanceUnlocked with
            # FLUSH_TO_DISK), so no op of the new term is appended before the term is durable;
            # any term change it made earlier (a reply or vote with a higher term) was flushed
            # the same way. The flush runs off the loop here, so wait for every pending one, the
            # term this request adopted or one another path adopted just before. Our own election
            # may start meanwhile (kuduraft's lock would hold it off): then the request is from a
            # lower term by the time we go on.
            await c.meta_durable()
            if req.caller_term < c.term:
                c.counters.updates_rejected += 1
                return reply(c, ("INVALID_TERM", f"Refusing update from remote peer "
                                 f"{req.caller_uuid}: caller term {req.caller_term} lower than "
                                 f"current term {c.term}"))
        if c.leader_uuid is None:
            c.leader_uuid = req.caller_uuid
            c.last_received_cur_leader = MIN_OPID
            if c.role is Role.CANDIDATE:
                c.become_follower("a leader exists in this term")
        elif c.leader_uuid != req.caller_uuid:
            # raft_consensus.cc, RaftConsensus::CheckLeaderRequestUnlocked: LOG(FATAL)
            # "Unexpected new leader in same term!". Two leaders in one term break Raft's
            # election safety; the node aborts with a record instead of answering.
            op_ids = {"preceding_id": list(req.preceding), "local_last": list(c.log.last_opid)}
            if req.ops:
                op_ids["first_op"] = [req.ops[0].term, req.ops[0].index]
                op_ids["last_op"] = [req.ops[-1].term, req.ops[-1].index]
            c.faults.invariant_violation(
                "two_leaders_in_term", c.term,
                {"existing_leader": c.leader_uuid, "new_leader": req.caller_uuid, "node": c.uuid},
                op_ids, f"two leaders in term {c.term}: {c.leader_uuid} and {req.caller_uuid}")
        lmp_error = _check_log_matching(c, preceding)
        if lmp_error is not None:
            c.counters.updates_rejected += 1
            return reply(c, ("PRECEDING_ENTRY_DIDNT_MATCH", lmp_error))
        if ops and c.log.term_at(ops[0].index) is not None:
            c.truncate_after(preceding.index)
        # Accepted: the leader is alive.
        c.snooze_fd_after_update()
        c.last_leader_contact = c.clock.now()
        c.failed_elections = 0
        c.withhold_votes_until = c.clock.now() + c.flags.failure_timeout_s
        # Early commit of ops already held (step 11) comes before prepare, so it survives a failure.
        c.advance_commit(min(c.log.last_index, preceding.index, req.committed_index))
        prepared, cause = _prepare(c, ops)
        if ops and not prepared:
            c.counters.updates_rejected += 1
            return reply(c, ("CANNOT_PREPARE",
                             f"Could not prepare a single transaction due to: {cause}"))
        last_in_request = OpId(prepared[-1].term, prepared[-1].index) if prepared else preceding
        for entry in prepared:
            c.log.append(entry)
        c.last_received_cur_leader = last_in_request
        # kuduraft fills the reply, responder term included, before it waits for durability (spec
        # 4.1 steps 15-16, RaftConsensus::UpdateReplica); our own election may raise the term
        # during the wait (a pre-election won late starts a real one), and an OK answer must never
        # carry a term above the one the update was accepted in: the leader treats that as fatal.
        accepted_term = c.term
        if prepared:
            await _wait_durable(c, c.writer.append(prepared))
            c.durable_index = max(c.durable_index, prepared[-1].index)
        c.advance_commit(min(last_in_request.index, req.committed_index))
        return reply(c, term=accepted_term)


def _check_log_matching(c: RaftConsensus, preceding: OpId) -> str | None:
    if preceding.index <= c.commit_index:
        return None
    local_term = c.log.term_at(preceding.index)
    if local_term == preceding.term:
        return None
    mine = OpId(local_term or 0, preceding.index) if local_term is not None else c.log.last_opid
    kind = "term mismatch" if local_term is not None else "index mismatch"
    if local_term is not None:
        c.truncate_after(preceding.index - 1)
    return (f"Log matching property violated. Preceding OpId in replica: {mine.term}.{mine.index}. "
            f"Preceding OpId from leader: {preceding.term}.{preceding.index}. ({kind})")


def _prepare(c: RaftConsensus, ops: list[LogEntry]) -> tuple[list[LogEntry], str]:
    """Prepare in order; stop at the first failure (NO_OP and config ops never fail)."""
    prepared: list[LogEntry] = []
    for op in ops:
        if op.kind == "WRITE":
            if c.flags["follower_fail_prepare_with_rotate_event"]:
                return prepared, f"Illegal state: {ROTATE_MESSAGE}"
            if c.flags["follower_fail_all_prepare"]:
                return prepared, "Illegal state: injected prepare failure (follower_fail_all_prepare)"
        prepared.append(op)
    return prepared, ""


async def _wait_durable(c: RaftConsensus, fut: asyncio.Future[None]) -> None:
    """Wait for the fsync, snoozing our own failure detector by MET every P meanwhile (spec 4.1
    step 16; raft_consensus.cc, RaftConsensus::UpdateReplica snoozes the failure detector, then
    waits on the log synchronizer for raft_heartbeat_interval_ms, in a loop while that times
    out; the first snooze is the accepted update's, just before).

    The future is awaited directly and the snooze is a loop timer re-armed every P: the former
    ``wait_for(shield(fut))`` cost three loop turns between the WAL write and the reply (shield's
    callback, wait_for's waiter, the task) and a timeout scope per Update (issue #14). Nothing
    else awaits ``fut``; if this task is cancelled the WAL writer still writes the entries."""
    if fut.done():
        fut.result()
        return
    loop = asyncio.get_running_loop()
    timer: asyncio.TimerHandle | None = None

    def snooze() -> None:
        nonlocal timer
        c.fd.snooze(c.flags.failure_timeout_s)
        timer = loop.call_later(c.flags.heartbeat_s, snooze)

    timer = loop.call_later(c.flags.heartbeat_s, snooze)
    try:
        await fut
    finally:
        timer.cancel()
