"""The node's asyncio HTTP/1.1 server (nodes/http.py), over loopback sockets."""

from __future__ import annotations

import asyncio
import json
import logging
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Coroutine
from contextlib import asynccontextmanager
from typing import Any, TypeVar

import pytest

from nodes.http import HttpResponse, HttpServer, PendingResponse, json_response

T = TypeVar("T")
LOG = logging.getLogger("test.http")


def run(coro: Coroutine[Any, Any, T], timeout_s: float = 15.0) -> T:
    return asyncio.run(asyncio.wait_for(coro, timeout_s))


def run_quietly(coro: Coroutine[Any, Any, T]) -> T:
    """``run`` with the server's log disabled (for scenarios whose rejections it would log)."""
    LOG.disabled = True
    try:
        return run(coro)
    finally:
        LOG.disabled = False


async def handler(method: str, path: str, query: dict[str, str], body: bytes) -> HttpResponse:
    if path == "/crash":
        raise RuntimeError("kaboom")
    if path == "/text":
        return HttpResponse(200, b"metric 1\n", "text/plain; version=0.0.4")
    parsed = json.loads(body) if body else None
    return json_response(200, {"method": method, "path": path, "query": query, "body": parsed,
                               "len": len(body)})


@asynccontextmanager
async def serving(**kwargs: Any) -> AsyncIterator[HttpServer]:
    server = HttpServer("127.0.0.1", 0, handler, LOG, **kwargs)
    await server.start()
    try:
        yield server
    finally:
        await server.close()


async def read_response(reader: asyncio.StreamReader) -> tuple[int, dict[str, str], bytes]:
    head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
    status = int(head[0].split(" ")[1])
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in head[1:] if line)}
    body = await reader.readexactly(int(headers["content-length"]))
    return status, headers, body


def request(method: str, target: str, body: bytes = b"", extra: str = "") -> bytes:
    return (f"{method} {target} HTTP/1.1\r\nHost: x\r\nContent-Length: {len(body)}\r\n{extra}\r\n"
            .encode() + body)


async def closed_by_server(reader: asyncio.StreamReader) -> bool:
    return await asyncio.wait_for(reader.read(), 5) == b""


def test_get_put_post_and_keep_alive() -> None:
    async def scenario() -> None:
        async with serving() as server:
            reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
            writer.write(request("GET", "/status?verbose=1&x=a%20b"))
            status, headers, body = await read_response(reader)
            assert status == 200 and headers["content-type"] == "application/json"
            assert headers["connection"] == "keep-alive"
            assert json.loads(body) == {"method": "GET", "path": "/status", "query": {"verbose": "1", "x": "a b"},
                                        "body": None, "len": 0}
            writer.write(request("PUT", "/flags/raft_heartbeat_interval_ms", b'{"value": 50}'))
            status, _, body = await read_response(reader)
            assert status == 200 and json.loads(body)["body"] == {"value": 50}
            writer.write(request("POST", "/kv/put", b'{"key": "k", "value": "v"}'))
            status, _, body = await read_response(reader)
            assert json.loads(body)["method"] == "POST" and json.loads(body)["body"]["key"] == "k"
            writer.write(request("GET", "/text", extra="Connection: close\r\n"))
            status, headers, body = await read_response(reader)
            assert (status, body, headers["content-type"]) == (200, b"metric 1\n", "text/plain; version=0.0.4")
            assert headers["connection"] == "close" and await closed_by_server(reader)
            writer.close()
            assert server.requests == 4

    run(scenario())


def test_pipelined_requests_answered_in_order() -> None:
    async def scenario() -> None:
        async with serving() as server:
            reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
            writer.write(b"".join(request("GET", f"/r{i}") for i in range(5)))
            for i in range(5):
                assert json.loads((await read_response(reader))[2])["path"] == f"/r{i}"
            writer.close()

    run(scenario())


def test_http_1_0_closes_by_default_and_expect_continue_works() -> None:
    async def scenario() -> None:
        async with serving() as server:
            reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
            writer.write(b"GET /old HTTP/1.0\r\n\r\n")
            status, headers, _ = await read_response(reader)
            assert status == 200 and headers["connection"] == "close" and await closed_by_server(reader)
            writer.close()

            reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
            writer.write(b"POST /kv/get HTTP/1.1\r\nContent-Length: 2\r\nExpect: 100-continue\r\n\r\n")
            assert await reader.readuntil(b"\r\n\r\n") == b"HTTP/1.1 100 Continue\r\n\r\n"
            writer.write(b"{}")
            status, _, body = await read_response(reader)
            assert status == 200 and json.loads(body)["body"] == {}
            writer.close()

    run(scenario())


def test_standard_library_client_interoperates() -> None:
    async def scenario() -> None:
        async with serving() as server:
            def fetch() -> dict[str, Any]:
                req = urllib.request.Request(f"http://127.0.0.1:{server.port}/kv/cas", method="POST",
                                             data=b'{"key": "k", "from": 1, "to": 2}')
                with urllib.request.urlopen(req, timeout=5) as resp:
                    return dict(json.loads(resp.read()))
            got = await asyncio.to_thread(fetch)
            assert got["path"] == "/kv/cas" and got["body"] == {"key": "k", "from": 1, "to": 2}

    run(scenario())


@pytest.mark.parametrize(("raw", "status"), [
    (b"GARBAGE\r\n\r\n", 400),
    (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n", 400),          # TLS hello noise
    (b"GET / HTTP/1.1 extra\r\n\r\n", 400),
    (b"get / HTTP/1.1\r\n\r\n", 400),
    (b"GET / HTTP/2.0\r\n\r\n", 400),
    (b"GET nopath HTTP/1.1\r\n\r\n", 400),
    (b"GET / HTTP/1.1\r\nno colon here\r\n\r\n", 400),
    (b"GET / HTTP/1.1\r\nBad Name: x\r\n\r\n", 400),
    (b"POST / HTTP/1.1\r\nContent-Length: -1\r\n\r\n", 400),
    (b"POST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n", 400),
    (b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n", 411),
    (b"POST / HTTP/1.1\r\nContent-Length: 2000000\r\n\r\n", 413),
    (b"GET / HTTP/1.1\r\nX-Big: " + b"a" * 20_000 + b"\r\n\r\n", 400),
])
def test_bad_requests_get_an_error_and_the_connection_closes(raw: bytes, status: int) -> None:
    async def scenario() -> None:
        async with serving() as server:
            reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
            writer.write(raw)
            got, headers, body = await read_response(reader)
            assert got == status and json.loads(body)["ok"] is False
            assert headers["connection"] == "close" and await closed_by_server(reader)
            writer.close()
            # the server keeps serving other connections
            reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
            writer.write(request("GET", "/health"))
            assert (await read_response(reader))[0] == 200
            writer.close()

    run_quietly(scenario())


def test_413_reaches_a_client_still_sending_its_body() -> None:
    async def scenario() -> None:
        async with serving() as server:
            def post() -> int:
                req = urllib.request.Request(f"http://127.0.0.1:{server.port}/kv/put", method="POST",
                                             data=b"x" * (3 * 1024 * 1024))
                try:
                    with urllib.request.urlopen(req, timeout=5):
                        return 200
                except urllib.error.HTTPError as e:
                    return e.code
            assert await asyncio.to_thread(post) == 413

    run_quietly(scenario())


def test_body_limit_is_configurable_and_inclusive() -> None:
    async def scenario() -> None:
        async with serving(max_body_bytes=10) as server:
            reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
            writer.write(request("POST", "/x", b'"12345678"'))  # exactly 10 bytes: accepted
            status, _, body = await read_response(reader)
            assert status == 200 and json.loads(body)["len"] == 10
            writer.close()
            reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
            writer.write(request("POST", "/x", b"12345678901"))
            assert (await read_response(reader))[0] == 413
            writer.close()

    run_quietly(scenario())


def test_handler_exception_is_500_and_connection_survives(caplog: pytest.LogCaptureFixture) -> None:
    async def scenario() -> None:
        async with serving() as server:
            reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
            writer.write(request("GET", "/crash"))
            status, headers, body = await read_response(reader)
            assert status == 500 and "kaboom" in json.loads(body)["message"]
            assert headers["connection"] == "keep-alive"
            writer.write(request("GET", "/health"))
            assert (await read_response(reader))[0] == 200
            writer.close()

    with caplog.at_level(logging.ERROR, logger="test.http"):
        run(scenario())
    assert [r.exc_info is not None for r in caplog.records if r.name == "test.http"] == [True]


def test_idle_connections_are_closed() -> None:
    async def scenario() -> None:
        async with serving(idle_timeout_s=0.2) as server:
            reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
            writer.write(b"GET / HTT")  # stuck mid-request
            assert await closed_by_server(reader)
            writer.close()

    run(scenario())


def test_refuses_to_bind_all_interfaces() -> None:
    for host in ("0.0.0.0", "::", "", "[::]"):
        with pytest.raises(ValueError, match="loopback or private"):
            HttpServer(host, 0, handler, LOG)
    HttpServer("10.1.2.3", 0, handler, LOG)  # a private address is fine (not started)


@pytest.mark.parametrize("raw", [
    b"GET /health HTTP/1.1\nHost: x\n\n",                      # bare LF everywhere (issue #10: no answer)
    b"GET /health HTTP/1.1\nHost: x\r\n\r\n",                  # mixed terminators
    b"\r\n\n\r\nGET /health HTTP/1.1\r\nHost: x\r\n\r\n",      # empty lines before the request line
])
def test_bare_lf_request_lines_are_served_and_the_connection_kept(raw: bytes) -> None:
    """RFC 9112 section 2.2: a recipient may take LF alone as a line terminator; we do, and serve."""
    async def scenario() -> None:
        async with serving() as server:
            reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
            writer.write(raw)
            status, headers, body = await read_response(reader)
            assert status == 200 and json.loads(body)["path"] == "/health"
            assert headers["connection"] == "keep-alive"
            writer.write(b"POST /x HTTP/1.1\nContent-Length: 2\n\n{}")
            status, _, body = await read_response(reader)
            assert status == 200 and json.loads(body)["body"] == {}
            writer.close()

    run(scenario())


@pytest.mark.parametrize(("raw", "status"), [
    (b"POST / HTTP/1.1\r\nContent-Length: " + b"9" * 5000 + b"\r\n\r\n", 413),  # int() would raise
    (b"POST / HTTP/1.1\r\nContent-Length: 00000000000000000000000002\r\n\r\n{}", 200),
    (b"GET http://[::1/ HTTP/1.1\r\n\r\n", 400),                                  # urlsplit raises
    (b"\n" * 20_000, 400),                                                        # endless empty lines
    (b"GET / HTTP/1.1\nX-Big: " + b"a" * 20_000 + b"\n\n", 400),
])
def test_hostile_heads_get_an_answer_never_silence(raw: bytes, status: int) -> None:
    async def scenario() -> None:
        async with serving() as server:
            reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
            writer.write(raw)
            got, _, body = await read_response(reader)
            assert got == status, body
            writer.close()
            reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
            writer.write(request("GET", "/health"))
            assert (await read_response(reader))[0] == 200
            writer.close()

    run_quietly(scenario())


def test_pending_responses_are_answered_when_set_in_order_and_errors_are_500() -> None:
    """The KV write path (issue #14): a handler answers later through a PendingResponse."""
    pending: list[PendingResponse] = []

    def fast(method: str, path: str, query: dict[str, str], body: bytes) -> HttpResponse | PendingResponse:
        if path == "/now":
            return json_response(200, {"now": True})
        p = PendingResponse()
        pending.append(p)
        return p

    async def scenario() -> None:
        server = HttpServer("127.0.0.1", 0, fast, LOG)
        await server.start()
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
            writer.write(request("POST", "/later") + request("GET", "/now"))
            loop = asyncio.get_running_loop()
            deadline = loop.time() + 5
            while not pending:
                assert loop.time() < deadline, "the handler was never called"
                await asyncio.sleep(0.01)
            pending[0].set(json_response(201, {"later": True}))
            pending[0].set(json_response(500, {"ignored": True}))  # first answer wins
            assert (await read_response(reader))[:1] == (201,)
            assert json.loads((await read_response(reader))[2]) == {"now": True}  # in order
            writer.write(request("POST", "/fails"))
            while len(pending) < 2:
                assert loop.time() < deadline, "the handler was never called"
                await asyncio.sleep(0.01)
            pending[1].set(RuntimeError("waiter failed"))
            status, headers, body = await read_response(reader)
            assert status == 500 and "waiter failed" in json.loads(body)["message"]
            assert headers["connection"] == "keep-alive"
            writer.close()
            assert server.requests == 3
        finally:
            await server.close()

    run_quietly(scenario())
