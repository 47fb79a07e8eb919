"""Did a cut bite? ``faults.bite.judge_cut`` over recorded evidence: real heal events of nemesis runs,
and every partition shape x mode x leader position built with the partition compiler.

The recorded cases (tests/unit/data/bite_evidence.json) are the ``bite`` objects of heal events
from ``pytest 'suites/test_nemesis.py::test_random_schedule_keeps_acknowledged_writes[mixed]'
--seed 1416262701`` and ``--seed 812398601``; issue #10 reported such cuts as "did not bite"
(``majority-minority(n1)`` with n1 leading, ``partition-bridge(n3)`` with n1 leading) because the
judgement read Toxiproxy's byte totals, which only move when a connection closes.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from faults.bite import attempts, judge_cut, snapshot
from faults.shapes import Mode, ShapeKind, compile_cuts, from_groups, proxy_plan

RECORDED = json.loads((Path(__file__).parent / "data" / "bite_evidence.json").read_text())
HEARTBEATS = 3  # what a leader sends each peer over the window in the built cases


def _recorded(fault: str, leader: str, groups: str) -> dict[str, Any]:
    (key,) = [k for k in RECORDED if f"{fault} " in k and f"leader {leader} " in k and groups in k]
    return copy.deepcopy(RECORDED[key])


@pytest.mark.parametrize("key", sorted(k for k in RECORDED if k.startswith("seed ")))
def test_every_recorded_cut_of_a_nemesis_run_bit(key: str) -> None:
    verdict = judge_cut(RECORDED[key])
    print(key, verdict)
    assert verdict.bit is True, verdict


def test_the_issues_majority_minority_with_the_leader_in_the_minority_bit() -> None:
    """seed 812398601: ``majority-minority(n1)``, blackhole, n1 leading. Its bytes show only what
    connections closed meanwhile; n1's own counters show the heartbeats it sent across the cut."""
    evidence = _recorded("partition-majority-minority", "n1", "[['n1'], ['n2', 'n3']]")
    verdict = judge_cut(evidence)
    assert verdict.bit is True
    assert "n1 (leader, term 4) sent n2 1 UpdateConsensus request(s) (n1->n2 cut downstream+upstream)" \
        in verdict.evidence, verdict.evidence


def test_the_issues_bridge_with_the_leader_on_one_side_bit() -> None:
    """seed 812398601: ``partition-bridge(n3)``, blackhole, 0.35 s, n1 leading on one side: n1's
    request to n2 was in flight when the cut went in and failed (RPC_LAYER_ERROR); n2 asked n1 for a
    vote across the cut. The bytes (``n1->n2 downstream: 15019 B in, 14856 B out``) prove nothing."""
    evidence = _recorded("partition-bridge", "n1", "[['n2'], ['n3'], ['n1']]")
    assert evidence["links"]["n1->n2"]["bytes"]["downstream"] == [15019, 14856]
    verdict = judge_cut(evidence)
    assert verdict.bit is True
    assert "n1's request to n2, in flight when the cut went in, failed" in verdict.evidence
    assert "n2 started 1 (pre-)election(s), each asking n1 for a vote" in verdict.evidence


def test_a_recorded_cut_without_the_leaders_second_read_relies_on_the_others() -> None:
    """Dropping n1's heal read leaves n2's vote requests; dropping those too, cannot tell."""
    evidence = _recorded("partition-bridge", "n1", "[['n2'], ['n3'], ['n1']]")
    evidence["nodes"]["n1"]["heal"] = None
    assert judge_cut(evidence).bit is True
    evidence["nodes"]["n2"]["heal"]["pre_elections"] = evidence["nodes"]["n2"]["inject"]["pre_elections"]
    verdict = judge_cut(evidence)
    assert verdict.bit is None and "n1's /status could not be read at heal" in verdict.evidence, verdict


# ---- built evidence: every shape x mode x leader position ------------------------------------------


def _status(node: str, nodes: list[str], leader: str, term: int, sent: int, pre: int = 0,
            proxied: int = 0) -> dict[str, Any]:
    """A ``/status`` as docs/node-api.md has it (the leader's counters per peer)."""
    peers = {p: {"failed_attempts": 0, "request_pending": False, "next_hop": p, "status": "OK",
                 "last_contact_age_ms": 10.0,
                 "counters": {"requests_sent": sent, "proxied_sends": proxied, "responses_ok": sent,
                              "responses_error": 0}}
             for p in nodes if p != node} if node == leader else {}
    return {"role": "LEADER" if node == leader else "FOLLOWER", "term": term, "pre_elections_started": pre,
            "elections_started": 1 if node == leader else 0, "updates_received": 7,
            "last_leader_contact_age_ms": None if node == leader else 20.0,
            "proxy": {"received": 0, "success": 0}, "peers": peers}


def _evidence(kind: ShapeKind, mode: Mode, groups: list[list[str]], nodes: list[str], leader: str,
              quiet_followers: bool = True) -> dict[str, Any]:
    """What ``CutWatch`` records for this cut when the leader heartbeats every peer and (with
    ``quiet_followers``) no follower starts an election: each follower cut off from the leader
    starts one pre-election otherwise."""
    resolved = from_groups(kind, nodes, groups)
    ops = proxy_plan(compile_cuts(resolved.blocked, mode))
    links: dict[str, dict[str, Any]] = {}
    for op in ops:
        cut = links.setdefault(op.link, {"streams": [], "bytes": None})
        if op.op == "disable":
            cut["disabled"] = True
        else:
            assert op.stream is not None
            cut["streams"].append(op.stream.value)
    cut_off = {y for x, y in resolved.blocked if x == leader}
    reads = {}
    for n in nodes:
        pre = 0 if quiet_followers or n not in cut_off else 1
        reads[n] = {"inject": snapshot(_status(n, nodes, leader, 4, 10)),
                    "heal": snapshot(_status(n, nodes, leader, 4, 10 + HEARTBEATS, pre))}
    return {"window_s": 1.1, "links": links, "not_in_place": [], "nodes": reads, "feeds": {}, "restarted": []}


N3, N5 = ["n1", "n2", "n3"], ["n1", "n2", "n3", "n4", "n5"]
CASES = [  # shape, nodes, groups, leader, where the leader is
    (ShapeKind.ISOLATE, N3, [["n1"], ["n2", "n3"]], "n1", "isolated"),
    (ShapeKind.ISOLATE, N3, [["n1"], ["n2", "n3"]], "n2", "majority side"),
    (ShapeKind.HALVES, N5, [["n1", "n2"], ["n3", "n4", "n5"]], "n1", "smaller half"),
    (ShapeKind.HALVES, N5, [["n1", "n2"], ["n3", "n4", "n5"]], "n4", "larger half"),
    (ShapeKind.MAJORITY_MINORITY, N3, [["n1"], ["n2", "n3"]], "n1", "cut minority"),
    (ShapeKind.MAJORITY_MINORITY, N5, [["n1", "n2"], ["n3", "n4", "n5"]], "n2", "cut minority"),
    (ShapeKind.MAJORITY_MINORITY, N5, [["n1", "n2"], ["n3", "n4", "n5"]], "n5", "majority side"),
    (ShapeKind.BRIDGE, N3, [["n2"], ["n3"], ["n1"]], "n1", "a side"),
    (ShapeKind.BRIDGE, N5, [["n1", "n2"], ["n3"], ["n4", "n5"]], "n4", "a side"),
    (ShapeKind.MAJORITIES_RING, N5, [["n3", "n1", "n5", "n2", "n4"]], "n1", "on the ring"),
    (ShapeKind.ONE_WAY, N3, [["n1"], ["n2", "n3"]], "n1", "sender"),
    (ShapeKind.ONE_WAY, N3, [["n1"], ["n2", "n3"]], "n2", "receiver"),
    (ShapeKind.ONE_WAY, N5, [["n1", "n2"], ["n3"]], "n4", "outside the cut"),
]


@pytest.mark.parametrize("mode", list(Mode))
@pytest.mark.parametrize("kind, nodes, groups, leader, where", CASES,
                         ids=[f"{c[0].value}-{len(c[1])}-leader-{c[4].replace(' ', '-')}" for c in CASES])
def test_a_cut_bites_exactly_when_the_leader_sends_across_it(kind: ShapeKind, nodes: list[str],
                                                             groups: list[list[str]], leader: str, where: str,
                                                             mode: Mode) -> None:
    """The leader heartbeats every peer; followers stay quiet. The cut bit iff some cut link
    starts at the leader (its requests, or the replies to them, are dropped)."""
    evidence = _evidence(kind, mode, groups, nodes, leader)
    sources = {name.split("->")[0] for name in evidence["links"]}
    verdict = judge_cut(evidence)
    print(kind.value, mode.value, groups, leader, where, verdict)
    if leader in sources:
        assert verdict.bit is True, verdict
        assert f"{leader} (leader, term 4) sent" in verdict.evidence
    else:
        assert verdict.bit is False, verdict
        assert verdict.evidence.startswith("nobody sent across the cut in 1.1 s: "), verdict
    if where in ("isolated", "cut minority", "smaller half", "sender", "receiver"):
        assert verdict.bit is True, "a leader inside the cut is never vacuous"


@pytest.mark.parametrize("mode", list(Mode))
def test_a_bridge_through_the_leader_does_not_bite_until_a_follower_calls_an_election(mode: Mode) -> None:
    """The leader as the bridge reaches everyone: only the followers' links are cut, and followers
    send nothing of their own until one of them starts a (pre-)election."""
    groups = [["n1", "n2"], ["n3"], ["n4", "n5"]]
    quiet = _evidence(ShapeKind.BRIDGE, mode, groups, N5, "n3")
    verdict = judge_cut(quiet)
    assert verdict.bit is False, verdict
    assert "n1 followed throughout and started no election (n1->n4 " in verdict.evidence
    loud = copy.deepcopy(quiet)
    loud["nodes"]["n4"]["heal"]["pre_elections"] = 1
    verdict = judge_cut(loud)
    assert verdict.bit is True and "n4 started 1 (pre-)election(s), each asking n1 for a vote" in verdict.evidence


def test_missing_or_restarted_sources_make_it_cannot_tell_never_a_guess() -> None:
    groups = [["n1", "n2"], ["n3"], ["n4", "n5"]]
    base = _evidence(ShapeKind.BRIDGE, Mode.BLACKHOLE, groups, N5, "n3")
    unread = copy.deepcopy(base)
    unread["nodes"]["n1"]["inject"] = None
    verdict = judge_cut(unread)
    assert verdict.bit is None and "n1's /status could not be read at injection" in verdict.evidence
    restarted = copy.deepcopy(base)
    restarted["restarted"] = ["n2"]
    assert "n2 exited or restarted during the cut" in judge_cut(restarted).evidence
    backwards = copy.deepcopy(base)
    backwards["nodes"]["n5"]["heal"]["updates_received"] = 0
    assert judge_cut(backwards).bit is None
    not_whole = copy.deepcopy(base)
    not_whole["not_in_place"] = ["n1->n4: toxic raftchaos-x not listed"]
    verdict = judge_cut(not_whole)
    assert verdict.bit is None and "not whole at heal" in verdict.evidence
    assert judge_cut({"links": {}}).bit is None


def _leader_reads(**heal_changes: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    before = snapshot(_status("n1", N3, "n1", 4, 10))
    after = copy.deepcopy(before)
    assert before is not None and after is not None
    after["peers"]["n2"].update(heal_changes)
    return before, after


def test_leader_evidence_per_peer() -> None:
    before, after = _leader_reads()
    assert attempts("n1", "n2", before, after, 1.0, ())[0] == "none"
    before["peers"]["n2"]["pending"] = True
    assert attempts("n1", "n2", before, after, 1.0, ()) == (
        "sent", "n1's request to n2, in flight when the cut went in, got no reply in 1.0 s")
    before, after = _leader_reads(sent=12, proxied=2)  # both new sends went through a proxy node
    assert attempts("n1", "n2", before, after, 1.0, ()) == (
        "none", "n1 (leader) reached n2 only through a proxy node in 1.0 s")
    new_term = copy.deepcopy(after)
    new_term["term"] = 5
    # Leading a later term: its Peers were built at that election, inside the window (B5).
    assert attempts("n1", "n2", before, new_term, 1.0, ()) == (
        "sent", "n1 (leader from term 5) sent n2 10 UpdateConsensus request(s)")
    follower = dict(before, role="FOLLOWER", term=5, peers={})  # stepped down: a higher term
    assert attempts("n1", "n2", before, follower, 1.0, ())[1].startswith("n1 was leader at injection only")
    candidate = dict(follower, role="CANDIDATE")
    assert attempts("n1", "n2", follower, candidate, 1.0, ())[0] == "unknown"


def test_a_proxy_node_forwarding_only_to_the_peer_sent_across_the_cut() -> None:
    before = snapshot(_status("n2", N3, "n1", 4, 0))
    assert before is not None
    after = dict(before, proxy_received=before["proxy_received"] + 5)
    assert attempts("n2", "n3", before, after, 1.0, ["n3"]) == ("sent", "n2 forwarded 5 proxied request(s) to n3")
    assert attempts("n2", "n3", before, after, 1.0, ["n3", "n1"])[0] == "unknown"
    assert attempts("n2", "n3", before, after, 1.0, ["n1"])[0] == "none"


# ---- recorded matrix: real cuts of local clusters (tests/unit/data/record_bite_evidence.py) ---------

MATRIX = json.loads((Path(__file__).parent / "data" / "bite_matrix.json").read_text())


@pytest.mark.parametrize("key", sorted(MATRIX))
def test_recorded_shape_mode_leader_position(key: str) -> None:
    """Recorded with ``record_bite_evidence.py --seed 20261207`` (3 and 5 local nodes, every shape
    in both modes, the leader inside / outside the cut). Whoever led at injection and is the source
    of a cut link makes the cut bite; a bridge through the leader cuts only quiet followers."""
    case = MATRIX[key]
    evidence = case["bite"]
    leading_sources = [n for n, reads in evidence["nodes"].items()
                       if (reads.get("inject") or {}).get("role") == "LEADER"]
    verdict = judge_cut(evidence)
    print(key, leading_sources, verdict)
    if case["where"] == "the bridge":
        assert not leading_sources
        assert verdict.bit is False and verdict.evidence.startswith("nobody sent across the cut"), verdict
    else:
        assert leading_sources, "the leader is the source of some cut link in every other position"
        assert verdict.bit is True, verdict


def test_a_refused_dial_that_failed_before_the_post_injection_read_still_bit() -> None:
    """Recorded (tests/integration/test_faults_local.py, a refused isolate of follower n2 under
    load, healed 0.08 s after the leader counted a failure): n1's one request to n2 failed within
    milliseconds of the disable, *before* the read that follows the injection, and nothing else
    was sent in the 0.08 s window. That recording had no read from before the cut, and the
    judgement said "nobody sent". With the read taken just before the cut (here n1's counters for
    n2 one error lower, as they were), the failure is the bite."""
    key = next(k for k in RECORDED if k.startswith("integration test_refused_isolate_of_a_follower"))
    evidence = copy.deepcopy(RECORDED[key])
    assert "before_cut" not in evidence["nodes"]["n1"]
    assert judge_cut(evidence).bit is False  # what the recording's own judgement said
    before = copy.deepcopy(evidence["nodes"]["n1"]["inject"])
    before["peers"]["n2"].update(errors=0, failed_attempts=0, status="OK")
    evidence["nodes"]["n1"]["before_cut"] = before
    verdict = judge_cut(evidence)
    assert verdict.bit is True, verdict
    assert verdict.evidence.startswith("n1's request(s) to n2 failed as the cut went in (1 error(s)) (n1->n2 disabled)")


def test_the_issues_seed_1416262701_majority_minority_of_leader_n1_bit() -> None:
    """Issue #10's run: ``pytest '...test_random_schedule_keeps_acknowledged_writes[mixed]' --seed
    1416262701`` drew ``majority-minority(n1)`` in blackhole with n1 leading; it was judged "did
    not bite". Recorded again with this judgement: n1 heartbeated n2 and n3 across the cut."""
    key = next(k for k in RECORDED if k.startswith("seed 1416262701 mixed (final): partition-majority-minority"))
    evidence = RECORDED[key]
    assert evidence["nodes"]["n1"]["inject"]["role"] == "LEADER"
    verdict = judge_cut(evidence)
    assert verdict.bit is True, verdict
    assert verdict.evidence.startswith("n1 (leader, term 2) sent n2 "), verdict.evidence
