"""RPC server over wire frames (an asyncio.Protocol): runs each request on its own task and writes responses whole."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Coroutine, Generator
from dataclasses import dataclass
from typing import Any

from nodes.listen import check_listen_host
from nodes.rpc_errors import INTERNAL, RemoteRpcError
from nodes.wire import MAX_FRAME_BYTES, FrameDecoder, FrameError, encode_frame

Handler = Callable[[str, dict[str, Any]], Awaitable[dict[str, Any]]]
"""``handler(rpc_name, body) -> response body``; raise RemoteRpcError for an RPC-level failure."""

Eager = Callable[[str, dict[str, Any]], bool]
"""``eager(rpc_name, body)``: whether that request's handler may start in ``data_received``,
outside any task (it must not need a current task, e.g. ``asyncio.timeout``, before it first
suspends)."""


class _Suspended:
    """Awaits the future an eagerly started coroutine suspended on, without taking its outcome:
    the coroutine reads that itself when it is resumed."""

    __slots__ = ("fut",)

    def __init__(self, fut: asyncio.Future[Any] | None) -> None:
        self.fut = fut

    def __await__(self) -> Generator[Any, None, None]:
        if self.fut is None:
            yield  # a bare yield (asyncio.sleep(0)): one loop turn
        elif not self.fut.done():
            yield self.fut  # its _asyncio_future_blocking is set: the task waits on it
        else:
            self.fut._asyncio_future_blocking = False


async def _resume(coro: Coroutine[Any, Any, None], waiting: asyncio.Future[Any] | None) -> None:
    """Drive ``coro`` on this task from the future it suspended on outside any task; the task's
    cancellation is passed into it, as a task running it from the start would."""
    while True:
        try:
            await _Suspended(waiting)
        except BaseException as e:  # this task was cancelled: let the coroutine see it
            try:
                waiting = coro.throw(e)
            except StopIteration:
                return
            continue
        try:
            waiting = coro.send(None)
        except StopIteration:
            return


def start_eagerly(coro: Coroutine[Any, Any, None]) -> asyncio.Task[None] | None:
    """Run ``coro`` now, in the caller, up to its first real suspension; only then does it go on
    a task. None when it finished without suspending.

    Python 3.12's eager tasks (``asyncio.eager_task_factory``) for 3.11: a request whose handler
    never waits (a follower's commit-only or heartbeat Update) is answered in the
    ``data_received`` that read it, with no task and no loop turn (issue #14: two of a write's
    Updates per follower, one of them the commit-only round trip the next write waits for).
    This is a cost measure with no kuduraft counterpart: kuduraft's reactor thread reads the call
    and queues it to the service pool, whose worker threads run UpdateConsensus. What a peer can
    observe is the same (the handler's order within one request, the reply after it)."""
    try:
        waiting = coro.send(None)
    except StopIteration:
        return None
    return asyncio.get_running_loop().create_task(_resume(coro, waiting))


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


class _ServerConn(asyncio.Protocol):
    """One accepted connection: frames decoded from the receive buffer, each request on its task
    (or started at once, ``start_eagerly``, where the server's ``eager`` says so).

    An ``asyncio.Protocol`` rather than a stream reader task (issue #14): a frame is decoded in
    ``data_received`` and its handler started there, so a request costs no reader-task
    wake-up before it is dispatched (a loop turn per request on the follower, twice per write).
    A response goes into the transport's buffer in one ``write``, so responses never interleave;
    only when the peer stops reading (buffer over WRITE_HIGH_WATER, ``pause_writing``) does a
    sender wait for ``resume_writing``. After EOF (or a reset) the requests in flight still
    finish; the connection closes when the last one has answered.
    """

    def __init__(self, server: RpcServer) -> None:
        self._srv = server
        self._decoder = FrameDecoder(server._max_frame_bytes)
        self.transport: asyncio.Transport | None = None
        self.tasks: set[asyncio.Task[None]] = set()
        self._peer: object = None
        self._eof = False
        self._drained: asyncio.Future[None] | None = None

    # ----- asyncio.Protocol -----
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self._peer = transport.get_extra_info("peername")
        transport.set_write_buffer_limits(high=WRITE_HIGH_WATER)
        if self._srv._closing:
            transport.close()
            return
        self._srv.stats.connections_accepted += 1
        self._srv._conns.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self._srv._conns.discard(self)
        if exc is not None:
            self._srv._log.debug("rpc: connection from %s lost: %s", self._peer, exc)
        self._wake_writers()

    def data_received(self, data: bytes) -> None:
        try:
            # One read may complete several frames.
            requests = [_parse_request(frame) for frame in self._decoder.feed(data)]
        except FrameError as e:
            self._srv.stats.protocol_errors += 1
            self._srv._log.error("rpc: closing connection from %s: %s", self._peer, e)
            assert self.transport is not None
            self.transport.close()
            return
        srv = self._srv
        for rid, rpc, body in requests:
            coro = srv._dispatch(self, rid, rpc, body)
            if srv._eager is not None and srv._eager(rpc, body):
                task = start_eagerly(coro)
                if task is None:
                    continue  # answered already
            else:
                task = asyncio.get_running_loop().create_task(coro)
            self.tasks.add(task)
            self._srv._request_tasks.add(task)
            task.add_done_callback(self._task_done)

    def eof_received(self) -> bool:
        self._eof = True
        if self._decoder.buffered:
            self._srv.stats.protocol_errors += 1
            self._srv._log.error("rpc: closing connection from %s: connection closed mid-frame "
                                 "(%d bytes of an incomplete frame)", self._peer, self._decoder.buffered)
            return False  # the transport closes itself
        if not self.tasks:
            return False
        return True  # half-closed: answer what is in flight, then close

    def pause_writing(self) -> None:
        if self._drained is None:
            self._drained = asyncio.get_running_loop().create_future()

    def resume_writing(self) -> None:
        self._wake_writers()

    # ----- sending -----
    def _task_done(self, task: asyncio.Task[None]) -> None:
        self.tasks.discard(task)
        self._srv._request_tasks.discard(task)
        if self._eof and not self.tasks and self.transport is not None:
            self.transport.close()

    def _wake_writers(self) -> None:
        drained, self._drained = self._drained, None
        if drained is not None and not drained.done():
            drained.set_result(None)

    async def send(self, data: bytes) -> bool:
        """Write one frame; False when the connection is already gone (the response is dropped)."""
        transport = self.transport
        if transport is None or transport.is_closing():
            return False
        transport.write(data)
        if self._drained is not None:
            # Shared by every sender waiting on this socket: shielded, so a waiter's own timeout
            # or cancellation cancels only that waiter, never the others' wait.
            await asyncio.shield(self._drained)
        return True


class RpcServer:
    """Accepts connections on ``host:port`` and answers requests through ``handler``.

    Requests on one connection run concurrently (a proxy node blocks on a downstream RPC while
    others continue); responses are written whole, one at a time. A bad frame or a frame that is
    not a request closes only that connection, with one error line in ``log``. Requests for which
    ``eager`` says so start in the callback that read them (``start_eagerly``).
    """

    def __init__(self, host: str, port: int, handler: Handler, log: logging.Logger,
                 max_frame_bytes: int = MAX_FRAME_BYTES, eager: Eager | None = None) -> None:
        check_listen_host(host)  # ValueError naming the bind rule
        self._eager = eager
        self._host = host
        self._port = port
        self._handler = handler
        self._log = log
        self._max_frame_bytes = max_frame_bytes
        self._server: asyncio.Server | None = None
        self._closing = False
        self._conns: set[_ServerConn] = set()
        self._request_tasks: set[asyncio.Task[None]] = set()
        self.stats = RpcServerStats()

    async def start(self) -> None:
        """Bind and start accepting; OSError (e.g. address in use) propagates."""
        if self._server is not None:
            raise RuntimeError("RpcServer already started")
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(lambda: _ServerConn(self), self._host, self._port)

    @property
    def port(self) -> int:
        """The bound port (the OS-chosen one when constructed with port 0)."""
        if self._server is None or not self._server.sockets:
            return self._port
        return int(self._server.sockets[0].getsockname()[1])

    async def close(self) -> None:
        """Stop accepting, close every connection and cancel in-flight handlers; idempotent."""
        self._closing = True
        if self._server is not None:
            self._server.close()
        tasks = list(self._request_tasks)
        for task in tasks:
            task.cancel()
        for conn in list(self._conns):
            if conn.transport is not None:
                conn.transport.close()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()

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
            if task is not None and task.cancelling():
                raise  # we are being shut down (an eagerly started handler has no task yet)
            # Something inside the handler was cancelled, not us: still answer the caller.
            self.stats.internal_errors += 1
            self._log.error("rpc: handler for %s (id %d) was cancelled", rpc, rid)
            return _error_frame(rid, INTERNAL, "handler was cancelled")
        except Exception as e:
            self.stats.internal_errors += 1
            self._log.exception("rpc: handler for %s (id %d) raised", rpc, rid)
            return _error_frame(rid, INTERNAL, f"{type(e).__name__}: {e}")
