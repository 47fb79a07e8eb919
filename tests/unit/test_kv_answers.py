"""The KV API's answers now that an applied write reaches it straight from the apply loop
(RaftConsensus.replicate_then, issue #14): 409 for an op applied as a failure, 503 timeout
(indeterminate) that a later commit does not overwrite, and a failing callback that neither
stops the apply loop nor the other writes' answers."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

from consensus_fixture import ModelFollower, Node, pump, run_node

from nodes.api import NodeApi


def test_applied_failure_is_409_and_a_timeout_stays_the_answer(tmp_path: Path) -> None:
    async def body(n: Node) -> None:
        api = NodeApi(n.c, n.service)
        await n.win_election()
        f2 = ModelFollower("n2")
        await pump(n, {"n2": f2})
        put = asyncio.create_task(api.handle("POST", "/kv/put", {}, b'{"key": "a", "value": 5}'))
        append = asyncio.create_task(api.handle("POST", "/kv/append", {}, b'{"key": "a", "value": "x"}'))
        await n.settle()
        await pump(n, {"n2": f2})
        ok, failed = await put, await append
        assert ok.status == 200 and json.loads(ok.body) == {"ok": True, "index": 2}
        doc = json.loads(failed.body)
        assert failed.status == 409 and doc["error"] == "apply_error" and doc["index"] == 3
        # Nothing commits within kv_op_timeout_ms: the client hears "timeout", indeterminate,
        # and the commit that follows later changes nothing in that answer.
        n.flags.set("kv_op_timeout_ms", 50)
        late = await api.handle("POST", "/kv/put", {}, b'{"key": "b", "value": "1"}')
        assert late.status == 503 and json.loads(late.body) == {
            "ok": False, "error": "timeout", "indeterminate": True}
        await pump(n, {"n2": f2})
        assert n.c.kv.data["b"] == "1" and n.c.applied_index == 4
    run_node(tmp_path, body)


def test_a_raising_apply_callback_is_reported_and_apply_goes_on(tmp_path: Path) -> None:
    async def body(n: Node) -> None:
        await n.win_election()
        f2 = ModelFollower("n2")
        await pump(n, {"n2": f2})
        loop = asyncio.get_running_loop()
        reported: list[dict[str, Any]] = []
        loop.set_exception_handler(lambda _loop, ctx: reported.append(ctx))
        got: list[Any] = []

        def boom(_: Any) -> None:
            raise RuntimeError("callback failed")
        n.c.replicate_then({"op": "put", "key": "a", "value": "1"}, boom)
        n.c.replicate_then({"op": "put", "key": "a", "value": "2"}, got.append)
        await n.settle()
        await pump(n, {"n2": f2})
        assert got == [{"index": 3}] and n.c.applied_index == 3 and n.c.kv.data["a"] == "2"
        assert [c["exception"].args for c in reported] == [("callback failed",)]
    run_node(tmp_path, body)
