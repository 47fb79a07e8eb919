"""RPC server and client pool over real loopback sockets (nodes/rpc.py)."""

from __future__ import annotations

import asyncio
import logging
import socket
import struct
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from contextlib import asynccontextmanager
from typing import Any, TypeVar

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nodes.rpc import INTERNAL, RemoteRpcError, RpcClientPool, RpcLayerError, RpcServer
from nodes.rpc_server import start_eagerly
from nodes.wire import encode_frame, read_frame

T = TypeVar("T")
LOG = logging.getLogger("test.rpc")


def run(coro: Coroutine[Any, Any, T], timeout_s: float = 15.0) -> T:
    return asyncio.run(asyncio.wait_for(coro, timeout_s))


async def wait_until(cond: Callable[[], bool], timeout_s: float = 5.0, what: str = "condition") -> None:
    """Poll ``cond`` on the loop until true; AssertionError after ``timeout_s``."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while not cond():
        if loop.time() > deadline:
            raise AssertionError(f"timed out after {timeout_s}s waiting for {what}")
        await asyncio.sleep(0.005)


class Service:
    """Test handler: Echo, Gate (blocks until N arrived), Hold (blocks until released), failures."""

    def __init__(self, gate_size: int = 0) -> None:
        self.arrived = 0
        self.gate = asyncio.Event()
        self.gate_size = gate_size
        self.release = asyncio.Event()
        self.held = 0

    async def __call__(self, rpc: str, body: dict[str, Any]) -> dict[str, Any]:
        if rpc == "Echo":
            return {"echo": body}
        if rpc == "Gate":
            self.arrived += 1
            if self.arrived >= self.gate_size:
                self.gate.set()
            await self.gate.wait()
            return {"n": body["n"]}
        if rpc == "Hold":
            self.held += 1
            await self.release.wait()
            return {"released": True}
        if rpc == "Busy":
            raise RemoteRpcError("SERVICE_UNAVAILABLE", "too busy")
        if rpc == "Crash":
            raise ValueError("boom")
        raise RemoteRpcError("NO_SUCH_METHOD", f"unknown rpc {rpc!r}")


@asynccontextmanager
async def serving(handler: Callable[[str, dict[str, Any]], Awaitable[dict[str, Any]]],
                  port: int = 0, drop_on_timeout: bool = True
                  ) -> AsyncIterator[tuple[RpcServer, RpcClientPool]]:
    server = RpcServer("127.0.0.1", port, handler, LOG)
    await server.start()
    pool = RpcClientPool({"s": f"127.0.0.1:{server.port}"}, drop_on_timeout=drop_on_timeout)
    try:
        yield server, pool
    finally:
        await pool.close()
        await server.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_call_and_response() -> None:
    async def scenario() -> None:
        async with serving(Service()) as (server, pool):
            assert await pool.call("s", "Echo", {"x": [1, "two"]}, 5) == {"echo": {"x": [1, "two"]}}
            assert await pool.call("s", "Echo", {}, 5) == {"echo": {}}
            assert pool.stats.connections_opened == 1 and pool.connected("s")
            assert server.stats.requests == 2

    run(scenario())


def test_concurrent_calls_are_multiplexed_on_one_connection() -> None:
    async def scenario() -> None:
        # Every Gate call blocks until all 20 arrived: only concurrent dispatch can answer them.
        async with serving(Service(gate_size=20)) as (server, pool):
            results = await asyncio.gather(*(pool.call("s", "Gate", {"n": n}, 5) for n in range(20)))
            assert [r["n"] for r in results] == list(range(20))
            assert pool.stats.connections_opened == 1
            assert server.stats.connections_accepted == 1

    run(scenario())


def test_remote_error_propagates_code_and_message() -> None:
    async def scenario() -> None:
        async with serving(Service()) as (_, pool):
            with pytest.raises(RemoteRpcError) as err:
                await pool.call("s", "Busy", {}, 5)
            assert (err.value.code, err.value.message) == ("SERVICE_UNAVAILABLE", "too busy")
            with pytest.raises(RemoteRpcError, match="NO_SUCH_METHOD"):
                await pool.call("s", "Nope", {}, 5)
            assert pool.stats.connections_opened == 1

    run(scenario())


def test_handler_exception_is_internal_and_connection_survives(caplog: pytest.LogCaptureFixture) -> None:
    async def scenario() -> None:
        async with serving(Service()) as (server, pool):
            with pytest.raises(RemoteRpcError) as err:
                await pool.call("s", "Crash", {}, 5)
            assert err.value.code == "INTERNAL" and "boom" in err.value.message
            assert await pool.call("s", "Echo", {"a": 1}, 5) == {"echo": {"a": 1}}
            assert pool.stats.connections_opened == 1 and server.stats.internal_errors == 1

    with caplog.at_level(logging.ERROR, logger="test.rpc"):
        run(scenario())
    errors = [r for r in caplog.records if r.name == "test.rpc"]
    assert len(errors) == 1 and errors[0].exc_info is not None  # logged with its traceback


def test_timeout_drops_the_connection_by_default() -> None:
    """A blackhole toxic may have eaten half a frame: the next call must use a fresh connection."""
    async def scenario() -> None:
        service = Service()
        async with serving(service) as (_, pool):
            with pytest.raises(RpcLayerError, match="timed out"):
                await pool.call("s", "Hold", {}, 0.2)
            assert not pool.connected("s")
            assert await pool.call("s", "Echo", {"after": True}, 5) == {"echo": {"after": True}}
            assert pool.stats.connections_opened == 2 and pool.stats.timeouts == 1
            service.release.set()

    run(scenario())


def test_timeout_fails_only_that_call_and_keeps_the_connection() -> None:
    async def scenario() -> None:
        service = Service()
        async with serving(service, drop_on_timeout=False) as (_, pool):
            with pytest.raises(RpcLayerError, match="timed out"):
                await pool.call("s", "Hold", {}, 0.2)
            assert await pool.call("s", "Echo", {"after": True}, 5) == {"echo": {"after": True}}
            assert pool.stats.connections_opened == 1 and pool.stats.timeouts == 1
            service.release.set()  # the held call now answers: nobody waits for it any more
            await wait_until(lambda: pool.stats.late_responses == 1, what="late response dropped")
            assert await pool.call("s", "Echo", {}, 5) == {"echo": {}}

    run(scenario())


def test_connect_refused_is_rpc_layer_error() -> None:
    async def scenario() -> None:
        pool = RpcClientPool({"gone": f"127.0.0.1:{free_port()}"})
        with pytest.raises(RpcLayerError, match="connect to gone"):
            await pool.call("gone", "Echo", {}, 5)
        assert pool.stats.connect_failures == 1 and not pool.connected("gone")
        await pool.close()

    run(scenario())


def test_unknown_uuid_is_key_error_and_addresses_can_change() -> None:
    async def scenario() -> None:
        async with serving(Service()) as (server, pool):
            with pytest.raises(KeyError):
                await pool.call("nobody", "Echo", {}, 5)
            assert pool.has("s") and not pool.has("nobody")
            pool.set_address("other", f"127.0.0.1:{server.port}")
            assert await pool.call("other", "Echo", {}, 5) == {"echo": {}}

    run(scenario())


def test_server_closed_mid_call_fails_outstanding_calls_then_reconnects() -> None:
    async def scenario() -> None:
        service = Service()
        async with serving(service) as (server, pool):
            port = server.port
            calls = [asyncio.create_task(pool.call("s", "Hold", {}, 10)) for _ in range(3)]
            await wait_until(lambda: service.held == 3, what="calls to reach the server")
            await server.close()
            for call in calls:
                with pytest.raises(RpcLayerError) as err:
                    await call
                assert "timed out" not in str(err.value)
            with pytest.raises(RpcLayerError):  # nobody listens now
                await pool.call("s", "Echo", {}, 5)
            async with serving(Service(), port=port):
                assert await pool.call("s", "Echo", {"back": 1}, 5) == {"echo": {"back": 1}}
            assert pool.stats.connections_opened == 2

    run(scenario())


def test_pool_close_fails_outstanding_calls() -> None:
    async def scenario() -> None:
        service = Service()
        async with serving(service) as (_, pool):
            call = asyncio.create_task(pool.call("s", "Hold", {}, 10))
            await wait_until(lambda: service.held == 1, what="call to reach the server")
            await pool.close()
            with pytest.raises(RpcLayerError, match="closed"):
                await call
            with pytest.raises(RpcLayerError, match="closed"):
                await pool.call("s", "Echo", {}, 5)
            service.release.set()

    run(scenario())


def test_bad_request_shape_closes_only_that_connection(caplog: pytest.LogCaptureFixture) -> None:
    async def scenario() -> None:
        async with serving(Service()) as (server, pool):
            reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
            writer.write(encode_frame({"id": "1", "rpc": "Echo", "body": {}}))
            assert await asyncio.wait_for(read_frame(reader), 5) is None  # server hung up
            writer.close()
            assert await pool.call("s", "Echo", {}, 5) == {"echo": {}}
            assert server.stats.protocol_errors == 1

    with caplog.at_level(logging.ERROR, logger="test.rpc"):
        run(scenario())
    lines = [r.getMessage() for r in caplog.records if r.name == "test.rpc"]
    assert len(lines) == 1 and "'id' must be an integer" in lines[0]


def test_malformed_response_fails_the_call_and_drops_the_connection() -> None:
    async def scenario() -> None:
        async def bad_server(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            request = await read_frame(reader)
            assert request is not None
            writer.write(encode_frame({"id": request["id"], "neither": 1}))
            await writer.drain()
            await reader.read()  # keep it open: the client must drop it itself
            writer.close()

        server = await asyncio.start_server(bad_server, "127.0.0.1", 0)
        pool = RpcClientPool({"bad": f"127.0.0.1:{server.sockets[0].getsockname()[1]}"})
        with pytest.raises(RpcLayerError, match="protocol error"):
            await pool.call("bad", "Echo", {}, 5)
        assert not pool.connected("bad")
        await pool.close()
        server.close()
        await server.wait_closed()

    run(scenario())


def test_refuses_to_bind_all_interfaces() -> None:
    for host in ("0.0.0.0", "::", "", "8.8.8.8"):
        with pytest.raises(ValueError, match="loopback or private"):
            RpcServer(host, 0, Service(), LOG)


garbage = st.one_of(
    st.binary(min_size=1, max_size=64),
    st.dictionaries(st.sampled_from(["id", "rpc", "body", "x"]),
                    st.one_of(st.none(), st.integers(), st.text(max_size=5), st.just({}))).map(encode_frame),
    st.tuples(st.integers(0, 2**32 - 1), st.binary(max_size=16)).map(lambda t: struct.pack(">I", t[0]) + t[1]),
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.lists(garbage, min_size=1, max_size=3), min_size=1, max_size=4))
def test_fuzz_garbage_connections_do_not_disturb_other_clients(conns: list[list[bytes]]) -> None:
    async def scenario() -> None:
        async with serving(Service()) as (server, pool):
            writers = []
            for chunks in conns:
                _, writer = await asyncio.open_connection("127.0.0.1", server.port)
                writers.append(writer)
                for chunk in chunks:
                    try:
                        writer.write(chunk)
                        await writer.drain()
                    except ConnectionError:
                        pass  # the server already hung up on this connection
                    n = len(writers)
                    assert await pool.call("s", "Echo", {"n": n}, 5) == {"echo": {"n": n}}
            for writer in writers:
                writer.close()
            assert await pool.call("s", "Echo", {"end": 1}, 5) == {"echo": {"end": 1}}
            assert pool.stats.connections_opened == 1
            assert server.stats.protocol_errors <= len(conns)

    logging.getLogger("test.rpc").disabled = True  # one error line per bad connection is expected
    try:
        run(scenario())
    finally:
        logging.getLogger("test.rpc").disabled = False


async def call_soon(pool: RpcClientPool, uuid: str, rpc: str, body: dict[str, Any],
                    timeout_s: float) -> dict[str, Any] | Exception:
    """``pool.call_soon`` awaited through its callback (the Peers' path, issue #14)."""
    done: asyncio.Future[dict[str, Any] | Exception] = asyncio.get_running_loop().create_future()
    pool.call_soon(uuid, rpc, body, timeout_s, done.set_result)
    return await done


def test_call_soon_reports_through_its_callback_as_call_would() -> None:
    async def scenario() -> None:
        service = Service()
        async with serving(service) as (server, pool):
            # No connection yet: falls back to a task that connects; then the callback path.
            assert await call_soon(pool, "s", "Echo", {"n": 1}, 5) == {"echo": {"n": 1}}
            assert await call_soon(pool, "s", "Echo", {"n": 2}, 5) == {"echo": {"n": 2}}
            busy = await call_soon(pool, "s", "Busy", {}, 5)
            assert isinstance(busy, RemoteRpcError) and busy.code == "SERVICE_UNAVAILABLE"
            assert pool.stats.connections_opened == 1 and server.stats.requests == 3
            timed_out = await call_soon(pool, "s", "Hold", {}, 0.2)
            assert isinstance(timed_out, RpcLayerError) and "timed out" in str(timed_out)
            assert pool.stats.timeouts == 1 and not pool.connected("s")  # dropped, as call() does
            assert await call_soon(pool, "s", "Echo", {}, 5) == {"echo": {}}
            assert pool.stats.connections_opened == 2
            unknown = await call_soon(pool, "nobody", "Echo", {}, 5)
            assert isinstance(unknown, KeyError)
            service.release.set()

    run(scenario())


def test_call_soon_frames_queued_in_one_turn_share_a_send_and_all_answer() -> None:
    async def scenario() -> None:
        async with serving(Service()) as (_, pool):
            assert await pool.call("s", "Echo", {}, 5) == {"echo": {}}  # connected
            loop = asyncio.get_running_loop()
            futs = [loop.create_future() for _ in range(5)]
            for i, fut in enumerate(futs):
                pool.call_soon("s", "Echo", {"i": i}, 5, fut.set_result)
            assert [await f for f in futs] == [{"echo": {"i": i}} for i in range(5)]

    run(scenario())


def test_call_soon_outstanding_calls_fail_when_the_server_goes_away() -> None:
    async def scenario() -> None:
        service = Service()
        async with serving(service) as (server, pool):
            assert await pool.call("s", "Echo", {}, 5) == {"echo": {}}
            loop = asyncio.get_running_loop()
            fut: asyncio.Future[dict[str, Any] | Exception] = loop.create_future()
            pool.call_soon("s", "Hold", {}, 10, fut.set_result)
            await wait_until(lambda: service.held == 1, what="call to reach the server")
            await server.close()
            err = await asyncio.wait_for(fut, 5)
            assert isinstance(err, RpcLayerError) and "timed out" not in str(err)

    run(scenario())


def test_call_soon_callback_that_raises_is_only_reported() -> None:
    """The answer goes straight to the callback from the reader (no future callback turn,
    issue #14); a callback that raises is reported to the loop's exception handler, as a future's
    callback would be, without dropping the connection or losing the other answers."""
    async def scenario() -> None:
        async with serving(Service()) as (_, pool):
            assert await pool.call("s", "Echo", {}, 5) == {"echo": {}}  # connected
            loop = asyncio.get_running_loop()
            reported: list[dict[str, Any]] = []
            loop.set_exception_handler(lambda _loop, ctx: reported.append(ctx))
            got: asyncio.Future[dict[str, Any] | Exception] = loop.create_future()

            def boom(_: dict[str, Any] | Exception) -> None:
                raise RuntimeError("callback failed")

            def answered(result: dict[str, Any] | Exception) -> None:
                got.set_result(result)

            pool.call_soon("s", "Echo", {"i": 1}, 5, boom)
            pool.call_soon("s", "Echo", {"i": 2}, 5, answered)
            assert await asyncio.wait_for(got, 5) == {"echo": {"i": 2}}
            assert [c["exception"].args for c in reported] == [("callback failed",)]
            assert pool.connected("s") and pool.stats.connections_opened == 1
            assert await call_soon(pool, "s", "Echo", {"i": 3}, 5) == {"echo": {"i": 3}}

    run(scenario())


def test_eager_requests_start_in_the_read_callback_and_suspend_onto_a_task() -> None:
    """``eager`` requests run in the ``data_received`` that read them (issue #14): one that never
    waits is answered with no task at all; one that waits goes on a task from where it suspended
    and still answers; an error is still an RPC error, and the connection stays up."""
    async def scenario() -> None:
        service = Service()
        seen_tasks: dict[str, asyncio.Task[Any] | None] = {}

        async def handler(rpc: str, body: dict[str, Any]) -> dict[str, Any]:
            seen_tasks[rpc] = asyncio.current_task()
            return await service(rpc, body)

        server = RpcServer("127.0.0.1", 0, handler, LOG, eager=lambda rpc, body: rpc != "Gate")
        await server.start()
        pool = RpcClientPool({"s": f"127.0.0.1:{server.port}"})
        try:
            assert await pool.call("s", "Echo", {"n": 1}, 5) == {"echo": {"n": 1}}
            assert seen_tasks["Echo"] is None  # ran in the protocol callback
            held = asyncio.ensure_future(pool.call("s", "Hold", {}, 5))
            await wait_until(lambda: service.held == 1, what="Hold to reach the server")
            assert seen_tasks["Hold"] is None and len(server._request_tasks) == 1
            service.release.set()
            assert await held == {"released": True}
            with pytest.raises(RemoteRpcError) as e:
                await pool.call("s", "Crash", {}, 5)
            assert e.value.code == INTERNAL and "boom" in e.value.message
            service.gate_size = 1
            assert await pool.call("s", "Gate", {"n": 2}, 5) == {"n": 2}
            assert seen_tasks["Gate"] is not None  # not eager: on its own task from the start
            assert pool.stats.connections_opened == 1
        finally:
            await pool.close()
            await server.close()

    run(scenario())


def test_start_eagerly_hands_outcomes_and_cancellation_to_the_coroutine() -> None:
    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        steps: list[str] = []
        first: asyncio.Future[int] = loop.create_future()
        second: asyncio.Future[int] = loop.create_future()

        async def coro() -> None:
            steps.append(f"first {await first}")
            await asyncio.sleep(0)  # a bare yield
            try:
                await second
            except ValueError as e:
                steps.append(f"second raised {e}")
            try:
                await loop.create_future()
            except asyncio.CancelledError:
                steps.append("cancelled")
                raise

        task = start_eagerly(coro())
        assert task is not None and steps == []
        first.set_result(1)
        await wait_until(lambda: steps == ["first 1"], what="the first resume")
        second.set_exception(ValueError("boom"))
        await wait_until(lambda: len(steps) == 2, what="the second resume")
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert steps == ["first 1", "second raised boom", "cancelled"]

        async def quick() -> None:
            steps.append("quick")
        assert start_eagerly(quick()) is None and steps[-1] == "quick"

    run(scenario())


def test_a_request_in_flight_is_answered_after_the_client_half_closes() -> None:
    """EOF from the client ends reading, not the requests already running: their answers still
    go out on the half-closed connection, which closes after the last one (the Protocol server's
    ``eof_received``)."""
    async def scenario() -> None:
        service = Service()
        async with serving(service) as (server, _):
            reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
            writer.write(encode_frame({"id": 7, "rpc": "Hold", "body": {}}))
            await wait_until(lambda: service.held == 1, what="Hold to reach the server")
            writer.write_eof()
            await asyncio.sleep(0.05)
            service.release.set()
            assert await asyncio.wait_for(read_frame(reader), 5) == {"id": 7, "body": {"released": True}}
            assert await asyncio.wait_for(read_frame(reader), 5) is None  # then the server closes
            writer.close()
            assert server.stats.protocol_errors == 0

    run(scenario())


def test_eof_inside_a_frame_is_a_protocol_error_on_both_sides(caplog: pytest.LogCaptureFixture) -> None:
    async def scenario() -> None:
        async with serving(Service()) as (server, pool):
            reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
            writer.write(encode_frame({"id": 1, "rpc": "Echo", "body": {}})[:-3])
            writer.write_eof()
            assert await asyncio.wait_for(read_frame(reader), 5) is None
            writer.close()
            assert server.stats.protocol_errors == 1
            assert await pool.call("s", "Echo", {}, 5) == {"echo": {}}  # others unaffected

        async def cut_server(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            request = await read_frame(reader)
            assert request is not None
            writer.write(encode_frame({"id": request["id"], "body": {}})[:-2])
            writer.write_eof()
            await reader.read()
            writer.close()

        bad = await asyncio.start_server(cut_server, "127.0.0.1", 0)
        pool2 = RpcClientPool({"cut": f"127.0.0.1:{bad.sockets[0].getsockname()[1]}"})
        with pytest.raises(RpcLayerError, match="protocol error: connection closed mid-frame"):
            await pool2.call("cut", "Echo", {}, 5)
        assert not pool2.connected("cut")
        await pool2.close()
        bad.close()
        await bad.wait_closed()

    with caplog.at_level(logging.ERROR, logger="test.rpc"):
        run(scenario())


def test_responses_to_a_client_that_does_not_read_wait_for_the_socket_and_arrive_whole() -> None:
    """Past the write buffer's high-water mark a response waits (``pause_writing``) instead of
    piling up; once the client reads, every response arrives whole and in one piece each."""
    async def scenario() -> None:
        blob = "x" * 1_000_000

        async def handler(rpc: str, body: dict[str, Any]) -> dict[str, Any]:
            return {"n": body["n"], "blob": blob}

        server = RpcServer("127.0.0.1", 0, handler, LOG)
        await server.start()
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", server.port, limit=2**22)
            for n in range(8):
                writer.write(encode_frame({"id": n, "rpc": "Big", "body": {"n": n}}))
            # The client reads nothing meanwhile: the kernel's buffers fill, then the server waits.
            await wait_until(lambda: any(c._drained is not None for c in server._conns),
                             what="the server to wait for the socket")
            got = []
            for _ in range(8):
                frame = await asyncio.wait_for(read_frame(reader), 5)
                assert frame is not None and len(frame["body"]["blob"]) == len(blob)
                got.append(frame["body"]["n"])
            assert sorted(got) == list(range(8))
            writer.close()
        finally:
            await server.close()

    run(scenario())


@pytest.mark.parametrize("drop_on_timeout", [True, False])
def test_a_timed_out_sender_does_not_cancel_the_others_waiting_for_the_socket(drop_on_timeout: bool) -> None:
    """Two calls wait for a socket the peer does not read (a stopped follower); the first times
    out. The second must end as an RPC failure of its own (its timeout, or the dropped
    connection), never a bare cancellation: a cancelled call task is dropped by ``call_soon``'s
    delivery, so the Peer would never hear back and keep its request pending for good (review
    of the issue #14 Protocol client: one shared drain future was cancelled with the first)."""
    async def scenario() -> None:
        accepted: list[asyncio.StreamWriter] = []

        async def never_read(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            accepted.append(writer)  # keep it open, never read: the client's send buffer fills

        server = await asyncio.start_server(never_read, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        pool = RpcClientPool({"s": f"127.0.0.1:{port}"}, drop_on_timeout=drop_on_timeout,
                             max_frame_bytes=16 << 20)
        big = {"pad": "x" * (4 << 20)}
        try:
            first = asyncio.ensure_future(pool.call("s", "Echo", big, 0.3))
            second = asyncio.ensure_future(pool.call("s", "Echo", big, 2.0))
            results = await asyncio.gather(first, second, return_exceptions=True)
            assert not second.cancelled()
            assert all(isinstance(r, RpcLayerError) for r in results), results
            late: list[Any] = []
            pool.call_soon("s", "Echo", big, 0.5, late.append)
            await wait_until(lambda: bool(late), timeout_s=5, what="call_soon's outcome")
            assert isinstance(late[0], RpcLayerError), late
        finally:
            await pool.close()
            for writer in accepted:
                writer.close()
            server.close()
            await server.wait_closed()

    run(scenario())
