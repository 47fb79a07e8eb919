"""RPC client pool over wire frames: one lazily opened connection per destination, calls multiplexed by id."""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from nodes.rpc_errors import RemoteRpcError, RpcLayerError, RpcTimeout
from nodes.slot import CallbackSlot
from nodes.wire import MAX_FRAME_BYTES, FrameDecoder, FrameError, encode_frame


def split_host_port(addr: str) -> tuple[str, int]:
    """``"host:port"`` (IPv6 hosts may be bracketed) -> (host, port); ValueError when malformed."""
    host, sep, port_s = addr.rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port_s.isdigit() or not 0 < int(port_s) < 65536:
        raise ValueError(f"expected 'host:port', got {addr!r}")
    return host, int(port_s)


@dataclass
class RpcClientStats:
    """Counters since construction, for tests and benchmarks."""

    connections_opened: int = 0
    connect_failures: int = 0
    connections_lost: int = 0
    calls: int = 0
    timeouts: int = 0
    late_responses: int = 0
    oversized_requests: int = 0


class _ClientConn(asyncio.Protocol):
    """One TCP connection to one destination; responses matched to calls by id.

    An ``asyncio.Protocol`` (issue #14): a reply is decoded in ``data_received`` and handed to its
    call there, with no reader-task wake-up in between (the leader reads four replies per write
    at one client). A reset, EOF or protocol error drops the connection through the pool.
    """

    def __init__(self, pool: RpcClientPool, uuid: str, addr: str) -> None:
        self.pool = pool
        self.uuid = uuid
        self.addr = addr
        self.transport: asyncio.Transport | None = None
        self.pending: dict[int, Pending] = {}
        self.lost: str | None = None
        self.closed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._decoder = FrameDecoder(pool._max_frame_bytes)
        self._drained: asyncio.Future[None] | None = None

    # ----- asyncio.Protocol -----
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        stats = self.pool.stats
        try:
            for frame in self._decoder.feed(data):  # one read may complete several frames
                rid, outcome = _parse_response(frame)
                fut = self.pending.pop(rid, None)
                if fut is None or fut.done():
                    stats.late_responses += 1  # its call timed out or was cancelled
                elif isinstance(outcome, RemoteRpcError):
                    fut.set_exception(outcome)
                else:
                    fut.set_result(outcome)
        except FrameError as e:
            self.pool._log.warning("rpc: dropping connection to %s at %s: %s", self.uuid, self.addr, e)
            self.pool._drop(self, f"protocol error: {e}")

    def eof_received(self) -> bool:
        if self._decoder.buffered:
            reason = (f"protocol error: connection closed mid-frame ({self._decoder.buffered} "
                      "bytes of an incomplete frame)")
            self.pool._log.warning("rpc: dropping connection to %s at %s: %s", self.uuid,
                                   self.addr, reason)
        else:
            reason = "closed by the server"
        self.pool._drop(self, reason)
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self.pool._drop(self, f"connection error: {exc}" if exc is not None else "closed by the server")
        self._wake_writers()
        if not self.closed.done():
            self.closed.set_result(None)

    def pause_writing(self) -> None:
        if self._drained is None:
            self._drained = asyncio.get_running_loop().create_future()

    def resume_writing(self) -> None:
        self._wake_writers()

    def _wake_writers(self) -> None:
        drained, self._drained = self._drained, None
        if drained is not None and not drained.done():
            drained.set_result(None)

    # ----- sending -----
    def is_closing(self) -> bool:
        return self.transport is None or self.transport.is_closing()

    def write_now(self, frame: bytes) -> None:
        """Hand ``frame`` to the transport at once (it sends what the socket takes right away).

        kuduraft's Peer hands its request to the messenger, whose reactor thread writes it as
        soon as it runs. An earlier version held the frame to the end of the loop turn to
        coalesce frames for one peer; with one request in flight per Peer there is at most one
        such frame per turn, and the hold cost a write's request up to a whole turn at one
        client (issue #14's timeline: 0.1-0.2 ms on the critical path, twice per write). The
        leader's answer to its client still goes out first where both happen in one turn: the
        commit runs, and answers, before the Peer builds its next request."""
        if self.lost is not None or self.transport is None or self.transport.is_closing():
            return  # the call waiting on this frame fails with the connection
        self.transport.write(frame)

    async def send(self, data: bytes) -> None:
        """Write one frame and wait while the socket lags; RpcLayerError once the connection is lost."""
        if self.lost is not None or self.transport is None:
            raise RpcLayerError(f"connection to {self.uuid} at {self.addr} lost: {self.lost}")
        # write() buffers the whole frame at once, so a cancelled wait never splits a frame.
        self.transport.write(data)
        if self._drained is not None:
            # Shared by every sender waiting on this socket: shielded, so a waiter's own timeout
            # or cancellation cancels only that waiter, never the others' wait.
            await asyncio.shield(self._drained)
        if self.lost is not None:
            raise RpcLayerError(f"send to {self.uuid} at {self.addr} failed: {self.lost}")


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


Pending = asyncio.Future[dict[str, Any]] | CallbackSlot[dict[str, Any]]


def _deliver(fut: asyncio.Future[dict[str, Any]], done: Callable[[dict[str, Any] | Exception], None]) -> None:
    """Hand a finished call to its callback; a cancelled one (shutdown) is not reported."""
    if fut.cancelled():
        return
    exc = fut.exception()
    if exc is None:
        done(fut.result())
    elif isinstance(exc, Exception):
        done(exc)


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
        self._tasks: set[asyncio.Task[dict[str, Any]]] = set()
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
        answered with an error; a body that cannot be framed (over the frame limit, or not JSON)
        is an RpcLayerError too: the request never left.
        """
        addr = self._addresses[uuid]
        if self._closed:
            raise RpcLayerError("client pool is closed")
        rid = next(self._ids)
        try:
            data = encode_frame({"id": rid, "rpc": rpc, "body": body}, self._max_frame_bytes)
        except FrameError as e:
            # kuduraft's messenger refuses a call over rpc_max_message_size and the call fails
            # with a network error, so the Peer counts an RPC-layer failure and retries on its
            # heartbeat; raising anything else would leave the Peer's request pending forever.
            self.stats.oversized_requests += 1
            raise RpcLayerError(f"{rpc} to {uuid} not sent: {e}") from None
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
            raise RpcTimeout(f"{rpc} to {uuid} at {addr} timed out after {timeout_s:.3f}s") from None
        finally:
            if conn is not None:
                conn.pending.pop(rid, None)
            if fut.done() and not fut.cancelled():
                fut.exception()  # failed while we were not awaiting it: mark it retrieved

    def call_soon(self, uuid: str, rpc: str, body: dict[str, Any], timeout_s: float,
                  done: Callable[[dict[str, Any] | Exception], None]) -> None:
        """``call`` without a task: ``done(response body or exception)`` runs on the loop later.

        Same outcomes as ``call`` (RpcLayerError incl. RpcTimeout, RemoteRpcError, KeyError). On an
        open connection the frame is queued at once and only a completion slot and a timer are armed;
        the leader's Peers send every UpdateConsensus this way (issue #14: a task and a timeout
        scope per request were a visible share of the leader's loop). Without a connection it
        falls back to a task running ``call``, which connects first.
        """
        loop = asyncio.get_running_loop()
        conn = self._conns.get(uuid)
        if conn is None or conn.lost is not None or self._closed or conn.is_closing() \
                or conn.transport is None or conn.transport.get_write_buffer_size() > 0:
            task = loop.create_task(self.call(uuid, rpc, body, timeout_s))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
            task.add_done_callback(lambda t: _deliver(t, done))
            return
        try:
            addr = self._addresses[uuid]
            rid = next(self._ids)
            data = encode_frame({"id": rid, "rpc": rpc, "body": body}, self._max_frame_bytes)
        except KeyError as e:
            loop.call_soon(done, e)
            return
        except FrameError as e:  # as in ``call``: an unsendable request is an RPC-layer failure
            self.stats.oversized_requests += 1
            loop.call_soon(done, RpcLayerError(f"{rpc} to {uuid} not sent: {e}"))
            return
        self.stats.calls += 1
        slot: CallbackSlot[dict[str, Any]] = CallbackSlot(done)
        conn.pending[rid] = slot

        def expire() -> None:
            if slot.done():
                return
            self.stats.timeouts += 1
            conn.pending.pop(rid, None)
            if self._drop_on_timeout:
                self._drop(conn, f"{rpc} timed out")
            slot.set_exception(RpcTimeout(f"{rpc} to {uuid} at {addr} timed out after {timeout_s:.3f}s"))

        slot.timer = loop.call_later(timeout_s, expire)
        conn.write_now(data)

    async def close(self) -> None:
        """Close every connection; outstanding calls fail with RpcLayerError. Idempotent."""
        self._closed = True
        tasks: list[asyncio.Task[Any]] = list(self._tasks)
        for task in tasks:
            task.cancel()
        closing: list[asyncio.Future[Any]] = []
        for conn in list(self._conns.values()):
            self._drop(conn, "client pool closed")
            closing.append(conn.closed)
        await asyncio.gather(*tasks, *closing, return_exceptions=True)

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
                _, conn = await asyncio.get_running_loop().create_connection(
                    lambda: _ClientConn(self, uuid, addr), host, port)
            except OSError as e:
                self.stats.connect_failures += 1
                raise RpcLayerError(f"connect to {uuid} at {addr} failed: {e}") from None
            if self._closed:
                self._drop(conn, "client pool is closed")
                raise RpcLayerError("client pool is closed")
            if conn.lost is not None:  # reset before we got here
                raise RpcLayerError(f"connection to {uuid} at {addr} lost: {conn.lost}")
            self._conns[uuid] = conn
            self.stats.connections_opened += 1
            return conn

    def _drop(self, conn: _ClientConn, reason: str) -> None:
        """Mark ``conn`` dead, close it and fail its outstanding calls; safe to call twice."""
        if conn.lost is None:
            conn.lost = reason
            self.stats.connections_lost += 1
        if self._conns.get(conn.uuid) is conn:
            del self._conns[conn.uuid]
        if conn.transport is not None:
            # Unsent bytes of a dropped connection help no one (its calls fail now), and close()
            # would wait for a peer that does not read (a stopped follower) to take them: the
            # connection, and pool.close(), would never finish.
            if conn.transport.get_write_buffer_size() > 0:
                conn.transport.abort()
            else:
                conn.transport.close()
        for fut in list(conn.pending.values()):
            if not fut.done():
                fut.set_exception(RpcLayerError(
                    f"connection to {conn.uuid} at {conn.addr} lost: {conn.lost}"))
        conn.pending.clear()
