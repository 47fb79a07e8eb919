"""Terms, votes and elections: who may change a term, what must be on disk, who must step down.

- A healthy cluster runs no elections at all (B23/B25): a follower that keeps accepting updates
  snoozes its failure detector by the election timeout, so with the leader sending every
  <= 1.25 P no follower ever starts a pre-election, idle or under writes.
- A follower cut off from the leader's requests (but still reaching every voter) runs
  pre-elections; they never change any voter's term (B32), so the stable leader keeps its term.
- Term and vote are on disk before anything depends on them: a voter SIGKILLed right after the
  election comes back with the term and the vote it granted (kuduraft flushes consensus metadata
  before answering ``RequestVote``: ``RaftConsensus::RequestVoteRespondVoteGranted``); a follower
  that adopted a higher term from an Update comes back with it (``HandleTermAdvanceUnlocked``
  flushes). Restarted nodes are isolated, so what they show is what they read from disk.
- A stale leader learns the new term from the INVALID_TERM replies to its own requests and steps
  down after processing one (B28); the others' requests to it are cut, so no other path exists.
  The same from the other side (B27): a follower isolated with pre-elections off raises its term
  alone; healed, its INVALID_TERM reply deposes the leader.
  (Vote requests are no such path: a leader answers every non-forced vote with LEADER_IS_ALIVE,
  B29, and forced votes come only from leadership transfer, which this node does not implement.)
"""

from __future__ import annotations

from contextlib import ExitStack
from typing import Any

import pytest

from faults.network import partition
from faults.process import kill, pause, resume, stopped
from harness.cluster import Cluster
from suites._helpers import Markers, heartbeats, measure
from suites._safety import unknown, valid, wait_status

pytestmark = [pytest.mark.chaos, pytest.mark.safety,
              pytest.mark.kuduraft_only(reason="kuduraft's term, vote and pre-election rules, staged over per-link cuts and read from its status")]

QUIET_HEARTBEATS = 40  # each window: many failure-detector periods (MET = 3 P)


def _election_counters(cluster: Cluster) -> dict[str, tuple[int, int, int]]:
    out = {}
    for node in cluster.nodes:
        st = cluster.status(node)
        out[node] = (st["term"], st["pre_elections_started"], st["elections_started"])
    return out


def test_healthy_cluster_runs_no_elections(make_cluster: Any, workload: Any) -> None:
    """B23/B25: no node starts a (pre-)election and no term changes, idle or under writes."""
    cluster = make_cluster(nodes=3)
    leader = cluster.wait_for_leader()
    markers = Markers(cluster, "quiet")
    markers.write(3)
    before = _election_counters(cluster)
    measure(cluster, leader, heartbeats(cluster, QUIET_HEARTBEATS), "idle")
    idle = _election_counters(cluster)
    with workload(cluster, clients=2, rate_hz=20.0):
        measure(cluster, leader, heartbeats(cluster, QUIET_HEARTBEATS), "under writes")
    busy = _election_counters(cluster)
    print(f"(term, pre-elections, elections) before {before}; idle {idle}; busy {busy}")
    assert idle == before, f"the idle healthy cluster ran elections: {before} -> {idle}"
    assert busy == idle, f"the healthy cluster under writes ran elections: {idle} -> {busy}"
    assert cluster.status(leader)["role"] == "LEADER"


def test_pre_elections_do_not_disturb_a_stable_leader(make_cluster: Any, record_verdict: Any) -> None:
    """B32: a follower that stops hearing the leader runs pre-elections against voters it still
    reaches; no term changes anywhere and the leader keeps leading; healed, it follows again."""
    cluster = make_cluster(nodes=3)
    timing = cluster.timing
    leader = cluster.wait_for_leader()
    cut_off = cluster.rng("suite/pre-election").choice(sorted(n for n in cluster.nodes if n != leader))
    markers = Markers(cluster, "pre-election")
    markers.write(3)
    before = _election_counters(cluster)
    term = before[leader][0]
    with partition(cluster, link=(leader, cut_off), mode="blackhole", direction="requests"):
        # Only the leader's requests to the follower are dropped: its vote requests still reach
        # (and are answered by) both voters.
        got = wait_status(cluster, cut_off, lambda st: st["pre_elections_started"] >= before[cut_off][1] + 3,
                          f"{cut_off} to run 3 pre-elections", 3 * timing.new_leader_within_s())
        during = _election_counters(cluster)
    print(f"(term, pre-elections, elections): before {before}; cut {during}; {cut_off}: {got['term']}")
    changed = {n: (before[n][0], during[n][0]) for n in cluster.nodes if during[n][0] != term}
    assert not changed, f"pre-elections by {cut_off} changed terms (node: (before, after)): {changed}"
    st = cluster.status(leader)
    assert st["role"] == "LEADER" and st["term"] == term, f"{leader} was disturbed: {st['role']} t{st['term']}"
    wait_status(cluster, cut_off, lambda s: s["leader"] == leader and s["term"] == term,
                f"{cut_off} to follow {leader} again", timing.new_leader_within_s())
    valid(record_verdict, "pre-election-no-disturb",
          f"{during[cut_off][1] - before[cut_off][1]} pre-elections by {cut_off}, term {term} kept")
    markers.assert_all_durable()


def test_failed_pre_elections_never_change_a_voters_term(make_cluster: Any, record_verdict: Any) -> None:
    """B32 where no leader is alive to make voters withhold: a lagging node's pre-elections reach
    a voter that evaluates them (and denies: the candidate's log is older); the voter's term and
    the candidate's own term never change."""
    cluster = make_cluster(nodes=3)
    timing = cluster.timing
    old = cluster.wait_for_leader()
    lagging, voter = cluster.rng("suite/pre-vote").sample(sorted(n for n in cluster.nodes if n != old), 2)
    markers = Markers(cluster, "pre-vote")
    markers.write(3)
    with ExitStack() as stack:
        cluster.set_flag(voter, "enable_leader_failure_detection", False)  # it never runs itself
        stack.callback(cluster.set_flag, voter, "enable_leader_failure_detection", True)
        with partition(cluster, link=(old, lagging), mode="blackhole", direction="requests"):
            markers.write(2)  # committed by old + voter: lagging's log is now older than voter's
            wait_status(cluster, voter, lambda st: st["last_index"] > cluster.status(lagging)["last_index"],
                        f"{voter} to be ahead of {lagging}", timing.new_leader_within_s())
            before = _election_counters(cluster)
            stack.enter_context(stopped(cluster, old))
        got = wait_status(cluster, lagging, lambda st: st["pre_elections_started"] >= before[lagging][1] + 3,
                          f"{lagging} to run 3 pre-elections against {voter}", 3 * timing.new_leader_within_s())
        after = {n: cluster.status(n)["term"] for n in (lagging, voter)}
        print(f"{lagging} pre-elections {before[lagging][1]} -> {got['pre_elections_started']}; "
              f"terms before {({n: before[n][0] for n in after})} after {after}")
        term = before[voter][0]
        assert after[voter] == term, (
            f"{voter}'s term changed {term} -> {after[voter]} from pre-election votes (B32)")
        assert after[lagging] == before[lagging][0], (
            f"{lagging}'s own term changed {before[lagging][0]} -> {after[lagging]} by failed pre-elections")
    cluster.wait_healthy()
    cluster.wait_for_leader()
    valid(record_verdict, "pre-vote-term", f"{voter} kept term {term} through pre-elections by {lagging}")
    cluster.wait_caught_up(timeout_s=timing.new_leader_within_s())
    markers.assert_all_durable()


def _restart_isolated(cluster: Cluster, node: str) -> dict[str, Any]:
    """SIGKILL ``node`` and start it cut off from everyone: the status it shows comes from disk."""
    with partition(cluster, isolate=node, mode="refused"):
        fault = kill(cluster, node)
        fault.heal(cluster)
        return wait_status(cluster, node, lambda st: True, f"{node} to answer after its restart",
                           cluster.timing.new_leader_within_s())


def test_term_and_vote_survive_sigkill(make_cluster: Any, record_verdict: Any) -> None:
    """The voter that elected the new leader, SIGKILLed and restarted alone, shows the term and
    the vote it granted; the old leader, after adopting the new term from an Update, shows it."""
    cluster = make_cluster(nodes=3)
    timing = cluster.timing
    old = cluster.wait_for_leader()
    markers = Markers(cluster, "votes")
    markers.write(3)
    term0 = cluster.status(old)["term"]
    with stopped(cluster, old):
        new = cluster.wait_for_new_leader(old, term0)
        voter = next(n for n in cluster.nodes if n not in (old, new))
        term = cluster.status(new)["term"]
        st = cluster.status(voter)
        if st["term"] != term or st["voted_for"] != new:
            unknown(record_verdict, "vote-persisted", f"{voter} did not vote for {new} in {term}",
                    status={k: st[k] for k in ("term", "voted_for", "leader")})
            return
        after = _restart_isolated(cluster, voter)
        print(f"{voter} voted for {new} in term {term}; after SIGKILL: t{after['term']} "
              f"voted_for={after['voted_for']}")
        assert after["term"] >= term, f"{voter} forgot term {term} across SIGKILL: {after['term']}"
        assert after["term"] > term or after["voted_for"] == new, (
            f"{voter} forgot its vote for {new} in term {term} across SIGKILL: {after['voted_for']}")
    # The old leader is back: it adopts the new term from an Update, then is SIGKILLed.
    st = wait_status(cluster, old, lambda s: s["term"] >= term and s["leader"] is not None,
                     f"{old} to adopt term {term} from an Update", timing.new_leader_within_s())
    adopted = st["term"]
    after = _restart_isolated(cluster, old)
    print(f"{old} adopted term {adopted} from an Update; after SIGKILL: t{after['term']}")
    assert after["term"] >= adopted, (
        f"{old} forgot term {adopted} (adopted from an Update) across SIGKILL: {after['term']}")
    valid(record_verdict, "vote-persisted", f"{voter}'s vote and {old}'s adopted term survived SIGKILL")
    cluster.wait_healthy()
    cluster.wait_caught_up(timeout_s=timing.new_leader_within_s())
    markers.assert_all_durable()


def test_stale_leader_steps_down_on_invalid_term_reply(make_cluster: Any, record_verdict: Any) -> None:
    """B28: a paused leader, resumed after a new election, learns the higher term only from the
    INVALID_TERM replies to its own requests, and steps down within one exchange: a heartbeat
    plus one RPC round trip (timeout)."""
    cluster = make_cluster(nodes=3)
    timing = cluster.timing
    old = cluster.wait_for_leader()
    others = [n for n in cluster.nodes if n != old]
    markers = Markers(cluster, "stale-leader")
    markers.write(3)
    term = cluster.status(old)["term"]
    with ExitStack() as cuts:
        for other in others:  # before the pause: nothing the others send may reach old later
            cuts.enter_context(partition(cluster, link=(other, old), mode="blackhole",
                                         direction="requests"))
        paused = pause(cluster, old)
        try:
            new = cluster.wait_for_new_leader(old, term)
            new_term = cluster.status(new)["term"]
            resume(cluster, paused)
            bound = heartbeats(cluster, 1) + timing.rpc_timeout_s + heartbeats(cluster, 1)
            st = wait_status(cluster, old, lambda s: s["role"] != "LEADER" or s["term"] > term,
                             f"{old} to hear term {new_term} from INVALID_TERM replies", bound)
            print(f"{old} resumed: {st['role']} t{st['term']} (new leader {new} t{new_term})")
            assert st["term"] >= new_term and st["role"] == "FOLLOWER", st
        finally:
            if cluster.is_paused(old):
                resume(cluster, paused)
    valid(record_verdict, "stale-leader-step-down", f"{old} stepped down to term >= {new_term}")
    cluster.wait_healthy()
    cluster.wait_caught_up(timeout_s=timing.new_leader_within_s())
    markers.assert_all_durable()



def test_rejoining_higher_term_makes_the_leader_step_down(make_cluster: Any, record_verdict: Any) -> None:
    """B27: with pre-elections off, a follower isolated alone raises its term on every attempt;
    healed, the leader's next request to it is answered INVALID_TERM with that term and the leader
    steps down within one exchange (its vote requests cannot do it: a leader answers them
    LEADER_IS_ALIVE, B29)."""
    cluster = make_cluster(nodes=3)
    timing = cluster.timing
    leader = cluster.wait_for_leader()
    rejoining = cluster.rng("suite/b27").choice(sorted(n for n in cluster.nodes if n != leader))
    markers = Markers(cluster, "b27")
    markers.write(3)
    term = cluster.status(leader)["term"]
    cluster.set_flag(rejoining, "raft_enable_pre_election", False)
    try:
        with partition(cluster, isolate=rejoining, mode="refused"):
            high = wait_status(cluster, rejoining, lambda s: s["term"] >= term + 2,
                               f"{rejoining} to raise its term twice alone", 4 * timing.new_leader_within_s())
            st = cluster.status(leader)
            if st["role"] != "LEADER" or st["term"] != term:
                unknown(record_verdict, "b27-step-down", f"{leader} stopped leading while {rejoining} "
                        "was isolated", status={k: st[k] for k in ("role", "term")})
                return
        bound = heartbeats(cluster, 1) + timing.rpc_timeout_s + heartbeats(cluster, 1)
        st = wait_status(cluster, leader, lambda s: s["term"] > term,
                         f"{leader} to hear {rejoining}'s term from its INVALID_TERM reply", bound)
        print(f"{rejoining} reached term {high['term']} alone; {leader}: {st['role']} t{st['term']}")
        assert st["term"] >= high["term"] and st["role"] != "LEADER" or st["term"] > high["term"], st
    finally:
        cluster.set_flag(rejoining, "raft_enable_pre_election", True)
    valid(record_verdict, "b27-step-down", f"{leader} left term {term} on {rejoining}'s reply")
    cluster.wait_for_leader(timeout_s=timing.new_leader_within_s())
    cluster.wait_caught_up(timeout_s=timing.new_leader_within_s())
    markers.assert_all_durable()
