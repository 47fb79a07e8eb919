"""A minimal HTTP/1.1 server on the node's event loop: keep-alive, Content-Length bodies, bounded sizes."""

from __future__ import annotations

import asyncio
import json
import logging
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from nodes.listen import check_listen_host

MAX_HEADER_BYTES = 16 * 1024
MAX_BODY_BYTES = 1024 * 1024
LINGER_S = 1.0
"""After rejecting a request, how long to drain the client's input before closing."""

_METHOD_RE = re.compile(r"^[A-Z]{1,20}$")
_VERSION_RE = re.compile(r"^HTTP/1\.[01]$")
_HEADER_NAME_RE = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")


@dataclass(frozen=True)
class HttpResponse:
    """What a route handler returns; ``body`` is sent as-is with Content-Length."""

    status: int
    body: bytes
    content_type: str = "application/json"


HttpHandler = Callable[[str, str, dict[str, str], bytes], Awaitable[HttpResponse]]
"""``handler(method, path, query, body)``: path percent-decoded, query keys -> last value."""

FastHandler = Callable[[str, str, dict[str, str], bytes],
                       "HttpResponse | PendingResponse | Awaitable[HttpResponse]"]
"""Like HttpHandler, but may answer at once (an HttpResponse) or later (a PendingResponse or a
future): no task per request."""


class PendingResponse:
    """An answer that comes later, written to the connection the moment it is set.

    Unlike an asyncio future, whose callbacks run one loop turn later, ``set`` answers in the
    same turn: the leader's response to its client then goes out before whatever else that
    turn sends (issue #14: each extra turn on a loaded host costs a scheduling slot).
    """

    __slots__ = ("_callback", "_result")

    def __init__(self) -> None:
        self._callback: Callable[[HttpResponse | BaseException], None] | None = None
        self._result: HttpResponse | BaseException | None = None

    def done(self) -> bool:
        return self._result is not None

    def set(self, result: HttpResponse | BaseException) -> None:
        """Answer with ``result`` (an exception is answered 500); later calls are ignored."""
        if self._result is not None:
            return
        self._result = result
        if self._callback is not None:
            self._callback(result)

    def on_done(self, callback: Callable[[HttpResponse | BaseException], None]) -> None:
        self._callback = callback
        if self._result is not None:
            callback(self._result)


def json_response(status: int, obj: Any) -> HttpResponse:
    """``obj`` as a compact JSON body (ValueError/TypeError if it is not serializable)."""
    return HttpResponse(status, json.dumps(obj, separators=(",", ":"), allow_nan=False).encode("utf-8"))


class _Reject(Exception):
    """The request cannot be served; answer ``status`` and close the connection."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True)
class _Head:
    method: str
    path: str
    query: dict[str, str]
    keep_alive: bool
    content_length: int
    expect_continue: bool


def _parse_headers(lines: list[str]) -> dict[str, str]:
    headers: dict[str, str] = {}
    for line in lines:
        name, sep, value = line.partition(":")
        if not sep or not _HEADER_NAME_RE.match(name):
            raise _Reject(400, f"malformed header line {line[:80]!r}")
        key, value = name.lower(), value.strip(" \t")
        headers[key] = f"{headers[key]}, {value}" if key in headers else value
    return headers


def _content_length(headers: dict[str, str], max_body_bytes: int) -> int:
    if "transfer-encoding" in headers:
        raise _Reject(411, "Transfer-Encoding (chunked) bodies are not supported; send Content-Length")
    raw = headers.get("content-length")
    if raw is None:
        return 0
    values = {v.strip() for v in raw.split(",")}
    text = next(iter(values))
    if len(values) != 1 or not text.isdigit() or not text.isascii():
        raise _Reject(400, f"bad Content-Length {raw[:40]!r}")
    if len(text.lstrip("0")) > 19:  # int() of thousands of digits would raise past the digit limit
        raise _Reject(413, f"body of a {len(text)}-digit length exceeds the limit of {max_body_bytes}")
    length = int(text)
    if length > max_body_bytes:
        raise _Reject(413, f"body of {length} bytes exceeds the limit of {max_body_bytes}")
    return length


def _parse_head(lines: list[str], max_body_bytes: int = MAX_BODY_BYTES) -> _Head:
    """Parse a request head (request line + header lines, terminators removed); _Reject if bad."""
    parts = lines[0].split(" ")
    if len(parts) != 3 or not _METHOD_RE.match(parts[0]) or not _VERSION_RE.match(parts[2]):
        raise _Reject(400, f"malformed request line {lines[0][:80]!r}")
    method, target, version = parts
    if not (target.startswith("/") or target.startswith(("http://", "https://"))):
        raise _Reject(400, f"unsupported request target {target[:80]!r}")
    headers = _parse_headers(lines[1:])
    tokens = {t.strip().lower() for t in headers.get("connection", "").split(",")}
    keep_alive = "close" not in tokens if version == "HTTP/1.1" else "keep-alive" in tokens
    if target[0] == "/" and "?" not in target and "%" not in target and "#" not in target:
        return _Head(method=method, path=target, query={}, keep_alive=keep_alive,
                     content_length=_content_length(headers, max_body_bytes),
                     expect_continue=headers.get("expect", "").lower() == "100-continue")
    try:
        url = urlsplit(target)
        query = dict(parse_qsl(url.query, keep_blank_values=True))
    except ValueError as e:  # e.g. "http://[::1" (unbalanced IPv6 brackets)
        raise _Reject(400, f"unparsable request target {target[:80]!r}: {e}") from None
    return _Head(method=method, path=unquote(url.path) or "/", query=query, keep_alive=keep_alive,
                 content_length=_content_length(headers, max_body_bytes),
                 expect_continue=headers.get("expect", "").lower() == "100-continue")


_REASONS = {int(s): s.phrase for s in HTTPStatus}


def _encode_response(resp: HttpResponse, keep_alive: bool, head_only: bool) -> bytes:
    reason = _REASONS.get(resp.status, "Unknown")
    head = (f"HTTP/1.1 {resp.status} {reason}\r\nContent-Type: {resp.content_type}\r\n"
            f"Content-Length: {len(resp.body)}\r\nConnection: {'keep-alive' if keep_alive else 'close'}"
            "\r\n\r\n").encode("latin-1")
    return head if head_only else head + resp.body


class HttpServer:
    """Serves ``handler`` on ``host:port``; requests on one connection are answered in order.

    Bad requests get a JSON error and the connection is closed: 400 (malformed or header over
    ``max_header_bytes``), 411 (Transfer-Encoding), 413 (body over ``max_body_bytes``). A handler
    exception is logged and answered 500; the connection stays up. A connection idle (or stuck
    mid-request) for ``idle_timeout_s`` is closed.

    Built on ``asyncio.Protocol`` rather than streams: a request is parsed straight out of the
    receive buffer and a handler that returns an ``HttpResponse`` (or a future of one) is
    answered from a callback, with no task, no per-request timer and no stream hops. Profiling
    the leader at 16 clients (issue #14) showed the stream machinery as a quarter of its loop.
    """

    def __init__(self, host: str, port: int, handler: HttpHandler | FastHandler,
                 log: logging.Logger, *, max_header_bytes: int = MAX_HEADER_BYTES,
                 max_body_bytes: int = MAX_BODY_BYTES, idle_timeout_s: float | None = 120.0) -> None:
        check_listen_host(host)  # ValueError naming the bind rule
        self._host = host
        self._port = port
        self._handler = handler
        self._log = log
        self._max_header_bytes = max_header_bytes
        self._max_body_bytes = max_body_bytes
        self._idle_timeout_s = idle_timeout_s
        self._server: asyncio.Server | None = None
        self._conns: set[_Connection] = set()
        self.requests = 0
        """Requests answered (any status), for tests."""

    async def start(self) -> None:
        """Bind and start accepting; OSError (e.g. address in use) propagates."""
        if self._server is not None:
            raise RuntimeError("HttpServer already started")
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(lambda: _Connection(self), self._host, self._port)

    @property
    def port(self) -> int:
        """The bound port (the OS-chosen one when constructed with port 0)."""
        if self._server is None or not self._server.sockets:
            return self._port
        return int(self._server.sockets[0].getsockname()[1])

    async def close(self) -> None:
        """Stop accepting and close every connection (cancelling handlers in progress); idempotent."""
        if self._server is not None:
            self._server.close()
        tasks = []
        for conn in list(self._conns):
            tasks.extend(conn.abort())
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()


class _Connection(asyncio.Protocol):
    """One client connection: parse, dispatch one request at a time, answer in order."""

    def __init__(self, server: HttpServer) -> None:
        self._srv = server
        self._loop = asyncio.get_running_loop()
        self._transport: asyncio.Transport | None = None
        self._buf = bytearray()
        self._lines: list[str] = []
        self._head_bytes = 0
        self._head: _Head | None = None
        self._busy = False  # a handler is running; input waits in the buffer
        self._lingering = False
        self._eof = False
        self._closed = False
        self._paused = False
        self._task: asyncio.Task[HttpResponse] | None = None
        self._pending: asyncio.Future[HttpResponse] | None = None
        self._last_activity = self._loop.time()
        self._idle_timer: asyncio.TimerHandle | None = None

    # ----- asyncio.Protocol -----
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport
        self._srv._conns.add(self)
        if self._srv._idle_timeout_s is not None:
            self._idle_timer = self._loop.call_later(self._srv._idle_timeout_s, self._idle_check)

    def connection_lost(self, exc: Exception | None) -> None:
        self._closed = True
        self._srv._conns.discard(self)
        if self._idle_timer is not None:
            self._idle_timer.cancel()
        if self._task is not None and not self._task.done():
            self._task.cancel()

    def data_received(self, data: bytes) -> None:
        self._last_activity = self._loop.time()
        if self._lingering:
            return  # discarded: we only drain what the client still sends after an error
        self._buf += data
        if self._busy:
            if len(self._buf) > self._srv._max_header_bytes + self._srv._max_body_bytes and not self._paused:
                self._paused = True
                assert self._transport is not None
                self._transport.pause_reading()
            return
        self._process()

    def eof_received(self) -> bool:
        self._eof = True
        if self._lingering:
            self._close()
            return False
        if self._busy:
            return True  # answer the request in progress, then close
        self._process()
        return True

    # ----- parsing -----
    def _process(self) -> None:
        """Serve every complete request in the buffer, one at a time."""
        while not self._busy and not self._closed and not self._lingering:
            try:
                request = self._parse_one()
            except _Reject as e:
                self._reject(e)
                return
            if request is None:
                if self._eof:
                    self._close()
                return
            head, body = request
            self._dispatch(head, body)

    def _parse_one(self) -> tuple[_Head, bytes] | None:
        """The next complete request, None when more input is needed; _Reject when it is bad."""
        srv = self._srv
        buf = self._buf
        if self._head is None:
            pos = 0
            while True:
                nl = buf.find(b"\n", pos)
                if nl < 0:
                    if self._head_bytes + len(buf) - pos > srv._max_header_bytes:
                        raise _Reject(400, f"request head exceeds {srv._max_header_bytes} bytes")
                    if self._eof and (self._lines or bytes(buf[pos:]).strip()):
                        raise _Reject(400, "connection closed inside the request head")
                    del buf[:pos]
                    return None
                self._head_bytes += nl + 1 - pos
                if self._head_bytes > srv._max_header_bytes:
                    raise _Reject(400, f"request head exceeds {srv._max_header_bytes} bytes")
                end = nl - 1 if nl > pos and buf[nl - 1] == 13 else nl
                line = buf[pos:end]
                pos = nl + 1
                if line:
                    self._lines.append(line.decode("latin-1"))
                elif self._lines:
                    break
            del buf[:pos]
            head = _parse_head(self._lines, srv._max_body_bytes)
            self._lines = []
            self._head_bytes = 0
            self._head = head
            if head.expect_continue and head.content_length and len(buf) < head.content_length:
                self._write(b"HTTP/1.1 100 Continue\r\n\r\n")
        head = self._head
        if len(buf) < head.content_length:
            if self._eof:
                self._close()  # closed mid-body: nobody to answer
            return None
        body = bytes(buf[:head.content_length])
        del buf[:head.content_length]
        self._head = None
        return head, body

    # ----- handling -----
    def _dispatch(self, head: _Head, body: bytes) -> None:
        self._busy = True
        try:
            result = self._srv._handler(head.method, head.path, head.query, body)
        except Exception as e:
            self._answer(head, self._internal_error(head, e))
            return
        if isinstance(result, HttpResponse):
            self._answer(head, self._checked(head, result))
            return
        if isinstance(result, PendingResponse):
            result.on_done(lambda r: self._pending_done(head, r))
            return
        fut: asyncio.Future[HttpResponse]
        if asyncio.isfuture(result):
            fut = result
        else:
            fut = self._task = asyncio.ensure_future(result)
        self._pending = fut
        fut.add_done_callback(lambda f: self._handler_done(head, f))

    def _handler_done(self, head: _Head, fut: asyncio.Future[HttpResponse]) -> None:
        self._task = self._pending = None
        if fut.cancelled():
            if self._closed:
                return  # the connection went away (or the server is closing)
            resp = self._internal_error(head, asyncio.CancelledError("handler was cancelled"))
        elif fut.exception() is not None:
            exc = fut.exception()
            assert exc is not None
            resp = self._internal_error(head, exc)
        else:
            resp = self._checked(head, fut.result())
        self._answer(head, resp)

    def _pending_done(self, head: _Head, result: HttpResponse | BaseException) -> None:
        if isinstance(result, BaseException):
            self._answer(head, self._internal_error(head, result))
        else:
            self._answer(head, self._checked(head, result))

    def _checked(self, head: _Head, resp: object) -> HttpResponse:
        if not isinstance(resp, HttpResponse) or not 200 <= resp.status <= 599:
            return self._internal_error(head, TypeError(
                f"handler returned {resp!r:.100}, not an HttpResponse with a final status"))
        return resp

    def _internal_error(self, head: _Head, e: BaseException) -> HttpResponse:
        self._srv._log.error("http: handler failed for %s %s", head.method, head.path,
                             exc_info=(type(e), e, e.__traceback__))
        return json_response(500, {"ok": False, "error": "internal", "message": f"{type(e).__name__}: {e}"})

    def _answer(self, head: _Head, resp: HttpResponse) -> None:
        self._srv.requests += 1
        self._busy = False
        self._last_activity = self._loop.time()
        if self._closed:
            return
        self._write(_encode_response(resp, head.keep_alive, head.method == "HEAD"))
        if not head.keep_alive:
            self._close()
            return
        if self._paused:
            self._paused = False
            assert self._transport is not None
            self._transport.resume_reading()
        self._process()

    def _reject(self, e: _Reject) -> None:
        """Answer ``e``, half-close, then discard input for up to ``LINGER_S`` before closing.

        Closing a socket with unread input sends a TCP reset, which can destroy the error
        response before the client reads it (e.g. a 413 while the client is still sending).
        """
        assert self._transport is not None
        self._srv._log.warning("http: rejecting request from %s: %s %s",
                               self._transport.get_extra_info("peername"), e.status, e.message)
        self._srv.requests += 1
        self._write(_encode_response(json_response(e.status, {"ok": False, "error": e.message}),
                                     False, False))
        self._lingering = True
        self._buf.clear()
        if self._eof:
            self._close()
            return
        if self._transport.can_write_eof():
            self._transport.write_eof()
        self._loop.call_later(LINGER_S, self._close)
        if self._paused:
            self._transport.resume_reading()

    # ----- lifecycle -----
    def _write(self, data: bytes) -> None:
        if self._transport is not None and not self._transport.is_closing():
            self._transport.write(data)

    def _close(self) -> None:
        if self._transport is not None and not self._transport.is_closing():
            self._transport.close()

    def _idle_check(self) -> None:
        """One timer per idle period, not per request: re-armed for what remains of it."""
        timeout = self._srv._idle_timeout_s
        assert timeout is not None
        if self._closed:
            return
        remaining = self._last_activity + timeout - self._loop.time()
        if self._busy or remaining > 0:
            self._idle_timer = self._loop.call_later(remaining if remaining > 0 else timeout,
                                                     self._idle_check)
            return
        self._close()

    def abort(self) -> list[asyncio.Future[HttpResponse]]:
        """Close now (server shutdown); returns the handler task to wait for, if any."""
        self._closed = True
        task = self._task
        if task is not None and not task.done():
            task.cancel()
        if self._transport is not None:
            self._transport.abort()
        return [task] if task is not None else []
