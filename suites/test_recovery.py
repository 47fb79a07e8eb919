"""Recovery: the cluster gets a leader back and loses nothing acknowledged after process faults.

Bounds come from the timing profile (``cluster.timing``): a new leader within
``new_leader_within_s()`` (failure-detector expiry plus back-off rounds, all from the flags), a
stale leader hears the new term within a heartbeat and an RPC timeout of its next send. Every
test writes its own unique-key markers before (and during) the fault and reads them back after
recovery; the plugin's durability checker also checks the workload's writes at teardown.

Any system (``pytest --system NAME``): killing the leader, a follower, or the whole cluster runs
against etcd too, judged by the same checkers. What reads kuduraft's own evidence (its ``/events``
trace, its per-peer status) runs where the system has that capability and is reported as not
checked otherwise; the pause and cut-off tests need per-directed-link proxies (etcd on the local
backend has ingress proxies only) and kuduraft's own behaviour (B28, B34), and skip with the reason.
"""

from __future__ import annotations

from contextlib import ExitStack
from typing import Any

import pytest

from faults.network import partition
from faults.process import pause, resume, stopped
from harness.checkers.recovery import MIN_OK_BEFORE
from harness.cluster import Cluster
from harness.history import OpFn
from harness.nodeclient import Outcome
from harness.systems.base import Capability
from suites._helpers import (
    TRACE_RESOLUTION_S,
    Markers,
    heartbeats,
    recorded_op,
    samples_of,
    traces,
    wait_ok_ops,
    wait_trace,
)

pytestmark = [pytest.mark.chaos, pytest.mark.recovery]

LOAD_CLIENTS = 4
LOAD_RATE_HZ = 40.0
OK_OPS_TO_RESUME = 5  # acknowledged ops after recovery that show writes resumed
ELECTION_STARTS = ("pre_election_started", "election_started")


def _warmed_up(cluster: Cluster) -> None:
    """Enough acknowledged operations before the first fault for the checkers to judge the run."""
    wait_ok_ops(cluster, MIN_OK_BEFORE, since_t=0.0, what="acknowledged writes before the fault")


@pytest.mark.kuduraft_timing
def test_kill_leader(make_cluster: Any, workload: Any) -> None:
    """A killed leader is replaced within the failure-detector bound; writes resume; nothing
    acknowledged is lost (also after the old leader comes back)."""
    cluster = make_cluster(nodes=3)
    timing = cluster.timing
    markers = Markers(cluster, "kill-leader")
    with workload(cluster, clients=LOAD_CLIENTS, rate_hz=LOAD_RATE_HZ):
        old = cluster.wait_for_leader()
        term = cluster.status(old)["term"]
        markers.write(3)
        _warmed_up(cluster)
        with stopped(cluster, old):
            killed_at = cluster.history.now()
            new = cluster.wait_for_new_leader(old, term)
            elected_s = cluster.history.now() - killed_at
            print(f"{old} killed; {new} leads after {elected_s:.3f}s "
                  f"(bound {timing.new_leader_within_s():.3f}s)")
            assert new != old
            if cluster.has(Capability.NODE_TRACE):
                _election_waited_for_the_failure_detector(cluster, new, term)
            else:
                print(f"{cluster.system.name} has no node trace: when the election started is not checked")
            wait_ok_ops(cluster, OK_OPS_TO_RESUME, cluster.history.now(), "writes to resume")
            markers.write(2)
        cluster.wait_healthy()
        wait_ok_ops(cluster, OK_OPS_TO_RESUME, cluster.history.now(), "writes with the old leader back")
    cluster.wait_caught_up(timeout_s=timing.new_leader_within_s())
    markers.assert_all_durable()


def _election_waited_for_the_failure_detector(cluster: Cluster, new: str, term: int) -> None:
    """Not before the followers' failure detectors could have fired: judged on the new leader's
    clock, the (pre-)election that made it leader started at least MET after the last update it
    accepted (harness timing would add its own scheduling delay)."""
    timing = cluster.timing
    start = wait_trace(cluster, new, lambda evs: _winning_start(evs, term),
                       "the (pre-)election that made it leader", heartbeats(cluster, 4))
    print(f"{new} started its winning {start['event']} {start['leader_contact_age_s']}s after "
          f"its last accepted update (node clock; MET {timing.failure_timeout_s}s)")
    assert start["leader_contact_age_s"] is not None, f"{new} never heard from the old leader: {start}"
    assert start["leader_contact_age_s"] >= timing.failure_timeout_s - TRACE_RESOLUTION_S, (
        f"{new} started an election {start['leader_contact_age_s']}s after its last accepted "
        f"update: before its failure detector could expire (MET {timing.failure_timeout_s}s)")


@pytest.mark.kuduraft_only(reason="B4, B5: kuduraft's heartbeater and NO_OP round, read from its /events trace")
def test_new_leader_first_requests_wait_for_the_heartbeat(make_cluster: Any) -> None:
    """B4, B5: after a failover with no client writing, the new leader's first request to each
    peer carries no ops and is sent by that Peer's heartbeater, at least 0.75 P after it became
    leader (node clock): kuduraft's RaftConsensus::BecomeLeaderUnlocked appends the NO_OP round
    without signalling the peers, and each new Peer's heartbeater (Peer::Init, consensus_peers.cc)
    first fires after one jittered period; only a write or a commit advance would send sooner.
    With no client, the earliest first request must come from a heartbeater; a later one may be
    a commit signal (the NO_OP committed once the earliest peer answered), still >= 0.75 P."""
    cluster = make_cluster(nodes=3)
    timing = cluster.timing
    markers = Markers(cluster, "idle-failover")
    markers.write(MIN_OK_BEFORE)  # ok writes before the fault, so the checkers see an exercised run
    old = cluster.wait_for_leader()
    term = cluster.status(old)["term"]
    with stopped(cluster, old):
        new = cluster.wait_for_new_leader(old, term)

        def first_requests(events: list[dict[str, Any]]) -> dict[str, dict[str, Any]] | None:
            won = next((e for e in events if e["event"] == "became_leader" and e["term"] > term), None)
            if won is None:
                return None
            firsts = {e["peer"]: e for e in events if e["event"] == "request" and e["term"] == won["term"]
                      and e["first"] and e["seq"] > won["seq"]}
            return {"won": won, **firsts} if len(firsts) == len(cluster.nodes) - 1 else None

        found = wait_trace(cluster, new, first_requests, "its first request to each peer",
                           heartbeats(cluster, 4))
        won = found.pop("won")
        for dest, first in sorted(found.items()):
            after_s = first["node_t"] - won["node_t"]
            print(f"{new} leads term {won['term']}; first request to {dest}: trigger {first['trigger']}, "
                  f"{first['ops']} ops, {after_s * 1000:.1f} ms after becoming leader (node clock)")
            assert first["ops"] == 0 and first["request_kind"] != "ops", (
                f"the new leader's first request to {dest} carried ops (B5): {first}")
            assert first["trigger"] in ("heartbeat", "signal"), first
            assert after_s >= timing.jitter_window_s[0] - TRACE_RESOLUTION_S, (
                f"the first request to {dest} left {after_s:.3f}s after the election, before the "
                f"heartbeater's shortest period {timing.jitter_window_s[0]:.3f}s (B4)")
        earliest = min(found.values(), key=lambda e: e["seq"])
        assert earliest["trigger"] == "heartbeat", (
            f"with no write, the new leader's earliest first request must come from a heartbeater "
            f"(B4): {earliest}")
    markers.write(2)  # writes after the heal, with the old leader back as a follower
    cluster.wait_caught_up(timeout_s=timing.new_leader_within_s())
    markers.assert_all_durable()


def _winning_start(events: list[dict[str, Any]], old_term: int) -> dict[str, Any] | None:
    """The (pre-)election start that led to the node's leadership after ``old_term``: the last
    pre-election (or, without pre-elections, election) it started before winning. (Earlier starts
    can predate the kill: a node that joined the old term by voting, before any update, may run a
    hopeless pre-election with no leader contact at all.)"""
    won = next((e for e in events if e["event"] == "became_leader" and e["term"] > old_term), None)
    if won is None:
        return None
    starts = [e for e in events if e["event"] in ELECTION_STARTS and e["seq"] < won["seq"]
              and e["ask_term"] > old_term]
    pre = [e for e in starts if e["event"] == "pre_election_started"]
    chosen = pre or starts
    return chosen[-1] if chosen else None


def test_kill_follower_and_restart(make_cluster: Any, workload: Any) -> None:
    """The majority keeps committing without a follower; restarted, it catches up and does not
    disturb the leader (its pre-elections change no term)."""
    cluster = make_cluster(nodes=3)
    timing = cluster.timing
    markers = Markers(cluster, "kill-follower")
    with workload(cluster, clients=LOAD_CLIENTS, rate_hz=LOAD_RATE_HZ):
        leader = cluster.wait_for_leader()
        term = cluster.status(leader)["term"]
        follower = cluster.rng("suite/victim").choice(sorted(n for n in cluster.nodes if n != leader))
        _warmed_up(cluster)
        with stopped(cluster, follower):
            wait_ok_ops(cluster, OK_OPS_TO_RESUME, cluster.history.now(), "the majority to commit")
            markers.write(3)
            target = cluster.status(leader)["commit_index"]
        cluster.wait_healthy()
        wait_ok_ops(cluster, OK_OPS_TO_RESUME, cluster.history.now(), "writes with the follower back")
        cluster.wait_caught_up(nodes=[follower], target_index=target,
                               timeout_s=heartbeats(cluster, 4) + timing.rpc_timeout_s)
        st = cluster.status(leader)
        assert st["role"] == "LEADER" and st["term"] == term, (
            f"the restarted follower {follower} disturbed the leader: {leader} is now "
            f"{st['role']} in term {st['term']} (was LEADER in {term})")
        if cluster.has(Capability.PER_PEER_EVIDENCE):
            assert st["peers"][follower]["status"] == "OK", st["peers"][follower]
    cluster.wait_caught_up(timeout_s=timing.new_leader_within_s())
    markers.assert_all_durable()


@pytest.mark.requires(Capability.PER_DIRECTED_LINK_PROXIES, Capability.NODE_TRACE)
def test_paused_leader_steps_down_when_it_hears_the_new_term(make_cluster: Any, workload: Any) -> None:
    """A paused leader is replaced; resumed, it still believes it leads until a reply carries the
    higher term: then it steps down (B28). The others' links *to* it are cut before it pauses, so
    the only way it can learn the new term is the INVALID_TERM answers to its own requests; its own
    trace must show one in its old term before its step-down.

    (The cuts used to go in after ``pause`` returned. ``pause`` verifies itself by asking the
    paused node's ``/health`` until it times out, about a second, longer than an election takes:
    the new leader's first UpdateConsensus already sat in the paused node's socket buffer when
    the cut came, and on resume that request, not a rejected reply, made it step down.)"""
    cluster = make_cluster(nodes=3)
    timing = cluster.timing
    markers = Markers(cluster, "pause-leader")
    with workload(cluster, clients=LOAD_CLIENTS, rate_hz=LOAD_RATE_HZ):
        old = cluster.wait_for_leader()
        term = cluster.status(old)["term"]
        others = [n for n in cluster.nodes if n != old]
        markers.write(2)
        _warmed_up(cluster)
        with ExitStack() as cuts:
            # Nothing travels on these links while `old` leads (followers never call the leader).
            for other in others:
                cuts.enter_context(partition(cluster, link=(other, old), mode="refused"))
            paused = pause(cluster, old)  # skips (FaultUnavailable) on a backend that cannot pause
            try:
                new = cluster.wait_for_new_leader(old, term)
                new_term = cluster.status(new)["term"]
                resume(cluster, paused)
                cluster.wait_until(lambda: (st := cluster.status(old))["role"] == "FOLLOWER"
                                   and st["term"] >= new_term,
                                   what=f"{old} to step down to term {new_term}",
                                   timeout_s=heartbeats(cluster, 2) + timing.rpc_timeout_s)
                down = wait_trace(cluster, old,
                                  lambda evs: [e for e in evs if e["event"] == "stepped_down"
                                               and e["term"] >= new_term],
                                  f"its step-down to term {new_term}", heartbeats(cluster, 4))[0]
                events = traces(cluster, old)
                rejected = [e for e in events if e["event"] == "reply" and e["term"] == term
                            and e["outcome"] == "invalid_term" and not e.get("ignored")
                            and e["seq"] < down["seq"]]
                print(f"{old} stepped down ({down['reason']}) in term {down['term']} after "
                      f"INVALID_TERM replies: {[(e['peer'], e['responder_term']) for e in rejected]}")
                assert rejected, (
                    f"{old} stepped down without any of its requests being rejected for their term: "
                    f"{[e for e in events if e['seq'] <= down['seq']][-6:]}")
                assert rejected[0]["responder_term"] >= new_term, rejected[0]
                assert cluster.status(old)["step_downs"] >= 1
                assert cluster.leader() == new
            finally:
                resume(cluster, paused)
        markers.write(2)
    cluster.wait_caught_up(timeout_s=timing.new_leader_within_s())
    markers.assert_all_durable()


@pytest.mark.docker_subset
def test_whole_cluster_crash_and_restart(make_cluster: Any, workload: Any) -> None:
    """Every node is SIGKILLed at once and started again: a leader comes back and every
    acknowledged write is there (durable state is fsynced before it is acknowledged)."""
    cluster = make_cluster(nodes=3)
    timing = cluster.timing
    markers = Markers(cluster, "crash-all")
    with workload(cluster, clients=LOAD_CLIENTS, rate_hz=LOAD_RATE_HZ):
        cluster.wait_for_leader()
        markers.write(3)
        wait_ok_ops(cluster, OK_OPS_TO_RESUME, 0.0, "the workload to commit")
        commits = {n: cluster.status(n)["commit_index"] for n in cluster.nodes}
        with stopped(cluster, "all"):
            assert not any(cluster.is_running(n) for n in cluster.nodes)
        cluster.wait_healthy()
        leader = cluster.wait_for_leader(timing.first_leader_within_s)
        restarted_at = cluster.history.now()
        wait_ok_ops(cluster, OK_OPS_TO_RESUME, restarted_at, "writes after the restart")
        st = cluster.status(leader)
        assert st["commit_index"] >= max(commits.values()), (
            f"commit index went back after the restart: {commits} -> {leader}: {st['commit_index']}")
        markers.write(1)
    cluster.wait_caught_up(timeout_s=timing.new_leader_within_s())
    markers.assert_all_durable()


@pytest.mark.requires(Capability.PER_DIRECTED_LINK_PROXIES)
@pytest.mark.kuduraft_only(reason="B34: kuduraft has no check-quorum; etcd's leader steps down when cut off "
                                  "from the majority (v3.4 etcdserver/raft.go: CheckQuorum true)")
def test_leader_cut_off_from_majority_stays_leader(make_cluster: Any) -> None:
    """B34: no check-quorum. A leader cut off from the majority stays LEADER in its term (the
    majority elects another in a higher term); a write it accepts times out uncommitted and is
    never applied. Healed, it hears the higher term and steps down."""
    cluster = make_cluster(nodes=3)
    timing = cluster.timing
    markers = Markers(cluster, "cut-leader")
    old = cluster.wait_for_leader()
    term = cluster.status(old)["term"]
    markers.write(MIN_OK_BEFORE)
    key, value = "cut-leader-orphan", "written-to-a-cut-off-leader"
    with partition(cluster, isolate=old, mode="refused") as record:
        new = cluster.wait_for_new_leader(old, term)
        new_term = cluster.status(new)["term"]
        st = cluster.status(old)
        assert st["role"] == "LEADER" and st["term"] == term, (
            f"the cut-off leader {old} did not stay LEADER in term {term}: {st['role']}/t{st['term']}")
        commit = st["commit_index"]
        result = recorded_op(cluster, old, OpFn.WRITE, key, value)
        print(f"write to cut-off {old}: {result.outcome} {result.error} after {result.latency_s:.3f}s")
        assert result.outcome is Outcome.INFO and result.error == "timeout", (
            f"a write to the cut-off leader should time out indeterminate, got {result}")
        assert result.latency_s >= timing.kv_op_timeout_s * 0.9, result
        st = cluster.status(old)
        assert st["role"] == "LEADER" and st["term"] == term and st["commit_index"] == commit, (
            f"{old} changed while cut off: {st['role']}/t{st['term']}, commit {commit} -> {st['commit_index']}")
        # The heal starts when the block ends: links come back before its event is recorded, and
        # a sample taken meanwhile may already show the step-down. Only samples recorded by now
        # certainly saw the cut in place.
        cut_until = cluster.history.now()
    stayed = [s["status"] for s in samples_of(cluster, old, record.t, cut_until)
              if s["status"] is not None]
    assert stayed and all(s["role"] == "LEADER" and s["term"] == term for s in stayed), (
        f"{old} did not stay LEADER in term {term} for the whole cut (observer samples)")
    cluster.wait_until(lambda: (st := cluster.status(old))["role"] == "FOLLOWER" and st["term"] >= new_term,
                       what=f"{old} to step down after healing",
                       timeout_s=heartbeats(cluster, 2) + timing.rpc_timeout_s)
    cluster.wait_caught_up(timeout_s=timing.new_leader_within_s())
    assert markers.read(key) != value, "a write the cut-off leader never committed was applied"
    markers.write(1)  # writes resume after healing
    markers.assert_all_durable()
