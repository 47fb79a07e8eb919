"""A request over the frame limit fails as an RPC-layer error instead of leaving the Peer pending
(kuduraft: the messenger refuses a call over rpc_max_message_size and the call fails)."""

from __future__ import annotations

import asyncio

import pytest

from nodes.peer import RpcOutcome
from nodes.rpc import RpcClientPool, RpcLayerError
from nodes.service import PoolPeerTransport


def test_b20_oversized_request_is_an_rpc_layer_error_not_a_hang() -> None:
    """B20's pending-until-timeout holds for a lost request; a request too big to frame never leaves
    and completes at once as RPC_LAYER_ERROR (no socket is opened: the address is never dialed)."""
    async def main() -> tuple[RpcClientPool, RpcOutcome]:
        pool = RpcClientPool({"n2": "127.0.0.1:9"}, max_frame_bytes=1000)
        with pytest.raises(RpcLayerError, match="not sent: oversized frame"):
            await pool.call("n2", "UpdateConsensus", {"ops": ["x" * 2000]}, 5.0)
        tasks: set[asyncio.Task[None]] = set()
        done: asyncio.Future[RpcOutcome] = asyncio.get_running_loop().create_future()
        PoolPeerTransport(pool, tasks).send_update("n2", {"ops": ["x" * 2000]}, 5.0,
                                                   done.set_result)
        outcome = await asyncio.wait_for(done, 5.0)
        await pool.close()
        return pool, outcome
    pool, outcome = asyncio.run(main())
    assert isinstance(outcome.error, RpcLayerError)
    assert pool.stats.oversized_requests == 2 and pool.stats.connections_opened == 0
