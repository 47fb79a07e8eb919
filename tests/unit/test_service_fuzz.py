"""Property-based fuzz of the consensus RPC handlers (ConsensusService.handle) with hypothesis.

Random JSON bodies, and mutations of valid UpdateConsensus / RequestVote bodies, are fed to every RPC
name, interleaved with clock ticks (elections, heartbeats) and model-follower answers to the leader.
Properties: a handler returns a JSON-encodable dict or raises RemoteRpcError, never anything else; after
every step the term and commit index never decrease, the log is contiguous, applied == commit <= last,
the persisted term/vote equal the in-memory ones; at the end the WAL on disk equals the log in memory.

Runs derandomized (reproducible in CI); set RAFTCHAOS_FUZZ_RANDOM=1 to explore new inputs.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import tempfile
from pathlib import Path
from typing import Any

from consensus_fixture import (
    LOGGER,
    InjectedExit,
    ModelFollower,
    Node,
    RpcCall,
    assert_log_contiguous,
    entries_of,
    open_node,
)
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from nodes.consensus import LeadershipLost, NotLeader
from nodes.fatal import EXIT_INVARIANT
from nodes.rpc import RemoteRpcError
from nodes.wal import Wal
from nodes.wire import encode_frame

RPCS = ("UpdateConsensus", "RequestVote", "RunLeaderElection")
FIELDS = ("tablet_id", "caller_uuid", "dest_uuid", "caller_term", "preceding_id", "ops", "committed_index",
          "all_replicated_index", "proxy_dest_uuid", "proxy_hops_remaining", "candidate_uuid",
          "candidate_term", "candidate_status", "last_received", "is_pre_election", "ignore_live_leader",
          "term", "index", "kind", "payload", "op", "key", "value")
UUIDS = ("n1", "n2", "n3", "n9", "")
FUZZ_FLAGS = {"raft_log_cache_proxy_wait_time_ms": 0}
FLAG_SETS = st.sampled_from([{}, {}, {"raft_enable_pre_election": False}, {"follower_fail_all_prepare": True},
                             {"consensus_inject_latency_ms_in_notifications": 300},
                             {"enable_leader_failure_detection": False}])

SETTINGS = settings(
    max_examples=int(os.environ.get("RAFTCHAOS_FUZZ_EXAMPLES", "60")),
    deadline=None,
    derandomize=not os.environ.get("RAFTCHAOS_FUZZ_RANDOM"),
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    print_blob=True,
)

scalars = (st.none() | st.booleans() | st.integers(-3, 12) | st.integers()
           | st.floats(allow_nan=False, allow_infinity=False) | st.sampled_from(UUIDS) | st.text(max_size=4))
json_values = st.recursive(
    scalars,
    lambda kids: st.lists(kids, max_size=3)
    | st.dictionaries(st.sampled_from(FIELDS) | st.text(max_size=3), kids, max_size=4),
    max_leaves=10,
)
random_bodies = st.dictionaries(st.sampled_from(FIELDS) | st.text(max_size=4), json_values, max_size=8)
kv_payloads = st.one_of(
    st.fixed_dictionaries({"op": st.just("put"), "key": st.sampled_from("ab"), "value": json_values}),
    st.fixed_dictionaries({"op": st.just("append"), "key": st.sampled_from("ab"),
                           "value": st.text(max_size=2)}),
    st.fixed_dictionaries({"op": st.sampled_from(["get", "cas"]), "key": st.sampled_from("ab"),
                           "from": json_values, "to": json_values}),
    st.dictionaries(st.sampled_from(FIELDS), json_values, max_size=3),
)


client_ops = st.one_of(
    st.fixed_dictionaries({"op": st.just("put"), "key": st.sampled_from("ab"),
                           "value": st.integers(0, 3) | st.text(max_size=2)}),
    st.fixed_dictionaries({"op": st.just("append"), "key": st.sampled_from("ab"),
                           "value": st.text(max_size=2)}),
    st.fixed_dictionaries({"op": st.just("get"), "key": st.sampled_from("ab")}),
)


def valid_update(d: st.DataObject, n: Node) -> dict[str, Any]:
    """An UpdateConsensus close to what a leader of a nearby term would send now."""
    c = n.c
    last = c.log.last_index
    p_idx = d.draw(st.integers(0, last + 1))
    local = c.log.term_at(p_idx)
    p_term = d.draw(st.sampled_from([local or 0, max(0, c.term - 1), c.term, c.term + 1]))
    caller_term = d.draw(st.integers(max(0, c.term - 1), c.term + 2))
    op_list = []
    term = p_term
    for i in range(d.draw(st.integers(0, 4))):
        term = d.draw(st.integers(term, max(term, caller_term)))
        kind = d.draw(st.sampled_from(["WRITE", "WRITE", "NO_OP", "CONFIG"]))
        payload = d.draw(kv_payloads) if kind != "NO_OP" else None
        entry: dict[str, Any] = {"term": term, "index": p_idx + 1 + i, "kind": kind}
        if payload:
            entry["payload"] = payload
        op_list.append(entry)
    # One leader per term, as Raft guarantees (a second one makes the node abort, kuduraft's
    # "Unexpected new leader in same term!"): n2 leads even terms, n3 odd ones.
    caller = "n2" if caller_term % 2 == 0 else "n3"
    body = {"tablet_id": "raftchaos", "caller_uuid": caller, "dest_uuid": "n1",
            "caller_term": caller_term, "preceding_id": [p_term, p_idx], "ops": op_list,
            "committed_index": d.draw(st.integers(0, p_idx + len(op_list) + 2)), "all_replicated_index": 0}
    return mutate(d, body)


def valid_vote(d: st.DataObject, n: Node) -> dict[str, Any]:
    c = n.c
    last = c.log.last_opid
    cand_last = [d.draw(st.integers(max(0, last.term - 1), last.term + 1)),
                 d.draw(st.integers(max(0, last.index - 1), last.index + 2))]
    body = {"candidate_uuid": d.draw(st.sampled_from(["n2", "n3"])), "dest_uuid": "n1",
            "candidate_term": d.draw(st.integers(max(0, c.term - 1), c.term + 2)),
            "candidate_status": {"last_received": cand_last},
            "is_pre_election": d.draw(st.booleans()), "ignore_live_leader": d.draw(st.booleans())}
    return mutate(d, body)


def mutate(d: st.DataObject, body: dict[str, Any]) -> dict[str, Any]:
    """Usually leave the body valid; sometimes replace or delete one field (or one op field)."""
    choice = d.draw(st.sampled_from(["keep", "keep", "keep", "replace", "delete", "op"]))
    if choice == "keep":
        return body
    if choice == "op" and body.get("ops"):
        target = body["ops"][d.draw(st.integers(0, len(body["ops"]) - 1))]
    else:
        target = body
    key = d.draw(st.sampled_from(sorted(target)))
    if choice == "delete":
        del target[key]
    else:
        target[key] = d.draw(json_values)
    return body


def vote_responder(mode: str) -> Any:
    def answer(call: RpcCall) -> None:
        if call.rpc != "RequestVote" or mode == "fail":
            call.fail()
        elif mode == "grant":
            call.reply({"responder_uuid": call.uuid, "responder_term": call.body.get("candidate_term"),
                        "vote_granted": True})
        else:
            call.reply({"responder_uuid": call.uuid, "responder_term": 99, "vote_granted": False})
    return answer


class Invariants:
    def __init__(self, n: Node) -> None:
        self.n = n
        self.term = n.c.term
        self.commit = n.c.commit_index

    def check(self) -> None:
        c = self.n.c
        assert c.term >= self.term, f"term went back {self.term} -> {c.term}"
        assert c.commit_index >= self.commit, f"commit went back {self.commit} -> {c.commit_index}"
        assert c.applied_index == c.commit_index <= c.log.last_index
        assert_log_contiguous(c.log)
        assert c.log.last_opid.term <= c.term, "an entry of a term the node has not reached"
        assert self.n.meta.load() == (c.term, c.voted_for), "in-memory term/vote not durable"
        self.term, self.commit = c.term, c.commit_index


class NodeAborted(Exception):
    """The node aborted on an invariant the input itself broke (n1 leads a term another
    node also sends updates in); the sequence ends there."""


async def call_handler(n: Node, rpc: str, body: dict[str, Any]) -> None:
    try:
        resp = await asyncio.wait_for(n.service.handle(rpc, body), 10)
    except RemoteRpcError:
        return
    except InjectedExit as e:
        record = n.c.faults.fatal_record or {}
        assert e.code == EXIT_INVARIANT and record.get("what") == "two_leaders_in_term", record
        assert record["uuids"]["existing_leader"] == "n1" and body.get("caller_term") == n.c.term
        raise NodeAborted from None
    assert isinstance(resp, dict), resp
    encode_frame({"id": 1, "body": resp})  # the RPC server must be able to send it


ACTIONS = ("update", "update", "vote", "random", "tick", "answer", "answer", "run_election", "write")


async def run_steps(d: st.DataObject, n: Node, steps: int) -> None:
    inv = Invariants(n)
    followers = {u: ModelFollower(u) for u in ("n2", "n3")}
    futures: list[asyncio.Future[dict[str, Any]]] = []
    for _ in range(steps):
        action = d.draw(st.sampled_from(ACTIONS))
        if action == "update":
            await call_handler(n, "UpdateConsensus", valid_update(d, n))
        elif action == "vote":
            await call_handler(n, "RequestVote", valid_vote(d, n))
        elif action == "random":
            rpc = d.draw(st.sampled_from(RPCS + ("NoSuchRpc",)))
            await call_handler(n, rpc, d.draw(random_bodies))
        elif action == "run_election":
            await call_handler(n, "RunLeaderElection", {"dest_uuid": "n1"})
        elif action == "write":
            with contextlib.suppress(NotLeader):
                futures.append(n.c.replicate(d.draw(client_ops)))
        elif action == "tick":
            n.clock.advance(d.draw(st.sampled_from([0.0, 0.3, 0.6, 1.6, 2.5, 25.0])))
        else:
            pending = n.transport.pending()
            if pending:
                s = pending[d.draw(st.integers(0, len(pending) - 1))]
                s.reply(followers[s.hop].answer(s.body))
        await n.drain()
        n.clock.run_due()
        await n.settle()
        inv.check()
    for fut in futures:  # a client op resolves only once committed, else fails indeterminate
        if fut.done() and fut.exception() is not None:
            assert isinstance(fut.exception(), LeadershipLost), fut.exception()
        elif fut.done():
            assert fut.result()["index"] <= n.c.commit_index


@contextlib.contextmanager
def quiet() -> Any:
    """Random traffic makes the node log a lot of (expected) complaints; keep only critical ones."""
    level = LOGGER.level
    LOGGER.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        LOGGER.setLevel(level)


def fuzz_node(d: st.DataObject, steps: int) -> None:
    seed = d.draw(st.integers(0, 2**32 - 1), label="node seed")
    mode = d.draw(st.sampled_from(["fail", "grant", "deny_higher"]), label="voters")
    flags = dict(FUZZ_FLAGS, **d.draw(FLAG_SETS, label="flags"))

    async def main(data_dir: Path) -> None:
        async with open_node(data_dir, flags=flags, seed=seed) as n:
            n.rpc.auto = vote_responder(mode)
            try:
                await run_steps(d, n, steps)
            except NodeAborted:
                event("aborted: two leaders in a term (n1 and a forged caller)")
            await n.drain()
            memory = entries_of(n.c.log)
            event(f"ended {n.c.role.value}, commit {'> 0' if n.c.commit_index else '0'}")
        with Wal(data_dir / "wal", fsync=False) as wal:
            assert wal.recover() == memory, "WAL on disk differs from the log in memory"

    with quiet(), tempfile.TemporaryDirectory() as tmp:
        asyncio.run(main(Path(tmp)))


@SETTINGS
@given(st.data())
def test_random_bodies_to_every_rpc_never_crash(data: st.DataObject) -> None:
    """Pure garbage: every RPC name with random JSON bodies."""
    seed = data.draw(st.integers(0, 2**32 - 1), label="node seed")

    async def main(data_dir: Path) -> None:
        async with open_node(data_dir, flags=FUZZ_FLAGS, seed=seed) as n:
            n.rpc.auto = vote_responder("fail")
            inv = Invariants(n)
            for _ in range(data.draw(st.integers(1, 6))):
                await call_handler(n, data.draw(st.sampled_from(RPCS)), data.draw(random_bodies))
                await n.settle()
                inv.check()

    with quiet(), tempfile.TemporaryDirectory() as tmp:
        asyncio.run(main(Path(tmp)))


@SETTINGS
@given(st.data())
def test_mutated_valid_bodies_and_ticks_keep_invariants(data: st.DataObject) -> None:
    """Sequences of near-valid updates and votes, elections, ticks and follower answers."""
    fuzz_node(data, data.draw(st.integers(3, 14), label="steps"))
