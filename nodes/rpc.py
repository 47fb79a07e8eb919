"""RPC over wire frames: a server that runs each request on its own task, and a multiplexing client pool.

The public names live here as they always have; the code is split by side:
``nodes.rpc_errors`` (the failures both sides share), ``nodes.rpc_server`` and ``nodes.rpc_client``.
"""

from __future__ import annotations

from nodes.rpc_client import RpcClientPool, RpcClientStats, split_host_port
from nodes.rpc_errors import INTERNAL, RemoteRpcError, RpcError, RpcLayerError, RpcTimeout
from nodes.rpc_server import Handler, RpcServer, RpcServerStats

__all__ = [
    "INTERNAL",
    "Handler",
    "RemoteRpcError",
    "RpcClientPool",
    "RpcClientStats",
    "RpcError",
    "RpcLayerError",
    "RpcServer",
    "RpcServerStats",
    "RpcTimeout",
    "split_host_port",
]
