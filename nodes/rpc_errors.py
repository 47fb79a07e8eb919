"""The RPC layer's failures, shared by the server (nodes.rpc_server) and the client pool (nodes.rpc_client)."""

from __future__ import annotations

INTERNAL = "INTERNAL"
"""Error code sent when the handler raised something other than RemoteRpcError."""


class RpcError(Exception):
    """An RPC produced no response body."""


class RpcLayerError(RpcError):
    """No answer from the server: connect refused or failed, reset, EOF, protocol error or timeout.

    kuduraft's RPC_LAYER_ERROR: the request may or may not have reached the server.
    """


class RpcTimeout(RpcLayerError):
    """The call's deadline passed without an answer (still kuduraft's RPC_LAYER_ERROR; a subclass
    only so the node's event trace can tell a timeout from a refused or lost connection)."""


class RemoteRpcError(RpcError):
    """The server answered with an RPC-level failure (kuduraft's REMOTE_ERROR path)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
