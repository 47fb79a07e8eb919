"""End to end: a second leader in one term makes the follower abort (exit 70) with its fatal record,
the harness classifies the exit from the node's log tail, and the run is judged invalid."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from harness.checkers.verdict import Validity, compose
from harness.cluster import Cluster
from harness.finish import standard_verdicts
from harness.spec import ClusterSpec
from nodes.rpc import RpcClientPool, RpcError

pytestmark = pytest.mark.integration


async def _forge_update(addr: str, dest: str, caller: str, term: int) -> str:
    """An UpdateConsensus from ``caller`` claiming to lead ``term`` (as a second leader would send);
    returns how the call ended. The destination aborts instead of answering."""
    pool = RpcClientPool({dest: addr})
    body = {"tablet_id": "raftchaos", "caller_uuid": caller, "dest_uuid": dest, "caller_term": term,
            "preceding_id": [0, 0], "ops": [], "committed_index": 0,
            "all_replicated_index": 0}
    try:
        resp = await pool.call(dest, "UpdateConsensus", body, 5.0)
        return f"answered {resp}"
    except RpcError as e:
        return f"no answer: {e}"
    finally:
        await pool.close()


def _exit_events(cluster: Cluster, node: str) -> list[dict[str, Any]]:
    return [e for e in cluster.history.events() if e.get("kind") == "node"
            and e.get("event") == "exit" and e.get("node") == node]


def test_two_leaders_in_one_term_make_the_run_invalid(tmp_path: Path, seed: int) -> None:
    spec = ClusterSpec(node_count=3, seed=seed, run_dir=tmp_path / "run", test_name="two_leaders")
    with Cluster(spec) as cluster:
        leader = cluster.wait_for_leader()
        follower, impostor = [n for n in cluster.nodes if n != leader]
        term = cluster.wait_until(
            lambda: (s := cluster.status(follower))["leader"] == leader and s["term"],
            f"{follower} following {leader}", 10.0)
        addr = json.loads(cluster.run.cluster_file.read_text())["nodes"][follower]["rpc"]
        outcome = asyncio.run(_forge_update(addr, follower, impostor, term))
        print(f"forged update from {impostor} in term {term} to {follower}: {outcome}")

        def exited() -> list[dict[str, Any]]:
            cluster.reap()
            return _exit_events(cluster, follower)
        exit_event = cluster.wait_until(exited, f"{follower} to exit", 10.0)[-1]
        events = cluster.history.events()

    assert exit_event["code"] == 70 and exit_event["cause"] == "invariant_violation"
    record = exit_event["fatal"]
    assert record["what"] == "two_leaders_in_term" and record["term"] == term
    assert record["uuids"]["existing_leader"] == leader and record["uuids"]["new_leader"] == impostor
    assert json.loads((cluster.run.node_data(follower) / "fatal.json").read_text()) == record
    verdicts = {v.checker: v for v in standard_verdicts(events, linearizable_budget_s=1.0)}
    assert verdicts["invariants"].validity is Validity.INVALID
    assert verdicts["invariants"].details["violations"][0]["record"] == record
    assert compose(verdicts.values()) is Validity.INVALID
