"""RPC dispatch for the consensus service, and the Peer's asynchronous transport over the RPC pool."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from nodes.consensus import RaftConsensus
from nodes.election import Elections
from nodes.peer import RpcOutcome
from nodes.proxy import ProxyCounters, handle_proxy_request
from nodes.rpc import RemoteRpcError, RpcClientPool, RpcError
from nodes.update import handle_update, server_error


class ConsensusService:
    """Maps RPC names to handlers and applies kuduraft's destination checks first."""

    def __init__(self, c: RaftConsensus, elections: Elections) -> None:
        self.c = c
        self.elections = elections
        self.proxy_counters = ProxyCounters()

    async def handle(self, rpc: str, body: dict[str, Any]) -> dict[str, Any]:
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
        async def run() -> None:
            try:
                resp = await self._pool.call(hop, "UpdateConsensus", body, timeout_s)
                outcome = RpcOutcome(body=resp)
            except RpcError as e:
                outcome = RpcOutcome(error=e)
            done(outcome)

        task = asyncio.get_running_loop().create_task(run())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
