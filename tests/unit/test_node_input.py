"""Bad input never kills a node (issue #10 item 6): the HTTP KV/flags edge and the RPC edge refuse
values the WAL cannot encode (NaN, Infinity, float overflow, absurd nesting, int64 overflow) with a
clear error, before anything reaches the log; a failed WAL append would be fatal."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
from consensus_fakes import op, status_error, update_body
from consensus_fixture import Node, run_node

from nodes.api import NodeApi
from nodes.jsonsafe import JsonInputError, check_value, loads
from nodes.kv import KvError, validate_op

BAD_NUMBERS = ["NaN", "Infinity", "-Infinity", "1e999", "-1e400"]
FIELDS_BY_VERB = {"put": ("key", "value"), "cas": ("key", "from", "to"), "append": ("key", "value")}


def body_with(verb: str, field: str, token: str) -> bytes:
    good = {"key": '"k"', "value": '"v"', "from": '"a"', "to": '"b"'}
    fields = {f: good[f] for f in ("key", *FIELDS_BY_VERB[verb])}
    fields[field] = token
    return ("{" + ",".join(f'"{f}":{v}' for f, v in fields.items()) + "}").encode()


async def answer(api: NodeApi, verb: str, body: bytes) -> tuple[int, dict[str, Any]]:
    resp = await api.handle("POST", f"/kv/{verb}", {}, body)
    return resp.status, json.loads(resp.body)


@pytest.mark.parametrize("token", BAD_NUMBERS)
def test_non_finite_numbers_in_any_kv_field_are_400_and_never_reach_the_log(tmp_path: Path, token: str) -> None:
    """Issue #10: a NaN value passed the HTTP parser, the WAL encoder refused it, and the failed append
    killed the leader. Now every field of put/cas/append refuses it with a one-line 400."""
    async def body(n: Node) -> None:
        api = NodeApi(n.c, n.service)
        await n.win_election()
        last = n.c.log.last_index
        for verb, fields in FIELDS_BY_VERB.items():
            for field in fields:
                status, doc = await answer(api, verb, body_with(verb, field, token))
                assert status == 400, (verb, field, doc)
                assert doc["error"] == "bad_request" and "\n" not in doc["message"]
                assert token.lstrip("-") in doc["message"] or "finite" in doc["message"]
        assert n.c.log.last_index == last and n.exits == []
    run_node(tmp_path, body)


@pytest.mark.parametrize(("raw", "problem"), [
    (b'{"key":"k","value":' + b"[" * 100_000 + b"]" * 100_000 + b"}", "nests deeper than 64"),
    (b"[" * 100_000, "nests deeper than 64"),
    (b'{"key":"k","value":"\xff"}', "not UTF-8"),
    (b'{"key":"k","value":', "not valid JSON"),
    (b'{"key":"k","value":' + b"9" * 5000 + b"}", "not valid JSON"),
    (b'{"key":1,"value":"v"}', "'key' must be a string"),
    (b'["put","k","v"]', "must be a JSON object"),
])
def test_malformed_kv_bodies_are_400_with_a_one_line_message(tmp_path: Path, raw: bytes, problem: str) -> None:
    async def body(n: Node) -> None:
        api = NodeApi(n.c, n.service)
        await n.win_election()
        last = n.c.log.last_index
        status, doc = await answer(api, "put", raw)
        assert status == 400 and problem in doc["message"] and "\n" not in doc["message"], doc
        assert n.c.log.last_index == last
    run_node(tmp_path, body)


@pytest.mark.parametrize("token", BAD_NUMBERS)
def test_non_finite_flag_values_are_400(tmp_path: Path, token: str) -> None:
    async def body(n: Node) -> None:
        api = NodeApi(n.c, n.service)
        before = n.c.flags["snooze_for_leader_ban_ratio"]
        resp = await api.handle("PUT", "/flags/snooze_for_leader_ban_ratio", {},
                                b'{"value": ' + token.encode() + b"}")
        assert resp.status == 400 and n.c.flags["snooze_for_leader_ban_ratio"] == before
    run_node(tmp_path, body)


def test_values_at_the_depth_limit_are_accepted() -> None:
    value: Any = 1
    for _ in range(63):
        value = [value]
    assert validate_op({"op": "put", "key": "k", "value": value})
    assert loads(json.dumps({"value": value}).encode())  # body depth 64 = 1 + value depth 63
    with pytest.raises(KvError, match="deeper than 64"):
        validate_op({"op": "put", "key": "k", "value": [value, [[value]]]})


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf, {"a": [math.nan]}, {1: "x"}, b"bytes",
                                 {"deep": [[[[[math.inf]]]]]}])
def test_validate_op_refuses_what_the_wal_cannot_encode(bad: Any) -> None:
    """Ops built in process (not parsed from JSON) are checked too: the leader must never replicate one."""
    for fields in ({"value": bad}, {"from": bad, "to": 1}, {"from": 1, "to": bad}):
        verb = "put" if "value" in fields else "cas"
        with pytest.raises(KvError):
            validate_op({"op": verb, "key": "k", **fields})
    with pytest.raises(JsonInputError):
        check_value(bad)


def test_follower_rejects_an_update_whose_op_payload_the_wal_cannot_encode(tmp_path: Path) -> None:
    """The RPC edge: a frame cannot carry NaN (the wire decoder refuses it, see test_wire), and a body
    built in process with one is refused as INVALID_REQUEST before anything is appended; the follower
    stays up and accepts the next good update."""
    async def body(n: Node) -> None:
        bad = op(1, 1, "WRITE", {"op": "put", "key": "k", "value": math.nan})
        resp = await n.update(term=1, ops=[bad], committed=1)
        assert resp["error"]["code"] == "INVALID_REQUEST" and "non-finite" in resp["error"]["message"]
        assert n.c.log.last_index == 0 and n.exits == []
        assert status_error(await n.update(term=1, ops=[op(1, 1)], committed=1)) is None
        await n.drain()
        assert n.c.log.last_index == 1 and n.c.kv.data == {"k1": "v1"}
    run_node(tmp_path, body)


@pytest.mark.parametrize(("field", "value"), [("caller_term", 2**63), ("committed_index", -(2**63) - 1),
                                               ("preceding_id", [10**30, 1])])
def test_integers_past_int64_are_invalid_requests(tmp_path: Path, field: str, value: Any) -> None:
    """kuduraft's terms and indexes are int64: a bigger one cannot come from a peer and must not be
    adopted (it would be written to the metadata file)."""
    async def body(n: Node) -> None:
        resp = await n.service.handle("UpdateConsensus", {**update_body(term=1), field: value})
        assert resp["error"]["code"] == "INVALID_REQUEST" and "int64" in resp["error"]["message"]
        assert n.c.term == 0
    run_node(tmp_path, body)
