"""Crashy leaders: kuduraft's crash fractions on every node, the crash supervisor restarting them.

With ``fault_crash_on_leader_request_fraction=f`` a leader exits with status 85 before a send
with probability f (B21); with ``fault_crash_after_leader_request_fraction=f`` after each reply
it processes (B22). Only a leader sends UpdateConsensus or processes its replies, so every such
exit is a leader crashing. The test waits for ``CRASHES`` injected crashes within a bound derived
from the flags (N crash cycles, each: the expected sends before a crash at the leader's minimum
send rate, three times over, plus electing the next leader), checks the fault really took effect
(exit code 85, the node's log naming the flag), that leaders kept being elected, and after the
flag is cleared that the cluster converges with every acknowledged write intact.

The flag is set at runtime, not in the spec, so a node the supervisor restarts comes back
without it (and the final heal cannot re-arm it); while the fault is on, the wait re-arms every
restarted node on each poll (each change is a recorded ``flag`` event).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from faults.flags import FlagFault, crash_after_leader_request, crash_on_leader_request, flag_fault
from harness.checkers.recovery import MIN_OK_BEFORE
from harness.cluster import Cluster
from harness.errors import NodeUnreachable
from harness.supervisor import INJECTED_CRASH_EXIT
from suites._helpers import Markers, heartbeats, node_exits, wait_ok_ops

pytestmark = [pytest.mark.chaos, pytest.mark.crash_on_leader_request,
              pytest.mark.kuduraft_only(reason="B21, B22: kuduraft's fault_crash_* runtime flags and its exit status 85")]

FRACTION = 0.05  # kuduraft's raft_consensus-itest crashy-nodes value
CRASHES = 5  # more than the node count: some node crashes again after a restart (re-armed)
LOAD_CLIENTS = 4
LOAD_RATE_HZ = 40.0
TAIL_QUANTILE = 3.0  # allow three times the expected sends-to-crash per cycle


def _crash_cycle_bound_s(cluster: Cluster) -> float:
    """Worst expected time for one crash cycle: electing a leader, then 3x the mean time until it
    crashes when it sends only heartbeats (one per 1.25P to each follower)."""
    timing = cluster.timing
    sends_per_s = (len(cluster.nodes) - 1) / timing.jitter_window_s[1]
    mean_crash_s = (1.0 / FRACTION) / sends_per_s
    return timing.new_leader_within_s() + TAIL_QUANTILE * mean_crash_s


def _rearm(cluster: Cluster, flag: str) -> None:
    """Put the fault flag back on nodes the supervisor restarted (they start with the spec's 0)."""
    for node, st in cluster.statuses().items():
        if st is not None and float(st.get("flags", {}).get(flag, FRACTION)) != FRACTION:
            cluster.set_flag(node, flag, FRACTION)


def _disarm(cluster: Cluster, flag: str) -> None:
    """Clear the flag on every node that answers (a node starting right now comes up without it)."""
    for node, st in cluster.statuses().items():
        if st is not None and float(st.get("flags", {}).get(flag, 0.0)) != 0.0:
            try:
                cluster.set_flag(node, flag, 0.0)
            except NodeUnreachable:
                pass  # it just crashed: the supervisor restarts it without the flag


def _crash_lines(cluster: Cluster, node: str, flag: str) -> int:
    text = cluster.log_path(node).read_text(errors="replace")
    return sum(1 for line in text.splitlines() if f"injected crash: {flag}" in line)


@pytest.mark.docker_subset
@pytest.mark.parametrize("make_fault", [crash_on_leader_request, crash_after_leader_request],
                         ids=["on_request", "after_request"])
def test_crashing_leaders_keep_being_replaced(make_cluster: Any, workload: Any,
                                              make_fault: Callable[[float], FlagFault]) -> None:
    """B21 / B22: leaders really crash (status 85, the flag named in their log) at least CRASHES
    times within the flag-derived bound, new leaders keep being elected (one term per crash at
    least), and with the flag cleared the cluster converges with every acknowledged write."""
    cluster = make_cluster(nodes=3, supervisor=True)
    timing = cluster.timing
    fault = make_fault(FRACTION)
    (flag,) = fault.flags
    markers = Markers(cluster, "crashy")
    with workload(cluster, clients=LOAD_CLIENTS, rate_hz=LOAD_RATE_HZ):
        wait_ok_ops(cluster, MIN_OK_BEFORE, since_t=0.0, what="acknowledged writes before the fault")
        markers.write(2)
        term_before = cluster.term() or 0
        started = cluster.history.now()
        bound_s = CRASHES * _crash_cycle_bound_s(cluster)
        with flag_fault(cluster, fault):
            def enough_crashes() -> bool:
                _rearm(cluster, flag)
                return len(node_exits(cluster, INJECTED_CRASH_EXIT, started)) >= CRASHES

            cluster.wait_until(enough_crashes, what=f"{CRASHES} leader crashes from {flag}={FRACTION}",
                               timeout_s=bound_s, poll_s=0.05)
            elapsed_s = cluster.history.now() - started
            # Clear the flag, then let the supervisor bring every node back (without it) before
            # the fault's own heal runs, so the heal never meets a node that is still starting.
            _disarm(cluster, flag)
            cluster.wait_until(lambda: all(cluster.is_running(n) for n in cluster.nodes),
                               what="the supervisor to restart every crashed node",
                               timeout_s=timing.new_leader_within_s())
            cluster.wait_healthy()
        leader = cluster.wait_for_leader()
        healed_at = cluster.history.now()
        wait_ok_ops(cluster, MIN_OK_BEFORE, since_t=healed_at,
                    what="acknowledged writes after the flag was cleared")
        markers.write(2)

    exits = node_exits(cluster, since_t=started)
    crashes = [e for e in exits if e.get("code") == INJECTED_CRASH_EXIT]
    print(f"{len(crashes)} injected crashes in {elapsed_s:.2f}s (bound {bound_s:.2f}s): "
          f"{[(e['node'], round(e['t'], 2)) for e in crashes]}; leader now {leader}")
    assert len(crashes) >= CRASHES
    assert [e for e in exits if e.get("code") != INJECTED_CRASH_EXIT] == [], (
        f"a node exited with a code other than {INJECTED_CRASH_EXIT} (a real crash): {exits}")
    for node in {e["node"] for e in crashes}:
        n_crashes = sum(1 for e in crashes if e["node"] == node)
        assert _crash_lines(cluster, node, flag) >= n_crashes, (
            f"{node} exited {n_crashes}x with status {INJECTED_CRASH_EXIT} but its log names {flag} "
            f"fewer times: the crash was not the injected one")
    term_after = cluster.status(leader)["term"]
    assert term_after - term_before >= CRASHES, (
        f"leaders were not re-elected after each crash: term {term_before} -> {term_after}")
    assert all(float(cluster.flags(n)[flag]) == 0.0 for n in cluster.nodes), "the flag was not cleared"
    cluster.wait_caught_up(timeout_s=timing.new_leader_within_s() + heartbeats(cluster, 4))
    markers.assert_all_durable()
