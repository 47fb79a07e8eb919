"""Issue #10 item 6 against real processes: the requests that used to kill the leader (NaN, Infinity,
-Infinity values; a 100k-deep body) and the one that got no answer (bare-LF request line) now each get
their documented answer, and the leader stays up and keeps acknowledging writes, nothing lost."""

from __future__ import annotations

import json
import struct

import pytest
from rawnode import exchange, http_request, http_statuses, node_addresses

from harness.cluster import Cluster
from harness.nodeclient import Outcome

pytestmark = pytest.mark.integration

BAD = ["NaN", "Infinity", "-Infinity", "1e999"]
BODIES = {
    "put": ['{{"key":"k","value":{t}}}', '{{"key":{t},"value":"v"}}'],
    "append": ['{{"key":"k","value":{t}}}'],
    "cas": ['{{"key":"k","from":{t},"to":"x"}}', '{{"key":"k","from":"x","to":{t}}}'],
}


def test_the_leader_survives_every_input_that_killed_it_and_keeps_serving(cluster: Cluster) -> None:
    leader = cluster.wait_for_leader()
    addr = node_addresses(cluster.run.cluster_file)[leader].http
    client = cluster.node(leader)
    assert client.put("before", "1", timeout_s=5.0).outcome is Outcome.OK

    for token in BAD:
        for verb, templates in BODIES.items():
            for template in templates:
                body = template.format(t=token).encode()
                statuses = http_statuses(exchange(addr, http_request("POST", f"/kv/{verb}", body)))
                assert statuses == [400], (verb, body, statuses)
    deep = b'{"key":"k","value":' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    assert http_statuses(exchange(addr, http_request("POST", "/kv/put", deep[:1_000_000]))) == [400]
    assert http_statuses(exchange(addr, http_request("GET", "/health", eol=b"\n"))) == [200]

    assert all(cluster.is_running(n) for n in cluster.nodes), cluster.log_tails()
    after = cluster.wait_for_leader()
    assert cluster.node(after).put("after", "2", timeout_s=5.0).outcome is Outcome.OK
    for key, value in (("before", "1"), ("after", "2")):
        got = cluster.node(after).get(key, timeout_s=5.0)
        assert got.outcome is Outcome.OK and got.body.get("value") == value, got
    assert cluster.node(after).get("k", timeout_s=5.0).body.get("value") is None  # nothing bad applied


def test_a_follower_refuses_a_frame_with_nan_in_an_op_and_stays_up(cluster: Cluster) -> None:
    """The RPC edge: an UpdateConsensus addressed correctly, from the real leader's uuid in the current
    term, whose op carries NaN / Infinity / 1e999 closes the connection unanswered (a protocol error):
    nothing reaches the follower's WAL, whose failed append would have been fatal."""
    leader = cluster.wait_for_leader()
    term = int(cluster.status(leader)["term"])
    addrs = node_addresses(cluster.run.cluster_file)
    for follower in (n for n in cluster.nodes if n != leader):
        for token in ("NaN", "Infinity", "-Infinity", "1e999"):
            frame = {"id": 1, "rpc": "UpdateConsensus", "body": {
                "tablet_id": "raftchaos", "caller_uuid": leader, "dest_uuid": follower, "caller_term": term,
                "preceding_id": [0, 0], "committed_index": 0, "all_replicated_index": 0,
                "ops": [{"term": term, "index": 1, "kind": "WRITE",
                         "payload": {"op": "put", "key": "k", "value": "@@"}}]}}
            payload = json.dumps(frame).replace('"@@"', token).encode()
            assert exchange(addrs[follower].rpc, struct.pack(">I", len(payload)) + payload) == b""
    assert all(cluster.is_running(n) for n in cluster.nodes), cluster.log_tails()
    after = cluster.wait_for_leader()
    assert cluster.node(after).put("after-frames", "3", timeout_s=5.0).outcome is Outcome.OK
    got = cluster.node(after).get("after-frames", timeout_s=5.0)
    assert got.outcome is Outcome.OK and got.body.get("value") == "3"
    assert cluster.node(after).get("k", timeout_s=5.0).body.get("value") is None  # nothing bad applied
