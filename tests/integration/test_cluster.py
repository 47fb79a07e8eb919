"""A 3-node local cluster: election, proxied links, process control, flags, helpers, failed start."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.cluster import Cluster
from harness.errors import SetupError
from harness.observer import Observer
from harness.spec import ClusterSpec
from harness.supervisor import INJECTED_CRASH_EXIT, CrashSupervisor
from harness.sweep import run_processes
from harness.workload import Workload, WorkloadSpec

pytestmark = pytest.mark.integration


def node_events(c: Cluster) -> list[tuple[str, str, int | None]]:
    return [(e["node"], e["event"], e.get("code")) for e in c.history.events() if e["kind"] == "node"]


def test_start_elects_a_leader_and_records_the_run(cluster: Cluster) -> None:
    leader = cluster.leader()
    assert leader in cluster.nodes
    assert sorted(cluster.followers()) == sorted(n for n in cluster.nodes if n != leader)
    assert set(cluster.status(leader)["peers"]) == set(cluster.followers())
    assert cluster.run.spec_path.exists() and cluster.run.cluster_file.exists()
    assert [e for _, e, _ in node_events(cluster)] == ["start"] * 3
    assert all(cluster.log_path(n).read_text().startswith("=== raftchaos: start") for n in cluster.nodes)


def test_nodes_dial_only_through_their_proxies(cluster: Cluster) -> None:
    leader = cluster.wait_for_leader()
    follower = cluster.followers()[0]
    peer = lambda: cluster.status(leader)["peers"][follower]  # noqa: E731
    cluster.link(leader, follower).disable()
    cluster.wait_until(lambda: peer()["failed_attempts"] > 0, what=f"{leader} to see {follower} fail",
                       timeout_s=5 * cluster.timing.peer_failed_within_s)
    assert peer()["status"] == "RPC_LAYER_ERROR"
    cluster.reset_links()
    cluster.wait_until(lambda: peer()["failed_attempts"] == 0, what=f"{follower} to recover",
                       timeout_s=5 * cluster.timing.peer_failed_within_s)


def test_client_ops_go_through_client_links(cluster: Cluster) -> None:
    leader = cluster.wait_for_leader()
    assert cluster.node(leader).put("k", "v").outcome == "ok"
    cluster.client_link(leader).disable()
    result = cluster.node(leader).get("k", timeout_s=1.0)
    assert result.outcome == "fail" and result.error == "connection_refused"
    assert cluster.status(leader)["role"] == "LEADER"  # status goes to the node directly
    cluster.client_link(leader).reset()
    assert cluster.node(leader).get("k").body["value"] == "v"


def test_kill_restart_pause_resume(cluster: Cluster) -> None:
    leader = cluster.wait_for_leader()
    follower = cluster.followers()[0]
    assert cluster.kill(follower) == -9
    assert not cluster.is_running(follower)
    cluster.start(follower)
    cluster.wait_caught_up()
    cluster.pause(follower)
    assert cluster.is_paused(follower) and cluster.statuses()[follower] is None
    cluster.resume(follower)
    cluster.wait_caught_up()
    cluster.restart(follower)
    cluster.wait_caught_up()
    term = cluster.status(leader)["term"]
    cluster.kill(leader)
    new = cluster.wait_for_new_leader(leader, term)
    assert new != leader
    events = node_events(cluster)
    assert (follower, "kill", -9) in events and (follower, "pause", None) in events
    assert (follower, "resume", None) in events and (follower, "restart", 0) in events
    assert (follower, "terminate", 0) in events and (leader, "kill", -9) in events


def test_set_flag_is_recorded(cluster: Cluster) -> None:
    node = cluster.nodes[0]
    assert cluster.set_flag(node, "consensus_inject_latency_ms_in_notifications", 3) == 3
    assert cluster.flags(node)["consensus_inject_latency_ms_in_notifications"] == 3
    flag_events = [e for e in cluster.history.events() if e.get("event") == "flag"]
    assert flag_events[-1]["flag"] == "consensus_inject_latency_ms_in_notifications"
    assert flag_events[-1]["value"] == 3 and flag_events[-1]["node"] == node


def test_crash_supervisor_restarts_an_injected_crash(cluster: Cluster) -> None:
    leader = cluster.wait_for_leader()
    term = cluster.status(leader)["term"]
    with CrashSupervisor(cluster, restart_delay_s=0.2) as supervisor:
        cluster.set_flag(leader, "fault_crash_on_leader_request_fraction", 1.0)
        cluster.wait_until(lambda: supervisor.restarts >= 1, what=f"{leader} crashed and restarted",
                           timeout_s=10)
        cluster.wait_for_new_leader(leader, term)
        cluster.wait_until(lambda: cluster.is_running(leader), what="restarted node up", timeout_s=5)
    events = node_events(cluster)
    exit_at = events.index((leader, "exit", INJECTED_CRASH_EXIT))
    assert events[exit_at + 1] == (leader, "restart", INJECTED_CRASH_EXIT)
    assert events[exit_at + 2] == (leader, "start", None)
    assert supervisor.errors == []


def test_observer_and_workload_fill_the_history(cluster: Cluster) -> None:
    cluster.wait_for_leader()
    with Observer(cluster, interval_s=0.05) as observer, \
            Workload(cluster, WorkloadSpec(clients=2, rate_per_s=40)) as workload:
        cluster.wait_until(lambda: workload.stats.ok >= 20 and observer.samples >= 15,
                           what="20 ok ops and 15 samples", timeout_s=20)
    events = cluster.history.events()
    samples = [e for e in events if e["kind"] == "sample"]
    assert {e["node"] for e in samples} == set(cluster.nodes)
    assert all("flags" not in (e["status"] or {}) for e in samples)
    pending: dict[int, dict] = {}
    for e in events:
        if e["kind"] == "invoke":
            assert e["process"] not in pending
            pending[e["process"]] = e
        elif e["kind"] in ("ok", "fail", "info"):
            invoke = pending.pop(e["process"])
            assert (invoke["f"], invoke["key"]) == (e["f"], e["key"])
    assert not pending  # every invoke completed before stop() returned
    writes = [e["value"] for e in events if e["kind"] == "invoke" and e["f"] == "write"]
    assert len(writes) == len(set(writes))


def test_failed_start_stops_everything_and_shows_the_log(runs_root: Path, seed: int) -> None:
    spec = ClusterSpec(node_count=3, seed=seed, node_flags={"n2": {"no_such_flag": 1}},
                       test_name="bad_flag")
    cluster = Cluster(spec, runs_root=runs_root)
    with pytest.raises(SetupError, match="n2 exited with code 2") as info:
        cluster.__enter__()
    assert "no_such_flag" in "\n".join(info.value.node_logs["n2"])
    assert run_processes(cluster.run_id) == []
