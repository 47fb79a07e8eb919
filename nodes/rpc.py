"""RPC over wire frames: a server that runs each request on its own task, and a multiplexing client pool."""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from nodes.listen import Listener
from nodes.wire import MAX_FRAME_BYTES, FrameError, encode_frame, read_frame

Handler = Callable[[str, dict[str, Any]], Awaitable[dict[str, Any]]]
"""``handler(rpc_name, body) -> response body``; raise RemoteRpcError for an RPC-level failure."""

INTERNAL = "INTERNAL"
"""Error code sent when the handler raised something other than RemoteRpcError."""


class RpcError(Exception):
    """An RPC produced no response body."""


class RpcLayerError(RpcError):
    """No answer from the server: connect refused or failed, reset, EOF, protocol error or timeout.

    kuduraft's RPC_LAYER_ERROR: the request may or may not have reached the server.
    """


class RemoteRpcError(RpcError):
    """The server answered with an RPC-level failure (kuduraft's REMOTE_ERROR path)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


def split_host_port(addr: str) -> tuple[str, int]:
    """``"host:port"`` (IPv6 hosts may be bracketed) -> (host, port); ValueError when malformed."""
    host, sep, port_s = addr.rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port_s.isdigit() or not 0 < int(port_s) < 65536:
        raise ValueError(f"expected 'host:port', got {addr!r}")
    return host, int(port_s)


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


class _ServerConn:
    """One accepted connection: serializes response writes, tracks its in-flight requests."""

    def __init__(self, writer: asyncio.StreamWriter) -> None:
        self.writer = writer
        self.lock = asyncio.Lock()
        self.tasks: set[asyncio.Task[None]] = set()

    async def send(self, data: bytes) -> bool:
        """Write one frame; False when the connection is already gone (the response is dropped)."""
        async with self.lock:
            if self.writer.is_closing():
                return False
            try:
                self.writer.write(data)
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
        while True:
            try:
                frame = await read_frame(reader, self._max_frame_bytes)
                if frame is None:
                    return True
                rid, rpc, body = _parse_request(frame)
            except FrameError as e:
                self.stats.protocol_errors += 1
                self._log.error("rpc: closing connection from %s: %s", peer, e)
                return False
            except OSError as e:
                self._log.debug("rpc: connection from %s lost: %s", peer, e)
                return True
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


@dataclass
class RpcClientStats:
    """Counters since construction, for tests and benchmarks."""

    connections_opened: int = 0
    connect_failures: int = 0
    connections_lost: int = 0
    calls: int = 0
    timeouts: int = 0
    late_responses: int = 0


class _ClientConn:
    """One TCP connection to one destination; responses matched to calls by id."""

    def __init__(self, uuid: str, addr: str, reader: asyncio.StreamReader,
                 writer: asyncio.StreamWriter) -> None:
        self.uuid = uuid
        self.addr = addr
        self.reader = reader
        self.writer = writer
        self.pending: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self.lost: str | None = None
        self.reader_task: asyncio.Task[None] | None = None

    async def send(self, data: bytes) -> None:
        if self.lost is not None:
            raise RpcLayerError(f"connection to {self.uuid} at {self.addr} lost: {self.lost}")
        try:
            # write() buffers the whole frame at once, so a cancelled drain never splits a frame.
            self.writer.write(data)
            await self.writer.drain()
        except OSError as e:
            raise RpcLayerError(f"send to {self.uuid} at {self.addr} failed: {e}") from None


def _parse_response(frame: dict[str, Any]) -> tuple[int, dict[str, Any] | RemoteRpcError]:
    rid = frame.get("id")
    if not isinstance(rid, int) or isinstance(rid, bool):
        raise FrameError(f"not a response: 'id' must be an integer, got {rid!r:.50}")
    if "error" in frame:
        err = frame["error"]
        if not (isinstance(err, dict) and isinstance(err.get("code"), str)
                and isinstance(err.get("message"), str)):
            raise FrameError(f"not a response: malformed 'error' {err!r:.80}")
        return rid, RemoteRpcError(err["code"], err["message"])
    body = frame.get("body")
    if not isinstance(body, dict):
        raise FrameError("not a response: neither an 'error' nor an object 'body'")
    return rid, body


class RpcClientPool:
    """Calls to peers by uuid over one lazily opened, multiplexed connection per destination.

    By default a timeout also drops the connection (``drop_on_timeout``). kuduraft's RPC layer
    keeps it, but a Toxiproxy ``timeout`` toxic (our blackhole) discards bytes mid-stream, so a
    connection that outlived a blackhole can be misaligned for good; reconnecting is the only
    way back. With ``drop_on_timeout=False`` a timeout fails only that call (a late answer is
    dropped), kuduraft's way. A reset, EOF or protocol error fails every call outstanding on the
    connection with RpcLayerError; the next call reconnects. Not thread-safe: one event loop.
    """

    def __init__(self, addresses: Mapping[str, str], log: logging.Logger | None = None,
                 max_frame_bytes: int = MAX_FRAME_BYTES, drop_on_timeout: bool = True) -> None:
        for addr in addresses.values():
            split_host_port(addr)
        self._addresses = dict(addresses)
        self._log = log or logging.getLogger("nodes.rpc")
        self._max_frame_bytes = max_frame_bytes
        self._drop_on_timeout = drop_on_timeout
        self._conns: dict[str, _ClientConn] = {}
        self._connect_locks: dict[str, asyncio.Lock] = {}
        self._ids = itertools.count(1)
        self._closed = False
        self.stats = RpcClientStats()

    def has(self, uuid: str) -> bool:
        return uuid in self._addresses

    def address(self, uuid: str) -> str:
        """The ``host:port`` dialed for ``uuid``; KeyError when unknown."""
        return self._addresses[uuid]

    def set_address(self, uuid: str, addr: str) -> None:
        """Dial ``uuid`` at ``addr`` from now on; an open connection elsewhere is dropped."""
        split_host_port(addr)
        self._addresses[uuid] = addr
        conn = self._conns.get(uuid)
        if conn is not None and conn.addr != addr:
            self._drop(conn, "address changed")

    def connected(self, uuid: str) -> bool:
        """Whether a live connection to ``uuid`` is open right now."""
        conn = self._conns.get(uuid)
        return conn is not None and conn.lost is None

    async def call(self, uuid: str, rpc: str, body: dict[str, Any], timeout_s: float) -> dict[str, Any]:
        """Send ``rpc`` to ``uuid`` and return the response body.

        ``timeout_s`` bounds connecting, sending and waiting together. Raises KeyError for an
        unknown uuid, RpcLayerError when no answer came back, RemoteRpcError when the server
        answered with an error, and FrameError when ``body`` cannot be encoded (a caller bug).
        """
        addr = self._addresses[uuid]
        if self._closed:
            raise RpcLayerError("client pool is closed")
        rid = next(self._ids)
        data = encode_frame({"id": rid, "rpc": rpc, "body": body}, self._max_frame_bytes)
        self.stats.calls += 1
        conn: _ClientConn | None = None
        fut: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        try:
            async with asyncio.timeout(timeout_s):
                conn = await self._connection(uuid, addr)
                conn.pending[rid] = fut
                await conn.send(data)
                return await fut
        except TimeoutError:
            self.stats.timeouts += 1
            if conn is not None and self._drop_on_timeout:
                self._drop(conn, f"{rpc} timed out")
            raise RpcLayerError(f"{rpc} to {uuid} at {addr} timed out after {timeout_s:.3f}s") from None
        finally:
            if conn is not None:
                conn.pending.pop(rid, None)
            if fut.done() and not fut.cancelled():
                fut.exception()  # failed while we were not awaiting it: mark it retrieved

    async def close(self) -> None:
        """Close every connection; outstanding calls fail with RpcLayerError. Idempotent."""
        self._closed = True
        tasks = []
        for conn in list(self._conns.values()):
            self._drop(conn, "client pool closed")
            if conn.reader_task is not None:
                tasks.append(conn.reader_task)
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _connection(self, uuid: str, addr: str) -> _ClientConn:
        conn = self._conns.get(uuid)
        if conn is not None and conn.lost is None:
            return conn
        lock = self._connect_locks.setdefault(uuid, asyncio.Lock())
        async with lock:  # concurrent first calls share one connect
            conn = self._conns.get(uuid)
            if conn is not None and conn.lost is None:
                return conn
            host, port = split_host_port(addr)
            try:
                reader, writer = await asyncio.open_connection(host, port)
            except OSError as e:
                self.stats.connect_failures += 1
                raise RpcLayerError(f"connect to {uuid} at {addr} failed: {e}") from None
            if self._closed:
                writer.close()
                raise RpcLayerError("client pool is closed")
            conn = _ClientConn(uuid, addr, reader, writer)
            conn.reader_task = asyncio.create_task(self._read_responses(conn))
            self._conns[uuid] = conn
            self.stats.connections_opened += 1
            return conn

    async def _read_responses(self, conn: _ClientConn) -> None:
        reason = "closed by the server"
        try:
            while True:
                frame = await read_frame(conn.reader, self._max_frame_bytes)
                if frame is None:
                    break
                rid, outcome = _parse_response(frame)
                fut = conn.pending.pop(rid, None)
                if fut is None or fut.done():
                    self.stats.late_responses += 1  # its call timed out or was cancelled
                elif isinstance(outcome, RemoteRpcError):
                    fut.set_exception(outcome)
                else:
                    fut.set_result(outcome)
        except FrameError as e:
            reason = f"protocol error: {e}"
            self._log.warning("rpc: dropping connection to %s at %s: %s", conn.uuid, conn.addr, e)
        except OSError as e:
            reason = f"connection error: {e}"
        finally:
            self._drop(conn, reason)

    def _drop(self, conn: _ClientConn, reason: str) -> None:
        """Mark ``conn`` dead, close it and fail its outstanding calls; safe to call twice."""
        if conn.lost is None:
            conn.lost = reason
            self.stats.connections_lost += 1
        if self._conns.get(conn.uuid) is conn:
            del self._conns[conn.uuid]
        conn.writer.close()
        try:
            current = asyncio.current_task()
        except RuntimeError:  # called outside the event loop
            current = None
        if conn.reader_task is not None and conn.reader_task is not current:
            conn.reader_task.cancel()
        for fut in conn.pending.values():
            if not fut.done():
                fut.set_exception(RpcLayerError(
                    f"connection to {conn.uuid} at {conn.addr} lost: {conn.lost}"))
        conn.pending.clear()
