"""RPC server over wire frames: runs each request on its own task and writes responses whole."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from nodes.listen import Listener
from nodes.rpc_errors import INTERNAL, RemoteRpcError
from nodes.wire import MAX_FRAME_BYTES, READ_CHUNK, FrameDecoder, FrameError, encode_frame

Handler = Callable[[str, dict[str, Any]], Awaitable[dict[str, Any]]]
"""``handler(rpc_name, body) -> response body``; raise RemoteRpcError for an RPC-level failure."""


def _parse_request(frame: dict[str, Any]) -> tuple[int, str, dict[str, Any]]:
    rid, rpc, body = frame.get("id"), frame.get("rpc"), frame.get("body")
    if not isinstance(rid, int) or isinstance(rid, bool):
        raise FrameError(f"not a request: 'id' must be an integer, got {rid!r:.50}")
    if not isinstance(rpc, str):
        raise FrameError(f"not a request: 'rpc' must be a string, got {rpc!r:.50}")
    if not isinstance(body, dict):
        raise FrameError(f"not a request: 'body' must be an object, got {type(body).__name__}")
    return rid, rpc, body


def _error_frame(rid: int, code: str, message: str) -> dict[str, Any]:
    return {"id": rid, "error": {"code": code, "message": message}}


@dataclass
class RpcServerStats:
    """Counters since start, for tests and /status."""

    connections_accepted: int = 0
    requests: int = 0
    internal_errors: int = 0
    protocol_errors: int = 0


WRITE_HIGH_WATER = 256 * 1024
"""Unsent response bytes above which a sender waits for the socket to drain."""


class _ServerConn:
    """One accepted connection: writes responses whole, tracks its in-flight requests.

    A frame goes into the transport's buffer in one ``write``, so responses never interleave;
    only when the peer stops reading (buffer over WRITE_HIGH_WATER) does a sender wait, under the
    lock. The common case costs no lock and no drain coroutine (issue #14's profile).
    """

    def __init__(self, writer: asyncio.StreamWriter) -> None:
        self.writer = writer
        self.lock = asyncio.Lock()
        self.tasks: set[asyncio.Task[None]] = set()

    async def send(self, data: bytes) -> bool:
        """Write one frame; False when the connection is already gone (the response is dropped)."""
        if self.writer.is_closing():
            return False
        try:
            self.writer.write(data)
            if self.writer.transport.get_write_buffer_size() > WRITE_HIGH_WATER:
                async with self.lock:
                    await self.writer.drain()
        except OSError:
            return False
        return True


class RpcServer:
    """Accepts connections on ``host:port`` and answers requests through ``handler``.

    Requests on one connection run concurrently (a proxy node blocks on a downstream RPC while
    others continue); responses are written whole, one at a time. A bad frame or a frame that is
    not a request closes only that connection, with one error line in ``log``.
    """

    def __init__(self, host: str, port: int, handler: Handler, log: logging.Logger,
                 max_frame_bytes: int = MAX_FRAME_BYTES) -> None:
        self._listener = Listener("RpcServer", host, port)
        self._handler = handler
        self._log = log
        self._max_frame_bytes = max_frame_bytes
        self._request_tasks: set[asyncio.Task[None]] = set()
        self.stats = RpcServerStats()

    async def start(self) -> None:
        """Bind and start accepting; OSError (e.g. address in use) propagates."""
        await self._listener.start(self._on_connection)

    @property
    def port(self) -> int:
        """The bound port (the OS-chosen one when constructed with port 0)."""
        return self._listener.port

    async def close(self) -> None:
        """Stop accepting, close every connection and cancel in-flight handlers; idempotent."""
        await self._listener.close(self._request_tasks)

    async def _on_connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Read and dispatch requests; the Listener closes the writer."""
        self.stats.connections_accepted += 1
        conn = _ServerConn(writer)
        if await self._read_requests(reader, conn, writer.get_extra_info("peername")):
            # Clean EOF or reset: let in-flight requests finish (their writes may still land
            # after a half-close) so a handler is never cut off half-way by a client going away.
            if conn.tasks:
                await asyncio.wait(set(conn.tasks))

    async def _read_requests(self, reader: asyncio.StreamReader, conn: _ServerConn, peer: object) -> bool:
        """Dispatch requests until EOF (True) or a protocol error (False)."""
        decoder = FrameDecoder(self._max_frame_bytes)
        while True:
            try:
                # One read may complete several frames: fewer awaits than a read per header/payload.
                data = await reader.read(READ_CHUNK)
                if not data:
                    if decoder.buffered:
                        raise FrameError(f"connection closed mid-frame ({decoder.buffered} bytes "
                                         "of an incomplete frame)")
                    return True
                requests = [_parse_request(frame) for frame in decoder.feed(data)]
            except FrameError as e:
                self.stats.protocol_errors += 1
                self._log.error("rpc: closing connection from %s: %s", peer, e)
                return False
            except OSError as e:
                self._log.debug("rpc: connection from %s lost: %s", peer, e)
                return True
            for rid, rpc, body in requests:
                task = asyncio.create_task(self._dispatch(conn, rid, rpc, body))
                conn.tasks.add(task)
                self._request_tasks.add(task)
                task.add_done_callback(conn.tasks.discard)
                task.add_done_callback(self._request_tasks.discard)

    async def _dispatch(self, conn: _ServerConn, rid: int, rpc: str, body: dict[str, Any]) -> None:
        self.stats.requests += 1
        response = await self._run_handler(rid, rpc, body)
        try:
            data = encode_frame(response, self._max_frame_bytes)
        except FrameError as e:
            self.stats.internal_errors += 1
            self._log.error("rpc: response to %s (id %d) cannot be sent: %s", rpc, rid, e)
            data = encode_frame(_error_frame(rid, INTERNAL, f"response not encodable: {e}"))
        await conn.send(data)

    async def _run_handler(self, rid: int, rpc: str, body: dict[str, Any]) -> dict[str, Any]:
        try:
            result = await self._handler(rpc, body)
            if not isinstance(result, dict):
                raise TypeError(f"handler returned {type(result).__name__}, not a dict")
            return {"id": rid, "body": result}
        except RemoteRpcError as e:
            return _error_frame(rid, e.code, e.message)
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if task is None or task.cancelling():
                raise  # we are being shut down
            # Something inside the handler was cancelled, not us: still answer the caller.
            self.stats.internal_errors += 1
            self._log.error("rpc: handler for %s (id %d) was cancelled", rpc, rid)
            return _error_frame(rid, INTERNAL, "handler was cancelled")
        except Exception as e:
            self.stats.internal_errors += 1
            self._log.exception("rpc: handler for %s (id %d) raised", rpc, rid)
            return _error_frame(rid, INTERNAL, f"{type(e).__name__}: {e}")
