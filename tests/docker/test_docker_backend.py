"""The Docker backend end to end: a 3-node cluster in containers behind Toxiproxy, process control and exit codes."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from tenacity import Retrying, retry_if_exception_type, stop_after_delay, wait_fixed

from harness.cluster import Cluster
from harness.docker.backend import DockerBackend
from harness.docker.daemon import ensure_daemon
from harness.docker.resources import LABEL_RUN_UID
from harness.errors import NodeUnreachable
from harness.spec import BackendName, ClusterSpec

pytestmark = [pytest.mark.docker, pytest.mark.slow]


def _eventually(check: object, timeout_s: float = 15.0) -> None:
    for attempt in Retrying(stop=stop_after_delay(timeout_s), wait=wait_fixed(0.1),
                            retry=retry_if_exception_type((AssertionError, NodeUnreachable)), reraise=True):  # fmt: skip
        with attempt:
            check()  # type: ignore[operator]


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    spec = ClusterSpec(node_count=3, backend=BackendName.DOCKER, test_name="docker-backend", seed=7,
                       run_dir=tmp_path / "run")  # fmt: skip
    started = time.monotonic()
    with Cluster(spec) as cluster:
        print(f"\n[timing] docker cluster of 3 healthy in {time.monotonic() - started:.2f} s")
        assert isinstance(cluster.backend, DockerBackend)
        backend_uid = cluster.backend.run_uid
        yield cluster
    client = ensure_daemon(None)
    uid = f"{LABEL_RUN_UID}={backend_uid}"
    assert client.containers.list(all=True, filters={"label": uid}) == []
    assert client.networks.list(filters={"label": uid}) == []


def test_cluster_serves_through_toxiproxy(cluster: Cluster) -> None:
    assert isinstance(cluster.backend, DockerBackend)
    leader = cluster.wait_for_leader()
    assert cluster.node(leader).put("k", "v").outcome.name == "OK"
    # The client link of the leader really is the only way in for KV: disable it and the call fails.
    cluster.client_link(leader).disable()
    assert cluster.node(leader).put("k", "w", timeout_s=1.0).outcome.name != "OK"
    cluster.reset_links()
    # Cut every outbound link of the leader: the followers stop hearing it and elect another.
    term = cluster.term()
    for peer in cluster.nodes:
        if peer != leader:
            cluster.link(leader, peer).disable()
    assert cluster.wait_for_new_leader(leader, term) != leader
    cluster.reset_links()


def test_kill_restart_keeps_the_log(cluster: Cluster) -> None:
    leader = cluster.wait_for_leader()
    for i in range(5):
        assert cluster.node(leader).put(f"k{i}", i).outcome.name == "OK"
    victim = next(n for n in cluster.nodes if n != leader)
    before = cluster.status(victim)["last_index"]
    assert cluster.kill(victim) == -9
    assert not cluster.is_running(victim)
    cluster.start(victim)
    _eventually(lambda: _assert(cluster.status(victim)["last_index"] >= before))
    assert "incarnation 2" in Path(cluster.log_path(victim)).read_text()


def test_terminate_is_clean_and_pause_freezes(cluster: Cluster) -> None:
    leader = cluster.wait_for_leader()
    follower = next(n for n in cluster.nodes if n != leader)
    cluster.pause(follower)
    assert cluster.is_paused(follower) and cluster.is_running(follower)
    with pytest.raises(Exception):  # noqa: B017 - a frozen node answers nothing (NodeUnreachable)
        cluster.status(follower)
    cluster.resume(follower)
    _eventually(lambda: _assert(cluster.status(follower)["role"] == "FOLLOWER"))
    assert cluster.terminate(follower, timeout_s=5.0) == 0
    cluster.start(follower)
    cluster.pause(follower)
    started = time.monotonic()
    assert cluster.kill(follower) == -9  # SIGKILL reaches a paused container too
    assert time.monotonic() - started < 5.0


def test_injected_crash_exits_85(cluster: Cluster) -> None:
    leader = cluster.wait_for_leader()
    cluster.set_flag(leader, "fault_crash_on_leader_request_fraction", 1.0)
    cluster.node(leader).put("crash", 1, timeout_s=1.0)
    _eventually(lambda: _assert(cluster.backend.exit_code(leader) == 85))
    assert (leader, 85) in cluster.reap() or not cluster.is_running(leader)


def _assert(condition: bool) -> None:
    assert condition
