"""Durability before acknowledgement: an acknowledged write survives the crash of the nodes whose
acknowledgements committed it.

kuduraft counts a replica toward the majority only once the op is in its WAL and fsynced: a
follower answers UpdateConsensus after ``log_->AsyncAppendReplicates`` calls back
(``RaftConsensus::UpdateReplica`` waits on the log sync before ``FillConsensusResponseOKUnlocked``),
and the leader counts itself when its own append is durable
(``PeerMessageQueue::LocalPeerAppendFinished``). So with three nodes, a write acknowledged while
one node was down is durable on both others, and survives one of them crashing at once.

The choreography makes the slow-fsync window wide instead of needing a power-loss fault: node X
(the leader, or the follower the leader needs) gets ``log_inject_latency`` (the injected sleep runs
*before* the WAL write, so a SIGKILL during it loses the entries even from the page cache). The
third node is down. Write w; the moment it is acknowledged, SIGKILL X, then stop the other acker
Y, then start X and the third node: they form a majority and elect a leader, which must serve w.
A node that answered (or counted itself) before its fsync lost w in the kill.
"""

from __future__ import annotations

from typing import Any

import pytest

from faults.process import Kill, kill
from harness.cluster import Cluster
from harness.history import OpFn
from harness.nodeclient import Outcome
from suites._helpers import Markers, recorded_op
from suites._safety import unknown, valid

pytestmark = [pytest.mark.chaos, pytest.mark.safety]

RPC_TIMEOUT_MS = 3000  # longer than the injected fsync, so the leader waits for the reply
KV_OP_TIMEOUT_MS = 5000
FSYNC_LATENCY_MS = 1000  # the window: far longer than ack -> SIGKILL in the harness


def _start(cluster: Cluster, faults: list[Kill]) -> None:
    for fault in faults:
        fault.heal(cluster)


@pytest.mark.parametrize("slow", ["leader", "follower"])
def test_acked_write_survives_crash_of_its_ackers(make_cluster: Any, record_verdict: Any, slow: str) -> None:
    """With one node down, write w with X's fsync slowed; SIGKILL X right after the ack, stop the
    other acker, restart X and the third node: their leader serves w (nothing acknowledged lost)."""
    cluster = make_cluster(nodes=3, flags={"consensus_rpc_timeout_ms": RPC_TIMEOUT_MS,
                                           "kv_op_timeout_ms": KV_OP_TIMEOUT_MS})
    leader = cluster.wait_for_leader()
    rng = cluster.rng("suite/fsync")
    follower, third = rng.sample(sorted(n for n in cluster.nodes if n != leader), 2)
    x, y = (leader, follower) if slow == "leader" else (follower, leader)
    print(f"leader {leader}; slow fsync on {x} ({slow}); other acker {y}; down {third}")
    markers = Markers(cluster, f"fsync-{slow}")
    markers.write(3)  # enough acknowledged ops before the first fault for the recovery checker
    cluster.wait_caught_up(timeout_s=cluster.timing.new_leader_within_s())

    stopped: list[Kill] = [kill(cluster, third)]
    try:
        cluster.set_flag(x, "log_inject_latency_ms_mean", FSYNC_LATENCY_MS)
        cluster.set_flag(x, "log_inject_latency_ms_stddev", 0)
        cluster.set_flag(x, "log_inject_latency", True)
        key, value = f"fsync-{slow}-w", "w"
        result = recorded_op(cluster, leader, OpFn.WRITE, key, value)
        if result.outcome is not Outcome.OK:
            unknown(record_verdict, "acked-write-survives", f"the write was not acknowledged "
                    f"({result.outcome.value}: {result.error}); nothing to check", slow=slow)
            return
        stopped.append(kill(cluster, x))  # at once: inside the injected fsync sleep if X acked early
        stopped.append(kill(cluster, y))
        print(f"{key} acknowledged after {result.latency_s:.3f}s (fsync latency "
              f"{FSYNC_LATENCY_MS} ms on {x}); killed {x} and {y}")
        _start(cluster, [stopped[1], stopped[0]])  # x and the third node: a majority without y
        del stopped[:2]
        new = cluster.wait_for_leader(timeout_s=cluster.timing.new_leader_within_s())
        markers.acked[key] = value
        got = markers.read(key)
        assert got == value, (
            f"acknowledged write {key}={value!r} lost: {new} (leading {x} and {third}) reads {got!r}; "
            f"{x} acknowledged{' (counted itself)' if slow == 'leader' else ''} before its fsync")
        valid(record_verdict, "acked-write-survives", f"{key} survived SIGKILL of {x} and {y}")
    finally:
        _start(cluster, stopped)
    cluster.wait_healthy()
    cluster.wait_caught_up(timeout_s=cluster.timing.new_leader_within_s())
    markers.assert_all_durable()
