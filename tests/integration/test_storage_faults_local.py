"""Power loss and corruption on a real local cluster: every harness-started node keeps a sync
ledger, the power cut and the corruption are recorded with their bite evidence, a replay gets the
same bytes, and a node refusing injected corruption (exit 3) is not a crash."""

from __future__ import annotations

from typing import Any

import pytest

from faults.catalog import build_fault, replay_params
from harness.checkers.crashes import check_crashes
from harness.checkers.verdict import Validity
from harness.cluster import Cluster
from harness.fault import applied

pytestmark = pytest.mark.integration


def _writes(cluster: Cluster, leader: str, count: int) -> None:
    for i in range(count):
        assert cluster.node(leader).put(f"k{i}", f"v{i}", 5.0).outcome.value == "ok"


def _events(cluster: Cluster, kind: str) -> list[dict[str, Any]]:
    return [e for e in cluster.history.events() if e["kind"] == kind]


def test_power_loss_is_recorded_with_what_the_cut_dropped(cluster: Cluster) -> None:
    leader = cluster.wait_for_leader()
    victim = sorted(n for n in cluster.nodes if n != leader)[0]
    _writes(cluster, leader, 3)
    cluster.wait_caught_up(timeout_s=cluster.timing.new_leader_within_s())
    assert (cluster.run.node_data(victim) / ".sync-ledger").stat().st_size > 0
    with applied(build_fault("power-loss", {"target": victim}), cluster):
        assert not cluster.is_running(victim)
    fault, heal = _events(cluster, "fault")[-1], _events(cluster, "heal")[-1]
    cut = fault["params"]["cut"][victim]
    assert cut["ledger_lines"] > 0 and cut["total_dropped_bytes"] >= 0
    # The kill always bites (a crash, even with nothing unsynced); the evidence says what was dropped.
    assert heal["vacuous"] is False
    assert "power cut dropped" in heal["evidence"]
    if cut["total_dropped_bytes"] == 0 and not cut["removed"] and not cut["reverted"]:
        assert "dropped 0 bytes" in heal["evidence"]
    cluster.wait_healthy()
    cluster.wait_caught_up(timeout_s=cluster.timing.new_leader_within_s())


def test_corrupt_meta_is_refused_recorded_and_replays_the_same_bytes(cluster: Cluster) -> None:
    leader = cluster.wait_for_leader()
    victim = sorted(n for n in cluster.nodes if n != leader)[0]
    _writes(cluster, leader, 2)
    # The victim may not have acknowledged the writes (a majority did): wait until it appended in
    # this term, which it does only after its term flush, so its metadata file exists to damage.
    cluster.wait_caught_up(timeout_s=cluster.timing.new_leader_within_s())
    exits: list[tuple[str, int]] = []
    cluster.add_exit_listener(lambda node, code: exits.append((node, code)))
    with applied(build_fault("corrupt", {"target": victim, "file": "meta", "where": "mid"}), cluster):
        pass  # heal starts the node on the damaged metadata

    def exited() -> bool:
        cluster.reap()
        return bool(exits)

    cluster.wait_until(exited, what=f"{victim} to refuse its metadata", timeout_s=30)
    assert exits == [(victim, 3)]
    fault = _events(cluster, "fault")[-1]
    plan = fault["params"]["plans"][victim]
    assert plan["path"] == "consensus-meta.json" and plan["expect"] == "refuse"
    again = build_fault("corrupt", replay_params("corrupt", {"target": "one", "file": "meta", "where": "mid"},
                                                 fault["params"], fault["targets"]))
    assert again.plans[victim].to_json() == plan  # type: ignore[attr-defined]
    verdict = check_crashes(cluster.history.events())
    assert verdict.validity is Validity.VALID, verdict.summary
    assert verdict.details["refused_injected_corruption"][0]["node"] == victim
