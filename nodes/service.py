"""RPC dispatch for the consensus service, and the Peer's asynchronous transport over the RPC pool."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from nodes.consensus import RaftConsensus
from nodes.election import Elections
from nodes.jsonsafe import MAX_VALUE_DEPTH, JsonInputError, check_value
from nodes.peer import RpcOutcome
from nodes.proxy import ProxyCounters, handle_proxy_request
from nodes.rpc import RemoteRpcError, RpcClientPool
from nodes.update import handle_update, server_error

INT64 = (-(2**63), 2**63 - 1)
"""kuduraft's terms, indexes and counters are protobuf int64 fields; JSON has no such bound."""


def check_frame_body(body: dict[str, Any]) -> None:
    """JsonInputError unless every integer outside the ops' payloads fits in int64 and every op
    payload is a value the WAL can encode.

    Frames decoded by ``nodes.wire`` are encodable already; this also covers bodies built in
    process and keeps a term like 10**300 (which no kuduraft peer could send) out of the
    metadata file, where it would outlive the frame that carried it. The common shape (scalar
    fields, flat ops and payloads) is accepted by ``_plainly_valid`` without building a path per
    value; anything else takes the full walk, which names the offending field.
    """
    if _plainly_valid(body):
        return
    _check_frame_body_walk(body)


_PAYLOAD_SCALARS = (str, int, bool, type(None))


def _plain_field(v: Any) -> bool:
    """A body or op field that needs no walk: a scalar (an int within int64) or a flat list."""
    t = type(v)
    if t is int:
        return INT64[0] <= v <= INT64[1]
    if t is str or v is None or t is bool or t is float:
        return True
    if t is list:
        return all(type(x) is int and INT64[0] <= x <= INT64[1] for x in v)
    return False


def _plainly_valid(body: dict[str, Any]) -> bool:
    """True when the body is certainly valid (False: undecided, the full walk decides)."""
    for k, v in body.items():
        if k != "ops" and k != "payload" and not _plain_field(v):
            return False
    ops = body.get("ops")
    if ops is None:
        return "ops" not in body
    if type(ops) is not list:
        return False
    for op in ops:
        if type(op) is not dict:
            return False
        for k, v in op.items():
            if k == "payload":
                if v is None:
                    continue
                if type(v) is not dict:
                    return False
                for pk, pv in v.items():
                    if type(pk) is not str or type(pv) not in _PAYLOAD_SCALARS:
                        return False
            elif not _plain_field(v):
                return False
    return True


def _check_frame_body_walk(body: dict[str, Any]) -> None:
    stack: list[tuple[Any, str]] = [(body, "body")]
    while stack:
        v, where = stack.pop()
        if isinstance(v, int) and not isinstance(v, bool):
            if not INT64[0] <= v <= INT64[1]:
                raise JsonInputError(f"{where} = {str(v)[:24]}... does not fit in int64")
        elif isinstance(v, dict):
            stack.extend((x, f"{where}.{k}") for k, x in v.items() if k != "payload")
            if where.startswith("body.ops[") and "payload" in v:
                check_value(v["payload"], MAX_VALUE_DEPTH + 1, what=f"{where}.payload")
        elif isinstance(v, list):
            stack.extend((x, f"{where}[{i}]") for i, x in enumerate(v))


class ConsensusService:
    """Maps RPC names to handlers and applies kuduraft's destination checks first."""

    def __init__(self, c: RaftConsensus, elections: Elections) -> None:
        self.c = c
        self.elections = elections
        self.proxy_counters = ProxyCounters()

    @staticmethod
    def runs_eagerly(rpc: str, body: dict[str, Any]) -> bool:
        """Which requests the RPC server may start outside a task (``rpc_server.start_eagerly``):
        a direct UpdateConsensus, whose handler awaits only futures (the update lock, the
        metadata flush, the WAL). A proxied one calls onwards under a timeout scope, which needs
        its task."""
        return rpc == "UpdateConsensus" and not body.get("proxy_dest_uuid")

    async def handle(self, rpc: str, body: dict[str, Any]) -> dict[str, Any]:
        """Answer one consensus RPC, never before the term and vote it was decided on are durable.

        kuduraft flushes consensus metadata under its lock before it fills the reply
        (raft_consensus.cc: RequestVoteRespondVoteGranted -> SetVotedForCurrentTermUnlocked,
        UpdateReplica -> CheckLeaderRequestUnlocked -> HandleTermAdvanceUnlocked); here the flush
        runs off the loop, so the reply waits for the version current when its handler finished
        (every state the reply could reflect)."""
        response = await self._handle(rpc, body)
        await self.c.meta_durable()
        return response

    async def _handle(self, rpc: str, body: dict[str, Any]) -> dict[str, Any]:
        try:
            check_frame_body(body)
        except JsonInputError as e:
            if rpc == "UpdateConsensus":
                self.c.counters.updates_rejected += 1
            return server_error("INVALID_REQUEST", f"Invalid argument: {e}", self.c)
        if rpc == "UpdateConsensus":
            return await self._update(body)
        if rpc in ("RequestVote", "RunLeaderElection"):
            dest = body.get("dest_uuid")
            if dest is not None and dest != self.c.uuid:  # B49, for every consensus RPC
                return server_error("WRONG_SERVER_UUID", f"wrong destination {dest!r}; "
                                    f"this is {self.c.uuid}", self.c)
            if rpc == "RequestVote":
                return await self.elections.handle_request_vote(body)
            return self.elections.handle_run_leader_election(body)
        raise RemoteRpcError("NO_SUCH_METHOD", f"unknown rpc {rpc!r}")

    async def _update(self, body: dict[str, Any]) -> dict[str, Any]:
        c = self.c
        proxy_dest = body.get("proxy_dest_uuid")
        if proxy_dest:
            if proxy_dest != c.uuid:
                return server_error("WRONG_SERVER_UUID", f"proxy_dest_uuid {proxy_dest!r} does not "
                                    f"name this server ({c.uuid})", c)
            return await handle_proxy_request(c, self.proxy_counters, body)
        dest = body.get("dest_uuid")
        if dest != c.uuid:
            return server_error("WRONG_SERVER_UUID", f"dest_uuid {dest!r} does not name this server "
                                f"({c.uuid})", c)
        return await handle_update(c, body)


class PoolPeerTransport:
    """Runs each UpdateConsensus as a task on the pool and hands the outcome to the Peer."""

    def __init__(self, pool: RpcClientPool, tasks: set[asyncio.Task[Any]]) -> None:
        self._pool = pool
        self._tasks = tasks

    def has_hop(self, uuid: str) -> bool:
        return self._pool.has(uuid)

    def send_update(self, hop: str, body: dict[str, Any], timeout_s: float,
                    done: Callable[[RpcOutcome], None]) -> None:
        """No task per request (issue #14): the pool calls back with the reply or the failure."""
        def deliver(result: dict[str, Any] | Exception) -> None:
            done(RpcOutcome(error=result) if isinstance(result, Exception) else RpcOutcome(body=result))

        self._pool.call_soon(hop, "UpdateConsensus", body, timeout_s, deliver)
