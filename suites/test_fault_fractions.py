"""kuduraft's crash fractions, checked against their distribution from the node's own counters.

kuduraft draws ``MAYBE_FAULT(FLAGS_fault_crash_on_leader_request_fraction)`` in
``Peer::SendNextRequest`` before *every* UpdateConsensus it sends (heartbeats and commit-only
requests included) and ``MAYBE_FAULT(FLAGS_fault_crash_after_leader_request_fraction)`` in
``Peer::ProcessResponse`` for every reply it processes (B21, B22). Two checks:

- Accounting: on an idle leader (only heartbeats go out), over a window in one term, the node's
  draw counter (``crash_flag_draws``) moves exactly as its per-peer send counter
  (``requests_sent``) and reply counter (``responses_ok + responses_error``): one snapshot is one
  consistent read on the node's loop, so the equality is exact.
- Distribution: an idle leader with fraction f crashes (exit 85) after a geometric number of
  opportunities (sends or processed replies), p = f per opportunity. Over ``TRIALS`` crashes the
  opportunities each leader *survived* (counted from its own counters up to the last look before
  it died, a lower bound) sum to a negative binomial NB(TRIALS, f). The test fails when that sum
  reaches the NB upper quantile of ``FALSE_ALARM`` = 1e-4: a correct node fails it once in
  10 000 runs; a node that draws on only some opportunities (e.g. only sends that carry ops, so
  an idle leader never crashes) fails it every time. The opportunities are the node's own
  counters, never harness timing.
- The follower-side points (``fault_crash_before_cmeta_flush``, ``fault_crash_before_append_commit``)
  have no per-opportunity counter of their own to test a distribution against; with fraction 1
  each must fire at its first opportunity.
"""

from __future__ import annotations

import math
from typing import Any

import pytest

from harness.cluster import Cluster
from harness.errors import HarnessError, NodeUnreachable
from harness.supervisor import INJECTED_CRASH_EXIT
from suites._helpers import Markers, heartbeats, measure, node_exits
from suites._safety import status_or_none, unknown, valid

pytestmark = [pytest.mark.chaos, pytest.mark.fault_fractions,
              pytest.mark.kuduraft_only(reason="kuduraft's crash fractions, judged from its own per-peer draw counters")]

ON = "fault_crash_on_leader_request_fraction"
AFTER = "fault_crash_after_leader_request_fraction"
FRACTION = 0.1
TRIALS = 3
FALSE_ALARM = 1e-4
ACCOUNTING_HEARTBEATS = 20


def negbin_upper_quantile(trials: int, p: float, alpha: float) -> int:
    """Smallest c with P(S >= c) <= alpha, S = failures before the ``trials``-th success."""
    cdf, s = 0.0, 0
    log_p, log_q = math.log(p), math.log1p(-p)
    while True:
        log_pmf = (math.lgamma(s + trials) - math.lgamma(trials) - math.lgamma(s + 1)
                   + trials * log_p + s * log_q)
        cdf += math.exp(log_pmf)
        s += 1
        if 1.0 - cdf <= alpha:
            return s


def _opportunities(status: dict[str, Any], flag: str) -> int:
    """Sends (``ON``) or processed replies (``AFTER``) in this leadership, from its counters."""
    total = 0
    for view in (status.get("peers") or {}).values():
        c = view["counters"]
        total += c["requests_sent"] if flag == ON else c["responses_ok"] + c["responses_error"]
    return total


def test_draws_on_every_send_and_every_reply(make_cluster: Any, record_verdict: Any) -> None:
    """B21/B22 accounting: an idle leader draws once per heartbeat send and once per reply."""
    cluster = make_cluster(nodes=3)
    leader = cluster.wait_for_leader()
    Markers(cluster, "draws").write(1)
    window = measure(cluster, leader, heartbeats(cluster, ACCOUNTING_HEARTBEATS), "idle heartbeats")
    window.assert_same_leadership()
    sends = sum(window.delta(p, "requests_sent") for p in window.after.status["peers"])
    replies = sum(window.delta(p, "responses_ok") + window.delta(p, "responses_error")
                  for p in window.after.status["peers"])
    ops = sum(window.delta(p, "requests_with_ops") for p in window.after.status["peers"])
    draws = {f: window.after.status["crash_flag_draws"][f] - window.before.status["crash_flag_draws"][f]
             for f in (ON, AFTER)}
    print(f"idle window: {sends} sends ({ops} with ops), {replies} replies; draws {draws}")
    if sends < ACCOUNTING_HEARTBEATS // 2:
        unknown(record_verdict, "crash-fraction-draws", "too few sends in the window", sends=sends)
        return
    assert draws[ON] == sends, f"{ON} drawn {draws[ON]} times for {sends} sends ({ops} with ops)"
    assert draws[AFTER] == replies, f"{AFTER} drawn {draws[AFTER]} times for {replies} replies"
    valid(record_verdict, "crash-fraction-draws", f"{sends} sends, {replies} replies, one draw each")


MAX_VOID_TRIALS = 3
"""Trials cut short by a leadership change (under load) before a crash; more than this: unknown."""


def _disarm(cluster: Cluster, node: str, flag: str) -> None:
    """Clear ``flag`` on a node that is still up (a runtime flag dies with its process anyway)."""
    if status_or_none(cluster, node) is not None:
        try:
            cluster.set_flag(node, flag, 0.0)
        except (NodeUnreachable, HarnessError):
            pass


def _one_trial(cluster: Cluster, flag: str, critical: int, survived_so_far: int) -> tuple[str, int] | None:
    """Arm ``flag`` on the current leader, follow its counters until it exits with 85; return
    (leader, opportunities it survived: the last look before it died, minus the first look).

    None when the armed node was not, or stopped being, the leader of that term before it crashed
    (an election under load): followers draw no leader-request fractions, so such a trial is
    void, not evidence. Dropping it leaves out survived opportunities, which only makes the upper
    bound check more lenient, never a false alarm."""
    timing = cluster.timing
    leader = cluster.wait_for_leader(timeout_s=timing.new_leader_within_s())
    cluster.wait_until(lambda: all(cluster.is_running(n) for n in cluster.nodes),
                       what="every node running", timeout_s=timing.new_leader_within_s())
    cluster.set_flag(leader, flag, FRACTION)
    first = status_or_none(cluster, leader)
    if first is None or first["role"] != "LEADER":
        print(f"{leader} stopped leading before its trial: void")
        _disarm(cluster, leader, flag)
        return None
    since = cluster.history.now()
    term, base = first["term"], _opportunities(first, flag)
    last = {"n": 0}
    deposed = {"yes": False}

    def crashed() -> bool:
        st = status_or_none(cluster, leader)
        if st is not None and (st["role"] != "LEADER" or st["term"] != term):
            deposed["yes"] = True
            return True
        if st is not None:
            last["n"] = _opportunities(st, flag) - base
            assert survived_so_far + last["n"] < critical, (
                f"{leader} survived {survived_so_far + last['n']} opportunities with {flag}={FRACTION} "
                f"over the trials so far (critical value {critical} at false-alarm rate {FALSE_ALARM})")
        return bool(node_exits(cluster, INJECTED_CRASH_EXIT, since))

    # The assertion above ends the wait long before this deadline in the failing case.
    bound = (critical + 1) * heartbeats(cluster, 1) + timing.new_leader_within_s()
    cluster.wait_until(crashed, what=f"{leader} to crash under {flag}={FRACTION}", timeout_s=bound, poll_s=0.01)
    exits = node_exits(cluster, INJECTED_CRASH_EXIT, since)
    if not exits and deposed["yes"]:
        print(f"{leader} lost leadership of term {term} after {last['n']} opportunities: void")
        _disarm(cluster, leader, flag)
        return None
    assert exits[0]["node"] == leader, f"not the armed leader crashed: {exits}"
    return leader, last["n"]


@pytest.mark.slow
@pytest.mark.parametrize("flag", [ON, AFTER], ids=["on_request", "after_request"])
def test_idle_leader_crashes_after_geometric_opportunities(make_cluster: Any, record_verdict: Any,
                                                           raftchaos_seed: int, flag: str) -> None:
    """B21/B22: with only heartbeats going out, a leader armed with fraction f crashes; the
    opportunities survived over TRIALS crashes stay below the NB(TRIALS, f) 1e-4 quantile."""
    cluster = make_cluster(nodes=3, supervisor=True)
    critical = negbin_upper_quantile(TRIALS, FRACTION, FALSE_ALARM)
    print(f"seed {raftchaos_seed}; {flag}={FRACTION}; {TRIALS} trials; critical survived total "
          f"{critical} (mean {TRIALS * (1 - FRACTION) / FRACTION:.0f})")
    Markers(cluster, "fractions").write(1)
    survived, voids = 0, 0
    per_trial: list[tuple[str, int]] = []
    while len(per_trial) < TRIALS:
        trial = _one_trial(cluster, flag, critical, survived)
        if trial is None:
            voids += 1
            if voids > MAX_VOID_TRIALS:
                unknown(record_verdict, "crash-fraction-distribution", f"{voids} trials cut short by "
                        "leadership changes before a crash", per_trial=per_trial)
                return
            continue
        leader, n = trial
        survived += n
        per_trial.append((leader, n))
        cluster.wait_until(lambda: all(cluster.is_running(n) for n in cluster.nodes),
                           what="the supervisor to restart the crashed leader",
                           timeout_s=cluster.timing.new_leader_within_s())
    print(f"survived opportunities per crash: {per_trial}; total {survived} < {critical}")
    assert survived < critical
    valid(record_verdict, "crash-fraction-distribution",
          f"{TRIALS} crashes after {survived} survived opportunities (critical {critical})",
          per_trial=per_trial)


@pytest.mark.parametrize("flag", ["fault_crash_before_cmeta_flush", "fault_crash_before_append_commit"],
                         ids=["cmeta_flush", "append_commit"])
def test_follower_fault_points_fire_at_their_first_opportunity(make_cluster: Any, record_verdict: Any,
                                                               flag: str) -> None:
    """kuduraft's MAYBE_FAULT before a consensus-metadata flush (``ConsensusMetadata::Flush``) and
    before applying a commit: with fraction 1 a follower exits 85 at the first opportunity (a
    term change from the leader stepping down / the next committed write). For the commit point
    its ``applied_index`` never moved past what it showed when armed (the draw comes before the
    apply); for the flush point the same check is weaker: the process dies within microseconds
    of the flush either way, so an outside observer cannot tell draw-then-flush from the reverse."""
    cluster = make_cluster(nodes=3, supervisor=True)
    timing = cluster.timing
    leader = cluster.wait_for_leader()
    markers = Markers(cluster, "points")
    markers.write(1)
    cluster.wait_caught_up(timeout_s=timing.new_leader_within_s())
    victim = cluster.rng("suite/points").choice(sorted(n for n in cluster.nodes if n != leader))
    cluster.set_flag(victim, flag, 1.0)
    armed = cluster.status(victim)
    field = "metadata_flushes" if flag == "fault_crash_before_cmeta_flush" else "applied_index"
    since = cluster.history.now()
    last = {"v": armed[field]}

    def crashed() -> bool:
        st = status_or_none(cluster, victim)
        if st is not None and st["flags"][flag] == 1.0:
            last["v"] = st[field]
        return bool(node_exits(cluster, INJECTED_CRASH_EXIT, since))

    if flag == "fault_crash_before_cmeta_flush":
        cluster.node(leader).step_down()  # every node moves to a higher term: one flush each
    else:
        markers.write(1)  # committed by the leader and the other follower; applied -> crash
    cluster.wait_until(crashed, what=f"{victim} to exit 85 under {flag}=1",
                       timeout_s=timing.new_leader_within_s(), poll_s=0.01)
    exits = node_exits(cluster, INJECTED_CRASH_EXIT, since)
    print(f"{flag}: {[(e['node'], e['code']) for e in exits]}; {field} armed {armed[field]} last {last['v']}")
    assert [e["node"] for e in exits] == [victim], f"expected only {victim} to exit 85: {exits}"
    assert last["v"] == armed[field], (
        f"{victim} moved {field} {armed[field]} -> {last['v']} before {flag}=1 fired")
    valid(record_verdict, "fault-point-first-opportunity", f"{victim} exited 85 under {flag}=1")
    cluster.wait_until(lambda: all(cluster.is_running(n) for n in cluster.nodes),
                       what="the supervisor to restart the victim", timeout_s=timing.new_leader_within_s())
    cluster.wait_healthy()
    cluster.wait_caught_up(timeout_s=timing.new_leader_within_s())
    markers.assert_all_durable()
