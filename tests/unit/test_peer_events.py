"""The node's event trace (nodes/events.py) as the Peer fills it, on the fake clock.

The trace is observability, not kuduraft behaviour: these tests pin what the suites rely on to
time the node on its own clock (B8's "at once", B20's "pending for the whole RPC timeout", B4/B5's
first request after an election).
"""

from __future__ import annotations

import json
from pathlib import Path

from consensus_fixture import Node, follower_reply, run_node
from fakes import FakeClock, LeaderFixture, always, rpc_layer_error, update_reply

from nodes.api import NodeApi
from nodes.events import NodeEvents
from nodes.log import OpId


def peer_events(fx: LeaderFixture, uuid: str) -> list[dict]:
    return [e for e in fx.peers[uuid].events.read()["events"] if e.get("peer") == uuid]


def test_request_and_reply_carry_node_clock_kind_trigger_and_outcome() -> None:
    fx = LeaderFixture(n_entries=3, manual=["B"])
    fx.clock.advance(0.2)
    peer = fx.peers["B"]
    peer.signal_request(False)  # the first request goes out even with nothing to send
    (req,) = peer_events(fx, "B")
    assert req["event"] == "request" and req["t"] == 0.2 and req["req"] == 1
    assert req["first"] is True and req["trigger"] == "signal" and req["hop"] == "B"
    assert req["term"] == 1 and req["proxied"] is False
    assert req["request_kind"] == peer.last_request_kind
    assert req["ops"] == len(fx.transport.last("B").body["ops"])
    fx.clock.advance(0.05)
    fx.transport.last("B").reply_body(update_reply(1, OpId(1, 3), committed=0))
    reply = peer_events(fx, "B")[1]
    assert reply["event"] == "reply" and reply["req"] == 1 and reply["outcome"] == "ok"
    assert reply["t"] == 0.25 and reply["seq"] > req["seq"]


def test_send_more_follows_the_reply_at_the_same_node_instant() -> None:
    """B8's evidence: an LMP mismatch resets the failures and the next request (with ops) leaves
    inside the same callback, so the two node timestamps are equal."""
    fx = LeaderFixture(n_entries=5, manual=["B"])
    peer = fx.peers["B"]
    peer.signal_request(True)
    fx.clock.advance(0.1)
    fx.transport.last("B").reply_body(update_reply(
        1, OpId(1, 2), error=("PRECEDING_ENTRY_DIDNT_MATCH", "behind"), uuid="B"))
    events = peer_events(fx, "B")
    reply, nxt = events[-2], events[-1]
    assert reply["outcome"] == "preceding_entry_didnt_match"
    assert nxt["event"] == "request" and nxt["trigger"] == "send_more" and nxt["ops"] > 0
    assert nxt["t"] == reply["t"] and nxt["first"] is False and nxt["req"] == reply["req"] + 1


def test_timeout_and_connection_failure_are_told_apart() -> None:
    """B20's evidence: a black-holed request's reply event is a ``timeout`` one RPC timeout after
    its request event; a refused connection is an ``rpc_error``, and degraded sends are
    ``status_only`` heartbeats."""
    fx = LeaderFixture(n_entries=3, manual=["B"], flags={"consensus_rpc_timeout_ms": 1000})
    fx.transport.auto_timeout = True
    fx.peers["B"].signal_request(True)
    fx.clock.advance(1.0)
    req, reply = peer_events(fx, "B")[:2]
    assert reply["outcome"] == "timeout" and reply["req"] == req["req"]
    assert reply["t"] - req["t"] == 1.0
    fx = LeaderFixture(n_entries=3, manual=["C"])
    fx.transport.responders["C"] = always(rpc_layer_error())
    fx.peers["C"].signal_request(True)
    fx.clock.advance(0.01)
    fx.clock.advance(1.0)  # heartbeats now
    c = peer_events(fx, "C")
    assert [e["outcome"] for e in c if e["event"] == "reply"][0] == "rpc_error"
    later = [e for e in c if e["event"] == "request"][1:]
    assert later and all(e["request_kind"] == "status_only" and e["trigger"] == "heartbeat"
                         for e in later)


def test_late_reply_to_a_closed_peer_is_recorded_as_ignored() -> None:
    fx = LeaderFixture(n_entries=1, manual=["B"])
    fx.peers["B"].signal_request(True)
    fx.peers["B"].close()
    fx.transport.last("B").reply_body(update_reply(2, OpId(1, 1), error=("INVALID_TERM", "old")))
    reply = peer_events(fx, "B")[-1]
    assert reply["event"] == "reply" and reply["ignored"] is True and reply["outcome"] == "invalid_term"


def test_ring_is_bounded_per_peer_and_reports_what_a_reader_missed() -> None:
    clock = FakeClock()
    ev = NodeEvents(clock, peer_ring_size=3, node_ring_size=2)
    ev.record_node("became_leader", term=1)
    for i in range(5):
        clock.advance(0.1)
        ev.record_peer("B", "request", req=i + 1)
    ev.record_peer("C", "request", req=1)
    full = ev.read(0)
    assert full["complete"] is False  # B's first two requests were evicted
    assert [e["seq"] for e in full["events"]] == [1, 4, 5, 6, 7]
    assert full["events"][0]["event"] == "became_leader"  # the node ring kept it
    after = ev.read(3)
    assert after["complete"] is True and [e["seq"] for e in after["events"]] == [4, 5, 6, 7]
    assert after["last_seq"] == after["next_since"] == 7
    assert ev.read(7)["events"] == []
    page = ev.read(0, limit=2)
    assert page["truncated"] is True and page["next_since"] == 4


def test_consensus_records_elections_leadership_and_step_down_and_serves_them(tmp_path: Path) -> None:
    """Node-level events for the election engineer (each pre-election's start on the node clock)
    and for B4/B5 (``became_leader`` time); the peers' events share the node's sequence and outlive
    the Peers a step-down closes. ``GET /events?since=`` serves them incrementally."""
    async def body(n: Node) -> None:
        api = NodeApi(n.c, n.service)
        await n.win_election()
        term = n.c.term
        first = n.transport.take("n2")
        first.reply(follower_reply("n2", term + 3, (0, 0), error=("INVALID_TERM", "caller term too low")))
        n.clock.run_due()
        resp = await api.handle("GET", "/events", {"since": "0"}, b"")
        doc = json.loads(resp.body)
        assert resp.status == 200 and doc["uuid"] == "n1" and doc["complete"] is True
        names = [e["event"] for e in doc["events"]]
        assert names.index("election_started") < names.index("election_decided") \
            < names.index("became_leader") < names.index("stepped_down")
        won = next(e for e in doc["events"] if e["event"] == "became_leader")
        assert won["term"] == term
        reqs = [e for e in doc["events"] if e.get("peer") == "n2" and e["event"] == "request"]
        assert reqs and reqs[0]["first"] is True and reqs[0]["t"] >= won["t"]
        reply = next(e for e in doc["events"] if e.get("peer") == "n2" and e["event"] == "reply")
        assert reply["outcome"] == "invalid_term" and reply["responder_term"] == term + 3
        assert reply["seq"] < next(e for e in doc["events"] if e["event"] == "stepped_down")["seq"]
        seqs = [e["seq"] for e in doc["events"]]
        assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
        again = json.loads((await api.handle("GET", "/events", {"since": str(doc["last_seq"])}, b"")).body)
        assert again["events"] == []
        bad = await api.handle("GET", "/events", {"since": "-1"}, b"")
        assert bad.status == 400 and "since" in json.loads(bad.body)["error"]
    run_node(tmp_path, body)
