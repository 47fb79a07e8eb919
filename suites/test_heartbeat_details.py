"""Heartbeat-degradation details, asserted over the leader's per-peer request evidence.

- B3: kuduraft's ``Peer::SendNextRequest`` snoozes the heartbeater whenever the request carries
  ops *or* moves the follower's commit index (``req_has_ops = request_.ops_size() > 0 ||
  (commit_index_after > commit_index_before)``). Under writes most requests to a healthy peer
  are one or the other, so the only sends that may go out unsnoozed are the heartbeater's own
  (no ops, no commit move) and the first negotiation request: over a window,
  ``requests_sent - heartbeater_snoozes <= heartbeat_sends``. A node that snoozes only for ops
  lets every commit-only request through unsnoozed and breaks it.
- B9: only a CANNOT_PREPARE whose message carries "Previous Rotate Event with" (binlog rotation)
  leaves ``failed_attempts`` alone (``Peer::ProcessResponseError``); any other CANNOT_PREPARE is a
  failure, so the leader's next requests to that peer are status-only (``read_ops=false``).
"""

from __future__ import annotations

from typing import Any

import pytest

from suites._helpers import Markers, heartbeats, measure
from suites._safety import unknown, valid, wait_status

pytestmark = [pytest.mark.chaos, pytest.mark.heartbeat_degradation,
              pytest.mark.kuduraft_only(reason="B3 and friends: kuduraft's Peer::SendNextRequest, from its per-peer request evidence")]

WINDOW_HEARTBEATS = 20


def test_commit_only_requests_snooze_the_heartbeater(make_cluster: Any, workload: Any,
                                                     record_verdict: Any) -> None:
    """B3: every send that is not the heartbeater's own carried ops or a commit move and
    snoozed the heartbeater; commit-only requests were among them."""
    cluster = make_cluster(nodes=3)
    leader = cluster.wait_for_leader()
    Markers(cluster, "b3").write(1)
    with workload(cluster, clients=2, rate_hz=20.0):
        window = measure(cluster, leader, heartbeats(cluster, WINDOW_HEARTBEATS), "writes")
    window.assert_same_leadership()
    commit_only_seen = 0
    for peer in sorted(window.after.status["peers"]):
        d = window.deltas(peer)
        unsnoozed = d["requests_sent"] - d["heartbeater_snoozes"]
        # Sends that are neither ops nor heartbeats: commit-only (or empty) requests.
        commit_only_seen += d["requests_sent"] - d["requests_with_ops"] - d["heartbeat_sends"]
        print(f"{peer}: {d}")
        assert unsnoozed <= d["heartbeat_sends"], (
            f"{leader}->{peer}: {unsnoozed} sends did not snooze the heartbeater but only "
            f"{d['heartbeat_sends']} were the heartbeater's own (B3: commit-only requests snooze it)")
    if commit_only_seen <= 0:
        unknown(record_verdict, "b3-commit-only-snooze", "no commit-only requests in the window")
        return
    valid(record_verdict, "b3-commit-only-snooze", f"{commit_only_seen} commit-only sends, all snoozed")


@pytest.mark.parametrize("flag, exempt", [("follower_fail_prepare_with_rotate_event", True),
                                          ("follower_fail_all_prepare", False)],
                         ids=["rotate_event", "other_cannot_prepare"])
def test_only_rotate_event_cannot_prepare_is_not_a_failure(make_cluster: Any, workload: Any,
                                                           record_verdict: Any, flag: str,
                                                           exempt: bool) -> None:
    """B9: a follower answering CANNOT_PREPARE with the rotate-event text keeps getting full
    requests (failed_attempts stays 0); any other CANNOT_PREPARE degrades it to status-only."""
    cluster = make_cluster(nodes=3)
    leader = cluster.wait_for_leader()
    peer = cluster.rng("suite/b9").choice(sorted(n for n in cluster.nodes if n != leader))
    Markers(cluster, "b9").write(1)
    cluster.set_flag(peer, flag, True)
    try:
        with workload(cluster, clients=2, rate_hz=20.0):
            wait_status(cluster, leader, lambda st: (st.get("peers") or {}).get(peer, {}).get("status")
                        == "CANNOT_PREPARE", f"{leader} to see {peer} answer CANNOT_PREPARE",
                        heartbeats(cluster, 20))
            window = measure(cluster, leader, heartbeats(cluster, WINDOW_HEARTBEATS), flag)
    finally:
        cluster.set_flag(peer, flag, False)
    window.assert_same_leadership()
    d = window.deltas(peer)
    failed = (window.before.peer(peer)["failed_attempts"], window.after.peer(peer)["failed_attempts"])
    print(f"{flag}: {leader}->{peer} {d}; failed_attempts {failed}")
    if d["responses_error"] == 0:
        unknown(record_verdict, "b9-rotate-event", f"{peer} answered no error in the window", deltas=d)
        return
    if exempt:
        assert d["status_only_requests"] == 0 and failed == (0, 0), (
            f"rotate-event CANNOT_PREPARE counted as a failure: failed_attempts {failed}, "
            f"{d['status_only_requests']} status-only requests")
    else:
        assert d["status_only_requests"] > 0 and max(failed) > 0, (
            f"a CANNOT_PREPARE without the rotate-event text did not count as a failure: "
            f"failed_attempts {failed}, {d['status_only_requests']} status-only requests")
    valid(record_verdict, "b9-rotate-event", f"{flag}: failed_attempts {failed}, "
          f"{d['status_only_requests']} status-only requests, {d['responses_error']} errors")
