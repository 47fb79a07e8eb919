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

from nodes.listen import Listener

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
    try:
        url = urlsplit(target)
        query = dict(parse_qsl(url.query, keep_blank_values=True))
    except ValueError as e:  # e.g. "http://[::1" (unbalanced IPv6 brackets)
        raise _Reject(400, f"unparsable request target {target[:80]!r}: {e}") from None
    return _Head(method=method, path=unquote(url.path) or "/", query=query, keep_alive=keep_alive,
                 content_length=_content_length(headers, max_body_bytes),
                 expect_continue=headers.get("expect", "").lower() == "100-continue")


def _encode_response(resp: HttpResponse, keep_alive: bool, head_only: bool) -> bytes:
    try:
        reason = HTTPStatus(resp.status).phrase
    except ValueError:
        reason = "Unknown"
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
    """

    def __init__(self, host: str, port: int, handler: HttpHandler, log: logging.Logger, *,
                 max_header_bytes: int = MAX_HEADER_BYTES, max_body_bytes: int = MAX_BODY_BYTES,
                 idle_timeout_s: float | None = 120.0) -> None:
        self._listener = Listener("HttpServer", host, port)
        self._handler = handler
        self._log = log
        self._max_header_bytes = max_header_bytes
        self._max_body_bytes = max_body_bytes
        self._idle_timeout_s = idle_timeout_s
        self.requests = 0
        """Requests answered (any status), for tests."""

    async def start(self) -> None:
        """Bind and start accepting; OSError (e.g. address in use) propagates."""
        await self._listener.start(self._on_connection, limit=self._max_header_bytes)

    @property
    def port(self) -> int:
        """The bound port (the OS-chosen one when constructed with port 0)."""
        return self._listener.port

    async def close(self) -> None:
        """Stop accepting and close every connection (cancelling handlers in progress); idempotent."""
        await self._listener.close()

    async def _on_connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Serve requests until one ends the connection; the Listener closes the writer."""
        try:
            while await self._serve_one(reader, writer):
                pass
        except (OSError, TimeoutError):
            pass  # peer went away or idled out: nothing to answer

    async def _serve_one(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        """Read, handle and answer one request; True to keep the connection for the next one."""
        try:
            async with asyncio.timeout(self._idle_timeout_s):
                lines = await self._read_head(reader)
                if lines is None:
                    return False
                head = _parse_head(lines, self._max_body_bytes)
                if head.expect_continue and head.content_length:
                    writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
                body = await reader.readexactly(head.content_length)
        except _Reject as e:
            self._log.warning("http: rejecting request from %s: %s %s",
                              writer.get_extra_info("peername"), e.status, e.message)
            await self._send(writer, json_response(e.status, {"ok": False, "error": e.message}), False, False)
            await self._linger(reader, writer)
            return False
        except asyncio.IncompleteReadError:
            return False  # closed mid-body: nobody to answer
        resp = await self._call(head, body)
        await self._send(writer, resp, head.keep_alive, head.method == "HEAD")
        return head.keep_alive

    async def _linger(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Half-close, then discard what the client still sends (for up to ``LINGER_S``).

        Closing a socket with unread input sends a TCP reset, which can destroy the error
        response before the client reads it (e.g. a 413 while the client is still sending).
        """
        try:
            if writer.can_write_eof():
                writer.write_eof()
            async with asyncio.timeout(LINGER_S):
                while await reader.read(64 * 1024):
                    pass
        except (OSError, TimeoutError):
            pass

    async def _read_head(self, reader: asyncio.StreamReader) -> list[str] | None:
        """The request line and header lines, up to the empty line; None on a clean EOF first.

        Lines may end in CRLF or a bare LF (RFC 9112 section 2.2 lets a recipient accept LF
        alone; waiting for CRLFCRLF left such a client with no answer at all). Empty lines
        before the request line are skipped, as the same section allows. The whole head,
        skipped lines included, is bounded by ``max_header_bytes``.
        """
        lines: list[str] = []
        total = 0
        while True:
            try:
                raw = await reader.readuntil(b"\n")
            except asyncio.IncompleteReadError as e:
                if not lines and not e.partial.strip():
                    return None
                raise _Reject(400, "connection closed inside the request head") from None
            except asyncio.LimitOverrunError:
                raise _Reject(400, f"request head exceeds {self._max_header_bytes} bytes") from None
            total += len(raw)
            if total > self._max_header_bytes:
                raise _Reject(400, f"request head exceeds {self._max_header_bytes} bytes")
            line = raw[:-2] if raw.endswith(b"\r\n") else raw[:-1]
            if not line:
                if lines:
                    return lines
                continue
            lines.append(line.decode("latin-1"))

    async def _call(self, head: _Head, body: bytes) -> HttpResponse:
        try:
            resp = await self._handler(head.method, head.path, head.query, body)
            if not isinstance(resp, HttpResponse) or not 200 <= resp.status <= 599:
                raise TypeError(f"handler returned {resp!r:.100}, not an HttpResponse with a final status")
            return resp
        except Exception as e:
            self._log.exception("http: handler failed for %s %s", head.method, head.path)
            return json_response(500, {"ok": False, "error": "internal", "message": f"{type(e).__name__}: {e}"})

    async def _send(self, writer: asyncio.StreamWriter, resp: HttpResponse, keep_alive: bool,
                    head_only: bool) -> None:
        self.requests += 1
        if writer.is_closing():
            return
        writer.write(_encode_response(resp, keep_alive, head_only))
        await writer.drain()
