"""PeerMessageQueue (nodes/queue.py): catch-up paging, cursor moves, watermarks, commit, proxy
health: spec items B11-B16, B43, B45."""

from __future__ import annotations

import json
import random
from typing import Any

import pytest
from fakes import LeaderFixture, update_reply

from nodes.log import OpId
from nodes.queue import PeerStatus, UpdateResponse
from nodes.routing import RoutingTable


def respond(fx: LeaderFixture, uuid: str, body: dict[str, Any]) -> bool:
    return fx.queue.response_from_peer(uuid, UpdateResponse.parse(body))


def ack(fx: LeaderFixture, uuid: str, index: int, term: int | None = None, committed: int = 0) -> bool:
    """An OK reply from ``uuid`` holding the leader's log up to ``index``."""
    opid = OpId(term if term is not None else fx.log.get(index).term, index)
    return respond(fx, uuid, update_reply(fx.term, opid, opid, committed))


def queue_only(**kw: Any) -> LeaderFixture:
    """Leader queue without Peer objects; tests track and answer peers by hand."""
    fx = LeaderFixture(peers=[], **kw)
    for uuid in fx.voters:
        if uuid != fx.leader:
            fx.queue.track_peer(uuid)
    return fx


def op_bytes(op: dict[str, Any]) -> int:
    return len(json.dumps(op, separators=(",", ":")))


# ----- B11 -----

@pytest.mark.parametrize("budget", [1, 300, 1000, 1 << 20])
def test_b11_catch_up_is_back_to_back_batches_within_budget(budget: int) -> None:
    """B11. A follower that is behind is caught up with back-to-back requests (no gap of a
    heartbeat) of at most consensus_max_batch_size_bytes each (at least one op each)."""
    fx = LeaderFixture(n_entries=100, committed=0, manual=["C"],
                       flags={"consensus_max_batch_size_bytes": budget})
    fx.clock.advance(0.2)
    fx.peers["B"].signal_request(True)
    fx.settle()
    sends = fx.transport.to("B")
    assert sends[0].ops == []  # negotiation, answered with an LMP mismatch (empty follower)
    batches = [s for s in sends if s.ops]
    assert all(s.at == pytest.approx(0.2) for s in sends)
    assert all(len(s.ops) >= 1 for s in batches)
    assert all(len(s.ops) == 1 or sum(map(op_bytes, s.ops)) <= budget for s in batches)
    assert [i for s in batches for i in s.op_indexes] == list(range(1, 101))
    if budget == 1:
        assert len(batches) == 100
    if budget == 1000:
        assert 5 < len(batches) < 100
    assert fx.followers["B"].last == OpId(1, 100)
    assert fx.queue.committed_index == 100


def test_b11_read_stops_at_budget_but_sends_one_oversized_op() -> None:
    """B11. ... of at most consensus_max_batch_size_bytes each (at least one op each): an op
    bigger than the budget still goes out alone."""
    fx = queue_only(n_entries=0)
    fx.append(3, payload_bytes=500, signal=False)
    fx.flags.set("consensus_max_batch_size_bytes", 100)
    fx.queue.peers["B"].status = PeerStatus.OK
    fx.queue.peers["B"].next_index = 1
    req: dict[str, Any] = {}
    fx.queue.request_for_peer("B", True, req)
    assert [op["index"] for op in req["ops"]] == [1]


# ----- B12 -----

def test_b12_divergent_follower_restarts_from_its_commit_index() -> None:
    """B12. A divergent follower whose last OpId is unknown to the leader and who has received
    nothing from it is resent from its own committed index + 1."""
    fx = queue_only(n_entries=20, term=3, entry_term=3, committed=20)
    body = update_reply(3, (2, 30), (0, 0), 7, ("PRECEDING_ENTRY_DIDNT_MATCH", "mismatch"))
    assert respond(fx, "B", body) is True
    peer = fx.queue.peers["B"]
    assert peer.next_index == 8 and peer.status is PeerStatus.LMP_MISMATCH
    req: dict[str, Any] = {}
    fx.queue.request_for_peer("B", True, req)
    assert req["preceding_id"] == [3, 7]
    assert req["ops"][0]["index"] == 8


def test_b12_known_last_received_or_current_leader_cursor_wins() -> None:
    """B12 (spec 2.5 step 3). The cursor uses the follower's last OpId when the leader has it,
    else its last received from this leader, and only then its commit index."""
    fx = queue_only(n_entries=20, committed=20)
    respond(fx, "B", update_reply(1, (1, 12), (0, 0), 3, ("PRECEDING_ENTRY_DIDNT_MATCH", "x")))
    assert fx.queue.peers["B"].next_index == 13
    respond(fx, "C", update_reply(1, (5, 40), (1, 9), 3, ("PRECEDING_ENTRY_DIDNT_MATCH", "x")))
    assert fx.queue.peers["C"].next_index == 10


# ----- B13 -----

def test_b13_majority_ack_is_followed_by_commit_carrying_request() -> None:
    """B13. The ack that completes a majority is followed immediately by a request to that
    follower carrying the new commit index; other followers learn it on their next exchange."""
    fx = LeaderFixture(n_entries=2, committed=2, manual=["C"], notify_commits=False)
    fx.caught_up("B")
    c_follower = fx.followers["C"]
    c_follower.log = [OpId(1, 1), OpId(1, 2)]
    fx.peers["C"].signal_request(True)
    fx.transport.last("C").reply_body(c_follower.handle(fx.transport.last("C").body))
    fx.clock.advance(0.1)
    fx.append(1)  # op 3 to both; B answers at once, C later
    fx.settle()
    b_sends = [s for s in fx.transport.to("B") if s.at == pytest.approx(0.1)]
    assert [s.op_indexes for s in b_sends] == [[3], []]
    assert b_sends[1].body["committed_index"] == 3 == fx.queue.committed_index
    c_pending = fx.transport.last("C")
    assert c_pending.op_indexes == [3] and c_pending.body["committed_index"] == 2
    fx.clock.advance(0.1)
    c_pending.reply_body(c_follower.handle(c_pending.body))
    nxt = fx.transport.last("C")
    assert nxt is not c_pending and nxt.at == pytest.approx(0.2)
    assert nxt.body["committed_index"] == 3 and nxt.ops == []


# ----- B14 -----

def test_b14_new_leader_commits_nothing_before_its_own_term_op() -> None:
    """B14. A new leader's commit index does not move until an op of its own term (its NO_OP) is
    on a majority of voters."""
    fx = queue_only(n_entries=5, term=2, entry_term=1, committed=0)
    assert fx.queue.marks.first_index_in_current_term is None
    ack(fx, "B", 5)
    ack(fx, "C", 5)
    assert fx.queue.marks.majority_replicated_index == 5
    assert fx.queue.committed_index == 0 and fx.commits == []
    fx.append(1, signal=False)  # the NO_OP at index 6, term 2: only the leader has it
    assert fx.queue.committed_index == 0
    ack(fx, "B", 6)
    assert fx.queue.committed_index == 6 and fx.commits == [6]


# ----- B15 -----

def test_b15_non_voter_acks_do_not_count() -> None:
    """B15. Acks from NON_VOTERs ... never count toward the commit majority."""
    fx = queue_only(n_entries=4, committed=0)
    fx.queue.track_peer("D", voter=False)
    ack(fx, "D", 4)
    assert fx.queue.committed_index == 0
    ack(fx, "B", 4)
    assert fx.queue.committed_index == 4


def test_b15_stale_ack_of_a_peer_whose_last_exchange_failed_does_not_count() -> None:
    """B15. Acks ... from peers whose last exchange was not OK never count toward the commit
    majority."""
    fx = queue_only(voters=("A", "B", "C", "D", "E"), n_entries=10, committed=0)
    ack(fx, "B", 10)
    assert fx.queue.committed_index == 0  # leader + B = 2 < 3
    fx.queue.update_peer_status("B", PeerStatus.REMOTE_ERROR)
    ack(fx, "C", 10)
    assert fx.queue.committed_index == 0  # B's ack is stale: leader + C only
    ack(fx, "B", 10)
    assert fx.queue.committed_index == 10


def test_b15_commit_index_never_decreases() -> None:
    """B15. ... the leader's commit index never decreases (the majority watermark may)."""
    fx = queue_only(voters=("A", "B", "C", "D", "E"), n_entries=10, committed=0)
    ack(fx, "B", 10)
    ack(fx, "C", 10)
    assert fx.queue.committed_index == 10
    fx.queue.update_peer_status("B", PeerStatus.RPC_LAYER_ERROR)
    fx.queue.update_peer_status("C", PeerStatus.RPC_LAYER_ERROR)
    ack(fx, "D", 3)
    ack(fx, "E", 3)
    assert fx.queue.marks.majority_replicated_index == 3
    assert fx.queue.committed_index == 10
    assert fx.commits == [10]


@pytest.mark.parametrize("seed", [15, 115, 215])
def test_b15_commit_index_against_a_model_over_random_exchanges(seed: int) -> None:
    """B15, whole item over seeded random histories: 5 voters (leader A) and 2 NON_VOTERs; each
    step is an OK ack (a monotone position), a failed exchange (REMOTE_ERROR, RPC_LAYER_ERROR,
    CANNOT_PREPARE), an LMP-mismatch reply claiming a long log, or a leader append. After every
    step the queue's commit index equals an independent model: the max over time of the 3rd
    highest position among the voters whose last exchange is OK (the leader counts once its WAL
    has the op). So a NON_VOTER's ack, or a stale position of a peer whose last exchange failed,
    never counts, and the commit never decreases though the watermark does. kuduraft
    consensus_queue.cc, PeerMessageQueue::AdvanceQueueWatermark (only voters with
    is_last_exchange_successful) and ResponseFromPeer (commit index = max(commit, majority
    watermark) once an op of the current term is replicated). Before, three hand-picked
    sequences checked one case of each clause."""
    print(f"seed={seed}")
    rng = random.Random(seed)
    fx = queue_only(voters=("A", "B", "C", "D", "E"), n_entries=30, committed=0)
    non_voters = ("F", "G")
    for uuid in non_voters:
        fx.queue.track_peer(uuid, voter=False)
    followers = ("B", "C", "D", "E") + non_voters
    ok_at: dict[str, int | None] = {u: None for u in followers}  # position if last exchange OK
    held = dict.fromkeys(followers, 0)
    expected, watermark_fell, counted_non_voter_above = 0, False, 0
    for _ in range(400):
        u = rng.choice(followers)
        r = rng.random()
        if r < 0.05:
            fx.append(1, signal=False)
        elif r < 0.55:
            held[u] = rng.randint(held[u], fx.log.last_index)
            if held[u]:
                ack(fx, u, held[u])
            else:
                respond(fx, u, update_reply(1, (0, 0)))
            ok_at[u] = held[u]
            if u in non_voters and held[u] > expected:
                counted_non_voter_above += 1
        elif r < 0.85:
            fx.queue.update_peer_status(u, rng.choice([PeerStatus.REMOTE_ERROR,
                                                       PeerStatus.RPC_LAYER_ERROR,
                                                       PeerStatus.CANNOT_PREPARE]))
            ok_at[u] = None
        else:
            claim = fx.log.last_index
            respond(fx, u, update_reply(1, (1, claim), error=("PRECEDING_ENTRY_DIDNT_MATCH", "test")))
            ok_at[u] = None
        voters_ok = [fx.log.last_index] + [pos for v in ("B", "C", "D", "E")
                                           if (pos := ok_at[v]) is not None]
        if len(voters_ok) >= 3:
            watermark = sorted(voters_ok, reverse=True)[2]
            watermark_fell |= watermark < expected
            expected = max(expected, watermark)
        assert fx.queue.committed_index == expected, (u, r, ok_at)
    assert fx.commits == sorted(set(fx.commits)) and fx.commits[-1] == expected
    print(f"commit {expected}, watermark fell below it: {watermark_fell}, "
          f"non-voter acks above the commit: {counted_non_voter_above}")
    assert watermark_fell and counted_non_voter_above > 5 and expected > 0


# ----- B16 -----

def test_b16_all_replicated_needs_every_peer_ok_and_resets_on_track() -> None:
    """B16. The all-replicated index changes only when every tracked peer's last exchange is OK
    and is reset to 0 whenever a peer is (re)tracked."""
    fx = queue_only(n_entries=6, committed=0)
    ack(fx, "B", 4)
    assert fx.queue.marks.all_replicated_index == 0  # C is still NEW
    ack(fx, "C", 5)
    assert fx.queue.marks.all_replicated_index == 4
    fx.queue.update_peer_status("C", PeerStatus.REMOTE_ERROR)
    ack(fx, "B", 6)
    # Every peer holds >= 5 now, but C's last exchange failed: unchanged, not min() = 5.
    assert fx.queue.marks.all_replicated_index == 4
    ack(fx, "C", 6)
    assert fx.queue.marks.all_replicated_index == 6
    fx.queue.track_peer("D", voter=False)
    assert fx.queue.marks.all_replicated_index == 0
    ack(fx, "B", 6)
    assert fx.queue.marks.all_replicated_index == 0  # D has not answered OK yet
    ack(fx, "D", 6)
    assert fx.queue.marks.all_replicated_index == 6
    fx.queue.untrack_peer("B")
    fx.queue.track_peer("B")
    assert fx.queue.marks.all_replicated_index == 0


# ----- B43 -----

def test_b43_no_topology_never_proxies() -> None:
    """B43. With the default routing policy and no topology, no request is ever proxied (no
    PROXY_OP ops, no proxy_dest_uuid)."""
    voters = ("A", "B", "C", "D", "E")
    table = RoutingTable(voters, {}, "A")
    assert all(table.next_hop(s, d) == d for s in voters for d in voters)
    fx = LeaderFixture(voters=voters, n_entries=3, committed=3)
    for _ in range(20):
        fx.clock.advance(0.2)
        fx.append(1)
    assert fx.transport.sent
    for s in fx.transport.sent:
        assert s.hop == s.dest
        assert "proxy_dest_uuid" not in s.body and "proxy_hops_remaining" not in s.body
        assert all(op["kind"] != "PROXY_OP" for op in s.ops)
    assert all(p.counters.proxied_sends == 0 for p in fx.peers.values())


# ----- B45 -----

def proxied_fx(**kw: Any) -> LeaderFixture:
    """Leader A; C is fed by proxy B; peers tracked by hand."""
    return queue_only(topology={"C": "B"}, **kw)


def build(fx: LeaderFixture, uuid: str) -> dict[str, Any]:
    req: dict[str, Any] = {}
    fx.queue.request_for_peer(uuid, True, req)
    return req


def test_b45_silent_proxy_for_more_than_3s_means_direct() -> None:
    """B45. If the leader has not heard from a proxy for more than 3 s ... new requests to the
    destination go direct."""
    fx = proxied_fx(n_entries=5, committed=5)
    fx.queue.peers["C"].status = PeerStatus.OK
    fx.queue.peers["C"].next_index = 4
    assert build(fx, "C")["proxy_dest_uuid"] == "B"
    fx.clock.advance(3.0)
    req = build(fx, "C")
    assert req["proxy_dest_uuid"] == "B"  # exactly 3 s: still usable
    assert [op["kind"] for op in req["ops"]] == ["PROXY_OP", "PROXY_OP"]
    fx.clock.advance(0.01)
    req = build(fx, "C")
    assert "proxy_dest_uuid" not in req
    assert [op["kind"] for op in req["ops"]] == ["WRITE", "WRITE"]
    # Connection failures to the proxy do not count as hearing from it; server errors do.
    fx.queue.update_peer_status("B", PeerStatus.RPC_LAYER_ERROR)
    assert "proxy_dest_uuid" not in build(fx, "C")
    fx.queue.update_peer_status("B", PeerStatus.REMOTE_ERROR)
    assert build(fx, "C")["proxy_dest_uuid"] == "B"


def test_b45_proxy_lagging_more_than_1000_ops_means_direct() -> None:
    """B45. If ... the proxy lags the destination by more than 1000 ops, new requests to the
    destination go direct."""
    fx = proxied_fx(n_entries=1200, committed=0)
    b, c = fx.queue.peers["B"], fx.queue.peers["C"]
    c.status = PeerStatus.OK
    b.next_index, c.next_index = 100, 1100
    assert build(fx, "C")["proxy_dest_uuid"] == "B"
    c.next_index = 1101
    assert "proxy_dest_uuid" not in build(fx, "C")


def test_b45_untracked_proxy_means_direct() -> None:
    """B45 (spec 2.3). A proxy hop that the leader does not track is replaced by the destination."""
    fx = proxied_fx(n_entries=2)
    fx.queue.untrack_peer("B")
    assert "proxy_dest_uuid" not in build(fx, "C")
