"""Commit safety: what a leader may count, and what a follower may apply.

- New-leader commit rule (B14, Raft's "Figure 8"): a leader commits entries of earlier terms only
  by committing an entry of its own term. kuduraft: ``PeerMessageQueue::AdvanceQueueWatermark``
  moves ``committed_index`` only when the majority-replicated index reaches
  ``first_index_in_current_term_``. The choreography builds the exact hazard: an old-term entry e
  on a majority but uncommitted (the followers' replies to the old leader are delayed, and it is
  killed before they arrive), a new
  leader whose own-term NO_OP is on a minority for a wide window (its WAL fsync is slowed with
  ``log_inject_latency`` while the follower acknowledges at once). During that window the new
  leader's commit index must not move at all.
- Apply only committed (the same choreography's first half): followers hold e appended but not
  committed; their ``applied_index`` never passes their ``commit_index``.
- Log matching with a divergent suffix: a deposed leader's longer old-term suffix is truncated to
  the new leader's log (index *and* term compared), durably.
- Majority watermark with non-OK peers (B15, kuduraft ``PeerMessageQueue::AdvanceQueueWatermark``
  counts only peers whose last exchange succeeded): with one follower down and the other
  answering CANNOT_PREPARE, writes are on the leader alone; its commit index must not reach them.
"""

from __future__ import annotations

from contextlib import ExitStack
from typing import Any

import pytest

from faults.network import link_latency, partition
from faults.process import kill
from harness.cluster import Cluster
from harness.history import OpFn
from harness.nodeclient import Outcome
from suites._helpers import Markers, heartbeats, peer_counter, peer_view, recorded_op
from suites._safety import (
    CommitWatch,
    short_write,
    status_or_none,
    try_wait,
    unknown,
    valid,
    wait_status,
    watch_until,
)

pytestmark = [pytest.mark.chaos, pytest.mark.safety,
              pytest.mark.kuduraft_only(reason="B14 and the apply rule, staged with kuduraft's runtime flags and read from its trace")]

FSYNC_LATENCY_MS = 1500  # the new leader's NO_OP stays non-durable this long: the hazard window
# The followers' replies to e reach the old leader only after it is killed. Every request sent
# after the delay is in place waits this long for its reply, so e goes out to each follower when a
# heartbeat's delayed reply lands (one request in flight per peer): about one delay after the
# cuts, then the harness has one more delay to see both appends and kill the old leader.
REPLY_DELAY_MS = 5000
DIVERGENT_OPS = 4  # the deposed leader's suffix; the new leader writes a NO_OP + 2 ops over it
RPC_TIMEOUT_MS = 10000  # longer than the reply delay: the old leader keeps waiting, never retries


def _applied_within_commit(cluster: Cluster) -> dict[str, tuple[int, int]]:
    """Nodes whose state machine ran ahead of their commit index: {node: (applied, commit)}."""
    bad = {}
    for node in cluster.nodes:
        st = status_or_none(cluster, node)
        if st is not None and st["applied_index"] > st["commit_index"]:
            bad[node] = (st["applied_index"], st["commit_index"])
    return bad


def test_new_leader_commits_old_term_entry_only_through_its_own(make_cluster: Any,
                                                                  record_verdict: Any) -> None:
    """B14 and apply-only-committed: an old-term entry on a majority is not committed by a new
    leader until that leader's own NO_OP is on a majority (durably); followers never apply it
    before it commits."""
    cluster = make_cluster(nodes=3, flags={"consensus_rpc_timeout_ms": RPC_TIMEOUT_MS})
    timing = cluster.timing
    old = cluster.wait_for_leader()
    rng = cluster.rng("suite/figure8")
    nxt, other = rng.sample(sorted(n for n in cluster.nodes if n != old), 2)
    print(f"old leader {old}; next leader {nxt} (slow fsync); other follower {other}")
    markers = Markers(cluster, "fig8")
    markers.write(3)
    cluster.wait_caught_up(timeout_s=timing.new_leader_within_s())
    old_status = cluster.status(old)
    term = old_status["term"]

    with ExitStack() as stack:
        for f in (nxt, other):  # no elections while the old leader's replies are cut (re-armed below)
            cluster.set_flag(f, "enable_leader_failure_detection", False)
            stack.callback(cluster.set_flag, f, "enable_leader_failure_detection", True)
        with ExitStack() as cuts:
            for f in (nxt, other):
                cuts.enter_context(link_latency(cluster, old, f, latency_ms=REPLY_DELAY_MS,
                                                direction="replies"))
            # Wait until each follower holds a request whose reply is delayed: one sent after both
            # delays were in place, or one still pending after 5 heartbeats (an undelayed reply is
            # handled in milliseconds). Then e leaves for both followers together, when those
            # replies land. Written at once instead, e went out at once to a follower with no
            # request in flight and one delay later to the other, whose append the harness saw
            # just as the first follower's reply committed e (stability runs, seeds 2145896605,
            # 1360019562: unknown).
            sent = {f: peer_counter(cluster, old, f, "requests_sent") for f in (nxt, other)}
            since = cluster.history.now()

            def holding() -> bool:
                long_pending = cluster.history.now() - since >= heartbeats(cluster, 5)
                views = {f: peer_view(cluster, old, f) for f in (nxt, other)}
                return all(v and v["request_pending"]
                           and (v["counters"]["requests_sent"] > sent[f] or long_pending)
                           for f, v in views.items())

            cluster.wait_until(holding, what=f"{old} to hold a delayed request to each follower",
                               timeout_s=heartbeats(cluster, 20))
            short_write(cluster, old, "fig8-e", "e", timeout_s=heartbeats(cluster, 3))
            e_index = cluster.status(old)["last_index"]
            for f in (nxt, other):
                wait_status(cluster, f, lambda st: st["last_index"] >= e_index,
                            f"{f} to append the old-term entry {e_index}",
                            2 * REPLY_DELAY_MS / 1000 + heartbeats(cluster, 10))
            old_status = cluster.status(old)
            if old_status["commit_index"] >= e_index or old_status["term"] != term:
                unknown(record_verdict, "new-leader-commit-rule", "the old leader committed e or "
                        "lost its term before the hazard was built", status=old_status)
                return
            ahead = _applied_within_commit(cluster)
            assert not ahead, (f"followers applied entries they had not committed "
                               f"(node: (applied, commit)): {ahead}")
            cluster.set_flag(nxt, "enable_leader_failure_detection", True)  # only nxt runs for leader
            for name, value in (("log_inject_latency_ms_mean", FSYNC_LATENCY_MS),
                                ("log_inject_latency_ms_stddev", 0), ("log_inject_latency", True)):
                cluster.set_flag(nxt, name, value)
            stack.callback(cluster.set_flag, nxt, "log_inject_latency", False)
            old_durable = int(cluster.status(old)["durable_index"])
            killed = kill(cluster, old)
            stack.callback(killed.heal, cluster)
        st = wait_status(cluster, nxt, lambda s: s["role"] == "LEADER" and s["term"] > term,
                         f"{nxt} to lead after {old} was killed", timing.new_leader_within_s())
        first_own = e_index + 1
        if st["last_index"] < first_own or st["commit_index"] >= e_index:
            unknown(record_verdict, "new-leader-commit-rule", "the new leader did not start from "
                    "[.., e] uncommitted", status=st, e_index=e_index)
            return
        watch = CommitWatch(cluster, nxt, baseline=int(st["commit_index"]),
                            first_own_index=first_own, down={old: old_durable})
        window: dict[str, int] = {}

        def done(s: Any) -> bool:
            d = watch.last_durable
            if d.get(nxt, 0) < first_own <= d.get(other, 0):
                window["looks"] = window.get("looks", 0) + 1  # NO_OP on the follower only
            return bool(s["commit_index"] >= first_own and s["durable_index"] >= first_own)

        finished = watch_until(watch, done, f"{nxt} to commit its own NO_OP {first_own}",
                               FSYNC_LATENCY_MS / 1000 * 3 + timing.new_leader_within_s())
        print(f"e={e_index} NO_OP={first_own}; {watch.samples} looks, {window.get('looks', 0)} "
              f"inside the hazard window; violations: {watch.violations[:1]}")
        watch.assert_none("B14: a new leader committed without its own entry on a majority")
        ahead = _applied_within_commit(cluster)
        assert not ahead, f"applied beyond commit (node: (applied, commit)): {ahead}"
        if not window or not finished:
            unknown(record_verdict, "new-leader-commit-rule", "never saw the NO_OP on the follower "
                    "only while the leader's fsync was pending (or the commit did not come)",
                    looks=watch.samples, finished=finished)
            return
        valid(record_verdict, "new-leader-commit-rule", f"commit stayed at {watch.baseline} through "
              f"{window['looks']} looks inside the window, then moved to {first_own}+")
    cluster.wait_healthy()
    markers.assert_all_durable()


def test_no_commit_of_what_only_the_leader_holds(make_cluster: Any, record_verdict: Any) -> None:
    """B15: with one follower down and the other answering CANNOT_PREPARE (its last exchange is
    not OK), a write is on the leader alone and its commit index never reaches it."""
    cluster = make_cluster(nodes=3)
    timing = cluster.timing
    leader = cluster.wait_for_leader()
    rng = cluster.rng("suite/watermark")
    refusing, down = rng.sample(sorted(n for n in cluster.nodes if n != leader), 2)
    markers = Markers(cluster, "watermark")
    markers.write(3)
    cluster.wait_caught_up(timeout_s=timing.new_leader_within_s())
    with ExitStack() as stack:
        down_durable = int(cluster.status(down)["durable_index"])
        killed = kill(cluster, down)
        stack.callback(killed.heal, cluster)
        cluster.set_flag(refusing, "follower_fail_all_prepare", True)
        stack.callback(cluster.set_flag, refusing, "follower_fail_all_prepare", False)
        base = int(cluster.status(leader)["commit_index"])
        # First make the follower's last exchange non-OK (it refuses w0), then write w1: the
        # leader recomputes its watermark when w1 is durable locally, with no OK follower.
        short_write(cluster, leader, "watermark-w0", "w0", timeout_s=heartbeats(cluster, 2))
        wait_status(cluster, leader, lambda st: (st.get("peers") or {}).get(refusing, {}).get("status")
                    == "CANNOT_PREPARE", f"{leader} to see {refusing} answer CANNOT_PREPARE",
                    heartbeats(cluster, 10))
        result = short_write(cluster, leader, "watermark-w1", "w1", timeout_s=heartbeats(cluster, 2))
        watch = CommitWatch(cluster, leader, baseline=base, down={down: down_durable})
        seen: dict[str, int] = {}
        end = cluster.history.now() + heartbeats(cluster, 10)

        def done(st: Any) -> bool:
            peer = (st.get("peers") or {}).get(refusing, {})
            if peer.get("status") == "CANNOT_PREPARE" and st["last_index"] > base:
                seen["looks"] = seen.get("looks", 0) + 1
            return cluster.history.now() >= end

        watch_until(watch, done, "a 10-heartbeat window", heartbeats(cluster, 10) + 5.0)
        print(f"write: {result.outcome.value}; base commit {base}; {watch.samples} looks, "
              f"{seen.get('looks', 0)} with {refusing} CANNOT_PREPARE; {watch.violations[:1]}")
        watch.assert_none("B15: the leader committed an entry only it holds")
        assert result.outcome.value != "ok", "a write held by the leader alone was acknowledged"
        if not seen:
            unknown(record_verdict, "majority-watermark", f"never saw {refusing} answer "
                    "CANNOT_PREPARE while the write was pending", looks=watch.samples)
            return
        valid(record_verdict, "majority-watermark", f"commit stayed at {base} for 10 heartbeats")
    cluster.wait_healthy()
    cluster.wait_caught_up(timeout_s=timing.new_leader_within_s())
    markers.assert_all_durable()


def test_divergent_suffix_is_truncated_durably(make_cluster: Any, record_verdict: Any) -> None:
    """Log matching (Raft 5.3; kuduraft ``PeerMessageQueue`` LMP_MISMATCH handling and
    ``RaftConsensus::CheckLogMatchingPropertyUnlocked`` comparing index *and* term): a deposed
    leader holding a longer, older-term suffix ends with exactly the new leader's log (same last
    index and term), and keeps it across a SIGKILL (the truncation was made durable)."""
    cluster = make_cluster(nodes=3)
    timing = cluster.timing
    old = cluster.wait_for_leader()
    markers = Markers(cluster, "lmp")
    markers.write(3)
    cluster.wait_caught_up(timeout_s=timing.new_leader_within_s())
    term = cluster.status(old)["term"]
    others = [n for n in cluster.nodes if n != old]
    with partition(cluster, isolate=old, mode="refused"):  # it keeps leading its term, alone
        for k in range(DIVERGENT_OPS):
            short_write(cluster, old, f"lmp-x{k}", "x", timeout_s=heartbeats(cluster, 1))
        new_st = wait_status(cluster, others[0], lambda s: s["leader"] is not None and s["term"] > term,
                             "a new leader among the others", timing.new_leader_within_s())
        new = new_st["leader"]
        for k in range(DIVERGENT_OPS - 2):
            result = recorded_op(cluster, new, OpFn.WRITE, f"lmp-y{k}", "y")
            if result.outcome is Outcome.OK:
                markers.acked[f"lmp-y{k}"] = "y"
        old_st, new_st = cluster.status(old), cluster.status(new)
        print(f"old {old}: last {old_st['last_term']}.{old_st['last_index']} commit "
              f"{old_st['commit_index']}; new {new}: last {new_st['last_term']}.{new_st['last_index']}")
        if old_st["last_index"] < new_st["last_index"] or old_st["role"] != "LEADER":
            unknown(record_verdict, "log-matching", "the deposed leader's suffix is not the longer one",
                    old=old_st["last_index"], new=new_st["last_index"])
            return

    def converged() -> bool:
        o, n = status_or_none(cluster, old), status_or_none(cluster, new)
        return bool(o and n and n["role"] == "LEADER" and o["role"] == "FOLLOWER"
                    and (o["last_index"], o["last_term"]) == (n["last_index"], n["last_term"])
                    and o["commit_index"] == n["commit_index"])

    ok = try_wait(cluster, converged, f"{old} to hold exactly {new}'s log", timing.new_leader_within_s())
    o, n = cluster.status(old), cluster.status(new)
    assert ok, (f"{old} kept a divergent suffix: last {o['last_term']}.{o['last_index']} commit "
                f"{o['commit_index']} vs leader {new} {n['last_term']}.{n['last_index']} commit "
                f"{n['commit_index']}")
    with partition(cluster, isolate=old, mode="refused"):
        killed = kill(cluster, old)
        killed.heal(cluster)
        again = wait_status(cluster, old, lambda s: True, f"{old} to answer after SIGKILL",
                            timing.new_leader_within_s())
    assert (again["last_index"], again["last_term"]) == (o["last_index"], o["last_term"]), (
        f"{old}'s log after SIGKILL is {again['last_term']}.{again['last_index']}, was "
        f"{o['last_term']}.{o['last_index']}: the truncation was not durable")
    valid(record_verdict, "log-matching", f"{old} truncated its suffix to {new}'s log, durably")
    cluster.wait_healthy()
    cluster.wait_caught_up(timeout_s=timing.new_leader_within_s())
    markers.assert_all_durable()
