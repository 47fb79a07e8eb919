"""Flags (nodes/flags.py), the cluster file (nodes/config.py) and runtime flag changes over the API
(nodes/api.py ``PUT /flags/<name>``)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from consensus_fixture import CLUSTER_DOC, Node, run_node

from nodes.api import NodeApi
from nodes.config import Address, ConfigError, parse_cluster
from nodes.flags import FLAG_DEFS, REFUSED_FLAGS, FlagError, Flags, parse_flag_args


def test_defaults_are_kuduraft_defaults() -> None:
    f = Flags()
    assert f["raft_heartbeat_interval_ms"] == 500 and f.heartbeat_s == 0.5
    assert f.failure_timeout_s == 1.5  # MET
    assert f["leader_failure_exp_backoff_max_delta_ms"] == 20000
    assert f["snooze_for_leader_ban_ratio"] == 1.0
    assert f["raft_enable_pre_election"] is True and f["enable_leader_failure_detection"] is True
    assert f.rpc_timeout_s == 30.0 and f["consensus_max_batch_size_bytes"] == 1048576
    assert f["follower_unavailable_considered_failed_sec"] == 300 and f["raft_proxy_max_hops"] == 16
    for name in ("fault_crash_on_leader_request_fraction", "fault_crash_after_leader_request_fraction",
                 "fault_crash_before_cmeta_flush", "log_inject_io_error_on_append_fraction"):
        assert f[name] == 0.0
    assert len({d.name for d in FLAG_DEFS}) == len(FLAG_DEFS)


@pytest.mark.parametrize("items,text", [
    (["bogus_flag=1"], "unknown flag 'bogus_flag'"),
    (["raft_heartbeat_interval_ms"], "expects name=value"),
    (["=3"], "expects name=value"),
    (["raft_heartbeat_interval_ms=fast"], "raft_heartbeat_interval_ms: expected int"),
    (["raft_heartbeat_interval_ms=2.5"], "expected int"),
    (["raft_heartbeat_interval_ms=0"], "must be >= 1"),
    (["fault_crash_on_leader_request_fraction=1.5"], "must be <= 1.0"),
    (["fault_crash_after_leader_request_fraction=nan"], "must be finite"),
    (["snooze_for_leader_ban_ratio=inf"], "must be finite"),
    (["raft_enable_pre_election=maybe"], "expected true or false"),
])
def test_bad_flag_arguments_are_named(items: list[str], text: str) -> None:
    with pytest.raises(FlagError, match=text.replace(".", r"\.").replace("(", r"\(")):
        Flags(parse_flag_args(items))


def test_flag_arguments_parse_to_typed_values() -> None:
    f = Flags(parse_flag_args(["raft_heartbeat_interval_ms=100", "raft_enable_pre_election=off",
                               "fault_crash_on_leader_request_fraction=0.25",
                               "leader_failure_exp_backoff_max_delta_ms=300"]))
    assert f["raft_heartbeat_interval_ms"] == 100 and f["raft_enable_pre_election"] is False
    assert f["fault_crash_on_leader_request_fraction"] == 0.25 and f.failure_timeout_s == pytest.approx(0.3)


@pytest.mark.parametrize("overrides", [
    {"leader_failure_exp_backoff_max_delta_ms": 1000},  # < MET 1500 ms
    {"raft_heartbeat_interval_ms": 10000},  # MET 30 s > back-off cap 20 s
    {"enable_flexi_raft": True},
])
def test_broken_invariants_are_refused_at_start(overrides: dict[str, Any]) -> None:
    with pytest.raises(FlagError):
        Flags(overrides)


def test_runtime_set_rechecks_invariants_and_keeps_old_value_on_error() -> None:
    f = Flags()
    seen: list[tuple[str, Any]] = []
    f.on_change(lambda name, value: seen.append((name, value)))
    with pytest.raises(FlagError, match="leader_failure_exp_backoff_max_delta_ms"):
        f.set("raft_heartbeat_interval_ms", 8000)
    assert f["raft_heartbeat_interval_ms"] == 500 and seen == []
    assert f.set("fault_crash_on_leader_request_fraction", "0.5") == 0.5
    assert seen == [("fault_crash_on_leader_request_fraction", 0.5)]
    with pytest.raises(FlagError, match="unknown flag"):
        f.set("nope", 1)


# ----- runtime PUT /flags/<name> -----
async def put(api: NodeApi, name: str, body: bytes) -> tuple[int, dict[str, Any]]:
    resp = await api.handle("PUT", f"/flags/{name}", {}, body)
    return resp.status, json.loads(resp.body)


@pytest.mark.parametrize("name,body,status,text", [
    ("no_such_flag", b'{"value": 1}', 404, "unknown flag"),
    ("raft_heartbeat_interval_ms", b'{"value": "fast"}', 400, "expected int"),
    ("raft_heartbeat_interval_ms", b'{"value": true}', 400, "expected a number"),
    ("raft_heartbeat_interval_ms", b'{"value": 1e400}', 400, "raft_heartbeat_interval_ms"),
    ("snooze_for_leader_ban_ratio", b'{"value": 1e999}', 400, "finite"),
    ("snooze_for_leader_ban_ratio", b'{"value": ' + b"9" * 400 + b"}", 400, "snooze_for_leader_ban_ratio"),
    ("fault_crash_on_leader_request_fraction", b'{"value": 2}', 400, "<= 1.0"),
    ("enable_leader_failure_detection", b'{"value": 1}', 400, "true or false"),
    ("raft_heartbeat_interval_ms", b'{"value": 9000}', 400, "failure timeout"),  # invariant
    ("raft_heartbeat_interval_ms", b"not json", 400, "body must be JSON"),
    ("raft_heartbeat_interval_ms", b"\xff\xfe", 400, "body must be JSON"),
    ("raft_heartbeat_interval_ms", b'{"val": 3}', 400, "body must be JSON"),
    ("raft_heartbeat_interval_ms", b"[3]", 400, "body must be JSON"),
])
def test_put_flag_validation(tmp_path: Path, name: str, body: bytes, status: int, text: str) -> None:
    """Runtime flag changes: unknown name -> 404, bad value or broken invariant -> 400, nothing changed."""
    async def run(n: Node) -> None:
        api = NodeApi(n.c, n.service)
        before = n.flags.as_dict()
        got_status, doc = await put(api, name, body)
        assert got_status == status and text in doc["error"], doc
        assert n.flags.as_dict() == before
    run_node(tmp_path, run)


def test_put_flag_success_and_method_check(tmp_path: Path) -> None:
    async def run(n: Node) -> None:
        api = NodeApi(n.c, n.service)
        status, doc = await put(api, "fault_crash_on_leader_request_fraction", b'{"value": 0.125}')
        assert status == 200 and doc == {"name": "fault_crash_on_leader_request_fraction", "value": 0.125}
        resp = await api.handle("GET", "/flags", {}, b"")
        assert json.loads(resp.body)["flags"]["fault_crash_on_leader_request_fraction"] == 0.125
        status, doc = await put(api, "follower_fail_all_prepare", b'{"value": "true"}')
        assert status == 200 and n.flags["follower_fail_all_prepare"] is True
        resp = await api.handle("GET", "/flags/follower_fail_all_prepare", {}, b"")
        assert resp.status == 405
    run_node(tmp_path, run)


# ----- cluster file -----
def cluster(**changes: Any) -> dict[str, Any]:
    doc = json.loads(json.dumps(CLUSTER_DOC))
    doc.update(changes)
    return doc


def with_node(uuid: str, info: Any) -> dict[str, Any]:
    doc = cluster()
    doc["nodes"][uuid] = info
    return doc


@pytest.mark.parametrize("doc,text", [
    ([], "expected an object"),
    (cluster(nodes={}), "'nodes' is empty"),
    (cluster(extra=1), "unknown keys"),
    (with_node("n2", {"http": "127.0.0.1:1"}), "nodes.n2.rpc: expected 'host:port'"),
    (with_node("n2", {"rpc": "127.0.0.1", "http": "127.0.0.1:1"}), "nodes.n2.rpc"),
    (with_node("n2", {"rpc": "127.0.0.1:http", "http": "127.0.0.1:1"}), "is not a number"),
    (with_node("n2", {"rpc": "127.0.0.1:70000", "http": "127.0.0.1:1"}), "out of range"),
    (with_node("n2", {"rpc": ":7000", "http": "127.0.0.1:1"}), "empty host"),
    (with_node("n2", {"rpc": "0.0.0.0:7000", "http": "127.0.0.1:1"}), "all interfaces"),
    (with_node("n2", {"rpc": "[::]:7000", "http": "127.0.0.1:1"}), "all interfaces"),
    (with_node("n2", {"rpc": "8.8.8.8:7000", "http": "127.0.0.1:1"}), "neither loopback nor private"),
    (with_node("n2", {"rpc": "example.com:7000", "http": "127.0.0.1:1"}), "is not an IP address"),
    (with_node("n2", {"rpc": "127.0.0.1:1", "http": "127.0.0.1:2", "role": "x"}), "unknown keys"),
    (with_node("n2", {"rpc": "127.0.0.1:1", "http": "127.0.0.1:2", "region": 3}), "region"),
    (cluster(dial={"n9": {}}), "unknown source node 'n9'"),
    (cluster(dial={"n1": {"n9": "127.0.0.1:1"}}), "unknown destination node 'n9'"),
    (cluster(dial={"n1": {"n2": "nohost"}}), "dial.n1.n2"),
    (cluster(topology={"n2": "n9"}), "unknown node"),
    (cluster(topology={"n2": "n2"}), "cannot proxy for itself"),
    (cluster(topology={"n2": "n3", "n3": "n2"}), "cycle"),
    (cluster(topology={"n1": "n2", "n2": "n3", "n3": "n1"}), "cycle"),
])
def test_bad_cluster_files_are_refused_with_the_problem_named(doc: Any, text: str) -> None:
    with pytest.raises(ConfigError, match=text.replace(".", r"\.").replace("[", r"\[")):
        parse_cluster(doc)


def test_cluster_file_dial_addresses_and_topology() -> None:
    cfg = parse_cluster(cluster(dial={"n1": {"n2": "127.0.0.1:9002"}}, topology={"n3": "n2"}))
    assert cfg.voters == ["n1", "n2", "n3"]
    assert cfg.dial_address("n1", "n2") == Address("127.0.0.1", 9002)
    assert cfg.dial_address("n2", "n1") == cfg.nodes["n1"].rpc
    assert cfg.topology == {"n3": "n2"}


@pytest.mark.parametrize("name", sorted(REFUSED_FLAGS))
def test_flags_without_machinery_are_refused_by_name(name: str) -> None:
    """Log-cache limits (no log GC), eviction, transfer, tombstones, GetNodeInstance: refused at start
    and at runtime with an error naming the flag, never accepted and ignored."""
    with pytest.raises(FlagError, match=f"flag {name}: refused"):
        Flags(parse_flag_args([f"{name}=1"]))
    with pytest.raises(FlagError, match=f"flag {name}: refused"):
        Flags().set(name, 1)
    assert Flags.known(name) and name not in Flags().as_dict()


def test_refused_flag_on_put_flags_is_400_naming_it() -> None:
    """PUT /flags/<refused name> answers 400 with the refusal, not 404 (the name is kuduraft's)."""
    from types import SimpleNamespace

    c = SimpleNamespace(flags=Flags(), logger=None)
    api = NodeApi(c, None)  # type: ignore[arg-type]
    resp = asyncio.run(api.handle("PUT", "/flags/evict_failed_followers", {}, b'{"value": true}'))
    assert resp.status == 400 and b"evict_failed_followers: refused" in resp.body


def test_no_flag_is_documented_as_having_no_effect() -> None:
    assert not [d.name for d in FLAG_DEFS if "no effect" in d.help or "accepted;" in d.help]
