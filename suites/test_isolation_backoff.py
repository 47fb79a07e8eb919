"""B26: a follower black-holed from everyone keeps its term and backs its pre-elections off.

kuduraft (raft_consensus.cc, RaftConsensus::DoElectionCallback) counts every lost election round
in failed_elections_since_stable_leader_ and snoozes the failure detector by
LeaderElectionExpBackoffDeltaUnlocked = U[MET, min(MET x 1.5^(n+1), cap)] each time, so an
isolated node's attempts thin out instead of repeating every MET. Bounds come from the cluster's
own flags (``cluster.timing``). The windows are checked on the isolated node's own trace (node
clock and the back-off it drew), never on harness timing.
"""

from __future__ import annotations

from typing import Any

import pytest

from faults.network import partition
from harness.checkers.recovery import MIN_OK_BEFORE
from harness.cluster import Cluster
from suites._helpers import TRACE_RESOLUTION_S, snap, traces, wait_ok_ops

pytestmark = [pytest.mark.chaos,
              pytest.mark.kuduraft_only(reason="B26: kuduraft's pre-election back-off, from its own counters over per-link cuts")]

ISOLATION_S = 10.0


def _expected_attempts(cluster: Cluster, window_s: float) -> float:
    """The mean number of pre-elections in ``window_s`` under the back-off (mean gap of attempt n
    is the middle of its window), after the first failure-detector expiry."""
    timing = cluster.timing
    met = timing.failure_timeout_s
    elapsed, n = met, 0
    while True:
        gap = (met + min(met * 1.5 ** (n + 1), timing.backoff_cap_s)) / 2
        if elapsed + gap > window_s:
            return n + 1.0
        elapsed += gap
        n += 1


@pytest.mark.kuduraft_timing
def test_isolated_follower_backs_off_its_pre_elections(make_cluster: Any, workload: Any) -> None:
    cluster = make_cluster(nodes=3)
    leader = cluster.wait_for_leader()
    victim = cluster.rng("suite/victim").choice(sorted(n for n in cluster.nodes if n != leader))
    met = cluster.timing.failure_timeout_s
    print(f"leader={leader} victim={victim} MET={met}s cap={cluster.timing.backoff_cap_s}s")
    with workload(cluster, clients=2, rate_hz=20.0):
        wait_ok_ops(cluster, MIN_OK_BEFORE, since_t=0.0, what="acknowledged writes before the fault")
        with partition(cluster, isolate=victim, mode="blackhole"):
            before = snap(cluster, victim)
            end = before.t_after + ISOLATION_S
            # The fault's duration, not a synchronisation: the node's own counters are read after.
            cluster.wait_until(lambda: cluster.history.now() >= end,
                               f"{ISOLATION_S}s of isolation", ISOLATION_S + 5.0, poll_s=0.2)
            after = snap(cluster, victim)
        wait_ok_ops(cluster, 1, what="an acknowledged write after healing")
    s0, s1 = before.status, after.status
    attempts = s1["pre_elections_started"] - s0["pre_elections_started"]
    window_s = after.t_after - before.t_before
    ceiling = window_s / met + 1  # every gap is at least MET, whatever the draws
    print(f"{attempts} pre-elections in {window_s:.2f}s (ceiling {ceiling:.1f}, mean under the "
          f"back-off {_expected_attempts(cluster, window_s):.1f}); failed_elections "
          f"{s0['failed_elections']} -> {s1['failed_elections']}")
    assert attempts >= 1, f"{victim} started no pre-election while isolated"
    assert s1["term"] == s0["term"] and s1["elections_started"] == s0["elections_started"], (
        f"{victim} raised its term while isolated: {s0['term']} -> {s1['term']}")
    assert attempts <= ceiling, (
        f"{attempts} pre-elections in {window_s:.2f}s: more than one per MET ({met}s)")
    # Every decided round counts toward the back-off. At most two rounds are undecided when the
    # snapshot is taken: the one in flight, and the one it superseded. kuduraft's StartElection
    # (raft_consensus.cc) snoozes the failure detector by the same back-off delta it gives the
    # round's LeaderElection as its vote deadline, so the next round can start just before the
    # previous round's deadline is handled (stability run, seed 496853481: started at node time
    # 23718.553, predecessor decided as superseded 7 ms later, the snapshot in between).
    assert s1["failed_elections"] >= attempts - 2, (
        f"only {s1['failed_elections']} of {attempts} lost pre-elections counted toward the "
        f"back-off (B26)")

    _assert_backoff_windows(cluster, victim, s0["failed_elections"], before.t_before, after.t_after)


def _assert_backoff_windows(cluster: Cluster, victim: str, failed_before: int, t0: float, t1: float) -> None:
    """Each pre-election the isolated node started drew its back-off from
    U[MET, min(MET x 1.5^(n+1), cap)] with n = the rounds it had lost before it (every decided
    loss counts, superseded ones too: DoElectionCallback), and consecutive starts are at least MET
    apart on its clock (each start snoozes the failure detector by at least MET)."""
    timing = cluster.timing
    met, res = timing.failure_timeout_s, TRACE_RESOLUTION_S
    events = [e for e in traces(cluster, victim) if t0 <= e["t"] <= t1]
    starts = [e for e in events if e["event"] == "pre_election_started"]
    assert starts, f"{victim}'s trace holds no pre-election start while isolated"
    for prev, start in zip([None, *starts], starts, strict=False):
        lost = failed_before + sum(1 for e in events if e["event"] == "pre_election_decided"
                                   and not e["won"] and e["seq"] < start["seq"])
        hi = min(met * 1.5 ** (lost + 1), timing.backoff_cap_s)
        gap = None if prev is None else start["node_t"] - prev["node_t"]
        print(f"pre-election seq {start['seq']}: back-off {start['backoff_s']:.3f}s after {lost} "
              f"loss(es), window [{met:.3f}, {hi:.3f}]s; gap from the previous start "
              f"{'-' if gap is None else f'{gap:.3f}s'} (node clock)")
        assert met - res <= start["backoff_s"] <= hi + res, (
            f"{victim} drew a back-off of {start['backoff_s']}s after {lost} lost round(s): outside "
            f"kuduraft's U[MET, min(MET x 1.5^(n+1), cap)] = [{met}, {hi}] (B26)")
        assert gap is None or gap >= met - res, (
            f"{victim} started pre-elections {gap:.3f}s apart, less than MET ({met}s) (B26)")
