"""Power loss and disk corruption (issue #12, item 5): what a node fsynced must survive a power
cut, and a node whose disk was damaged must refuse to start or recover correctly.

A SIGKILL keeps the page cache, so a write the node never fsynced survives it and a missing
fsync never shows. The ``power-loss`` fault (``faults/storage_faults.py``) also drops every byte
the node's sync ledger does not show as fsynced (``faults/ledger.py``). kuduraft's rules checked:

* a follower answers UpdateConsensus only after its WAL append is durable
  (``RaftConsensus::UpdateReplica`` waits for ``log_->AsyncAppendReplicates`` before
  ``FillConsensusResponseOKUnlocked``), and the leader counts itself once its own append is
  durable (``PeerMessageQueue::LocalPeerAppendFinished``): an acknowledged write is on the
  disks of a majority. An fsync takes ~2 ms, too short for a harness to cut power inside it, so
  the scenario widens it: the victim's WAL sync is slowed by ``log_inject_latency`` (2.5 s, no
  jitter) and power is cut right after the acknowledgement. A correct node acknowledges only
  once the window is over; a node that acknowledges before its fsync does so at once and is cut
  inside the window, every run.

  The latency sits where kuduraft puts it: after the batch is written, before its fsync (log.cc,
  ``Log::AppendThread::HandleGroup`` calls ``DoAppend`` for every batch, then ``Log::Sync``,
  which injects the latency before ``active_segment_->Sync()``; ``nodes/wal.py``
  ``Wal.append(before_sync=...)``). So the acknowledged bytes sit in the page cache: only the
  power cut drops them (its report names the bytes), and a plain SIGKILL does not catch the bug
  (checked by hand with a SIGKILL in place of the cut: 0 of 3 per bug). This replaced the
  SIGKILL-based ``test_safety_durability.py``, which caught the bug only because the node used
  to sleep before writing. One key is written in the window so that nothing queued behind it is
  lost to a plain kill either;
* a vote is granted only once term and vote are flushed (raft_consensus.cc,
  ``RaftConsensus::RequestVote``: the term advance skips its flush when the vote is yes, and
  ``RequestVoteRespondVoteGranted`` records the vote, flushing the consensus metadata, before it
  fills the granted reply);
* a torn tail of the last WAL segment is cut on start, a checksum failure anywhere else refused
  (``ReadableLogSegment`` / ``LogReader``), and corrupt consensus metadata refused
  (``ConsensusMetadata::Load``): refused means exit 3 here.
"""

from __future__ import annotations

import json
import time
from typing import Any, TypeVar

import pytest

from faults.process import Kill, kill
from faults.storage_faults import Corrupt, PowerLoss
from harness.cluster import Cluster
from harness.errors import FaultError
from harness.fault import check_available
from harness.history import OpFn
from harness.nodeclient import Outcome
from suites._helpers import Markers, recorded_op
from suites._safety import node_flags, status_or_none, unknown, valid, wait_status

pytestmark = [pytest.mark.chaos, pytest.mark.safety,
              pytest.mark.kuduraft_only(reason="power loss replays kuduraft's sync ledger; corruption targets its WAL and metadata formats")]

REFUSED_STORAGE_EXIT = 3


F = TypeVar("F", bound=Kill)


def _inject(cluster: Cluster, fault: F) -> F:
    check_available(fault, cluster)
    record = fault.inject(cluster)
    print(f"{record.fault} on {', '.join(record.targets)}: {json.dumps(record.params, sort_keys=True)}")
    return fault


def _heal(cluster: Cluster, faults: list[Kill]) -> None:
    while faults:
        faults.pop().heal(cluster)


FSYNC_LATENCY_MS = 2500  # the hazard window: the victim's every WAL append waits this long
RPC_TIMEOUT_MS = 5000  # longer than the window, so the leader waits for the slow follower's reply
KV_OP_TIMEOUT_MS = 8000  # longer than the window, so a correct (slow) ack is not a timeout
_POSITION = ("last_index", "last_term", "durable_index")  # a node's log, for the evidence
WINDOW_KEYS = 1  # acknowledged while the victim's fsync is slowed (see the module docstring)


@pytest.mark.parametrize("victim", ["follower", "leader"])
def test_acked_writes_survive_power_loss_of_a_minority(make_cluster: Any, record_verdict: Any,
                                                        victim: str) -> None:
    """Third node down; X (the victim) gets a slow WAL sync; a write acknowledged by X and Y; power
    cut on X right after the ack, then Y stopped (SIGKILL, its disk intact but out of reach): X
    and the third node elect a leader, which must serve the acknowledged write (X holds the only
    copy of it). UNKNOWN when the cut came later than half the window after the ack: an early
    acknowledgement might have been synced by then, so a pass would not be earned."""
    cluster = make_cluster(nodes=3, flags={"consensus_rpc_timeout_ms": RPC_TIMEOUT_MS,
                                           "kv_op_timeout_ms": KV_OP_TIMEOUT_MS})
    leader = cluster.wait_for_leader()
    follower, third = cluster.rng("suite/power-loss").sample(sorted(n for n in cluster.nodes if n != leader), 2)
    x, y = (follower, leader) if victim == "follower" else (leader, follower)
    print(f"leader {leader}; power cut on {x} ({victim}); other acker {y}; down {third}; "
          f"fsync latency {FSYNC_LATENCY_MS} ms on {x}")
    markers = Markers(cluster, f"power-{victim}")
    markers.write(3)  # enough acknowledged ops before the first fault for the recovery checker
    cluster.wait_caught_up(timeout_s=cluster.timing.new_leader_within_s())
    down: list[Kill] = [kill(cluster, third)]
    try:
        node_flags(cluster, x, log_inject_latency_ms_mean=FSYNC_LATENCY_MS,
                   log_inject_latency_ms_stddev=0, log_inject_latency=True)
        before = cluster.status(x)
        started = time.monotonic()
        keys = markers.write(WINDOW_KEYS)  # acknowledged by x and y only
        acked = time.monotonic()
        cut = PowerLoss(x)
        try:
            _inject(cluster, cut)
        except FaultError as exc:
            unknown(record_verdict, "acked-writes-survive-power-loss", f"the power cut on {x} could "
                    f"not be made: {exc}", victim=victim)
            return
        down.append(cut)
        gap_s = time.monotonic() - acked
        y_view = _last_view(cluster, y)  # before it stops: what the acknowledgements covered
        down.append(kill(cluster, y))
        evidence = {"victim": x, "acked_keys": keys, "ack_latency_s": round(acked - started, 3),
                    "ack_to_cut_s": round(gap_s, 3), "fsync_latency_ms": FSYNC_LATENCY_MS,
                    "victim_before": {k: before[k] for k in _POSITION},
                    "other_acker_at_cut": y_view, "cut": cut.cuts.get(x, {})}
        down.pop(1).heal(cluster)  # x back with what its disk kept
        # alone (no majority), x's log is what the cut left: read it before a new leader adds to it
        kept = wait_status(cluster, x, lambda st: True, what=f"{x} to answer after the power cut",
                           timeout_s=cluster.timing.new_leader_within_s())
        evidence["victim_after_cut"] = {k: kept[k] for k in _POSITION}
        down.pop(0).heal(cluster)  # the third node: a majority without y
        new = cluster.wait_for_leader(timeout_s=cluster.timing.new_leader_within_s())
        print(f"{len(keys)} writes acknowledged in {acked - started:.3f}s; cut {gap_s:.3f}s after the "
              f"last ack; evidence {json.dumps(evidence, sort_keys=True)}")
        read = {k: markers.read(k) for k in keys}
        lost = {k: v for k, v in read.items() if v != markers.acked[k]}
        assert not lost, (
            f"acknowledged writes lost after a power cut on {x} ({victim}): {new} (leader of {x} and "
            f"{third}) reads {lost}; {x} acknowledged{' (counted itself)' if victim == 'leader' else ''} "
            f"before its fsync; evidence {json.dumps(evidence, sort_keys=True)}")
        if gap_s * 1000 >= FSYNC_LATENCY_MS / 2:
            unknown(record_verdict, "acked-writes-survive-power-loss", f"the cut on {x} came {gap_s:.3f}s "
                    f"after the last ack, too late in the {FSYNC_LATENCY_MS} ms fsync window to catch an "
                    "early acknowledgement", **evidence)
        else:
            valid(record_verdict, "acked-writes-survive-power-loss", f"{len(keys)} writes acknowledged "
                  f"by {x} and {y} survived a power cut on {x} {gap_s:.3f}s after the last ack", **evidence)
    finally:
        _heal(cluster, down)
    cluster.wait_healthy()
    cluster.wait_caught_up(timeout_s=cluster.timing.new_leader_within_s())
    markers.assert_all_durable()


def _last_view(cluster: Cluster, node: str) -> dict[str, Any] | None:
    """``node``'s log and commit position (evidence of what was acknowledged), None if silent."""
    st = status_or_none(cluster, node)
    return None if st is None else {k: st[k] for k in (*_POSITION, "commit_index")}


def _durable_meta(cluster: Cluster, node: str) -> dict[str, Any]:
    """The term and vote the node will start with (its metadata file, docs/node-api.md; none:
    term 0, no vote)."""
    path = cluster.run.node_data(node) / "consensus-meta.json"
    if not path.exists():
        return {"term": 0, "voted_for": None}
    doc: dict[str, Any] = json.loads(path.read_text())
    return doc


def test_a_granted_vote_survives_power_loss(make_cluster: Any, record_verdict: Any) -> None:
    """Leader stopped; the two others elect M, which needs N's vote in M's term t. Power cut on
    N: the term and vote it restarts with must be (t, M) or a later term, else N could vote
    again in t and elect a second leader of that term."""
    cluster = make_cluster(nodes=3)
    old = cluster.wait_for_leader()
    Markers(cluster, "vote").write(3)
    down: list[Kill] = [kill(cluster, old)]
    try:
        new = cluster.wait_for_leader(timeout_s=cluster.timing.new_leader_within_s())
        term = int(cluster.status(new)["term"])
        voter = next(n for n in cluster.nodes if n not in (old, new))
        print(f"old leader {old} down; {new} won term {term} with {voter}'s vote")
        cut = _inject(cluster, PowerLoss(voter))
        down.append(cut)
        meta = _durable_meta(cluster, voter)
        print(f"{voter} restarts with term {meta['term']}, voted_for {meta['voted_for']}; cut {cut.cuts}")
        assert meta["term"] > term or (meta["term"] == term and meta["voted_for"] == new), (
            f"{voter} granted its vote to {new} in term {term} (the only other live node, so {new} "
            f"won with it), but after a power cut it restarts with term {meta['term']} and vote "
            f"{meta['voted_for']!r}: the vote was granted before it was flushed")
        valid(record_verdict, "vote-survives-power-loss", f"{voter}'s vote for {new} in term {term} "
              "survived a power cut", meta=meta)
    finally:
        _heal(cluster, down)
    cluster.wait_healthy()


def test_mid_log_corruption_is_refused_and_the_cluster_keeps_serving(make_cluster: Any,
                                                                      record_verdict: Any) -> None:
    """A flipped byte in a WAL record with records after it: the follower refuses to start
    (exit 3, not restarted); the other two keep serving and lose nothing acknowledged."""
    cluster = make_cluster(nodes=3)
    leader = cluster.wait_for_leader()
    victim = cluster.rng("suite/corrupt").choice(sorted(n for n in cluster.nodes if n != leader))
    markers = Markers(cluster, "corrupt-mid")
    markers.write(6)
    cluster.wait_caught_up(timeout_s=cluster.timing.new_leader_within_s())
    exits: list[tuple[str, int]] = []
    cluster.add_exit_listener(lambda node, code: exits.append((node, code)))
    fault = Corrupt(victim, file="wal", where="mid", mode="flip")
    _inject(cluster, fault)
    plan = fault.applied.get(victim)
    if plan is None:
        fault.heal(cluster)
        unknown(record_verdict, "corrupt-mid-refused", f"{victim}'s WAL held no mid-log record to damage")
        return
    fault.heal(cluster)  # starts the node on the damaged log
    def exited() -> bool:
        cluster.reap()  # records the exit (and calls the listener) if the process is gone
        return any(n == victim for n, _ in exits)

    cluster.wait_until(exited, what=f"{victim} to refuse its damaged WAL (exit)",
                       timeout_s=cluster.timing.new_leader_within_s())
    codes = [c for n, c in exits if n == victim]
    assert codes == [REFUSED_STORAGE_EXIT], (
        f"{victim} started on a WAL damaged mid-log ({plan}) and did not refuse it: exits {codes}")
    markers.write(3)  # the other two still form a majority
    markers.assert_all_durable()
    valid(record_verdict, "corrupt-mid-refused", f"{victim} refused a mid-log corruption (exit 3); the "
          "cluster kept serving", plan=plan)


def test_tail_corruption_is_cut_and_the_node_catches_up(make_cluster: Any, record_verdict: Any) -> None:
    """A damaged last record (a torn tail): the node cuts it on start, rejoins, catches up, and the
    cluster serves every acknowledged write; no stale or damaged value is ever read."""
    cluster = make_cluster(nodes=3)
    leader = cluster.wait_for_leader()
    victim = cluster.rng("suite/corrupt").choice(sorted(n for n in cluster.nodes if n != leader))
    markers = Markers(cluster, "corrupt-tail")
    markers.write(4)
    cluster.wait_caught_up(timeout_s=cluster.timing.new_leader_within_s())
    fault = Corrupt(victim, file="wal", where="tail", mode="zero", nbytes=4)
    _inject(cluster, fault)
    plan = fault.applied.get(victim)
    log = cluster.log_path(victim)
    start_at = log.stat().st_size
    fault.heal(cluster)
    if plan is None:
        unknown(record_verdict, "corrupt-tail-repaired", f"{victim}'s WAL had no tail record to damage")
        return
    cluster.wait_healthy()
    markers.write(2)
    cluster.wait_caught_up(timeout_s=cluster.timing.new_leader_within_s())
    repaired = "cutting torn tail" in log.read_text(errors="replace")[start_at:]
    assert repaired, f"{victim} started on a damaged last record ({plan}) without cutting it"
    for key, value in markers.acked.items():
        got = recorded_op(cluster, victim, OpFn.READ, key)  # through the victim: served or refused
        assert got.outcome is not Outcome.OK or got.body.get("value") == value, (
            f"{victim} served {key}={got.body.get('value')!r}, acknowledged {value!r}")
    markers.assert_all_durable()
    valid(record_verdict, "corrupt-tail-repaired", f"{victim} cut the damaged tail and caught up", plan=plan)

