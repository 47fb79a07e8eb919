"""etcd 3.4 on the Docker backend (issue #13): per-directed-link proxies through per-container name
resolution. Each member advertises ``http://<node id>:<port>``; inside member a's container that
name resolves to Toxiproxy's address on a's own network, so a's connections to b cross ``a->b``
only. Skipped (with the reason) where etcd is not installed or no Docker daemon answers."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from tenacity import Retrying, retry_if_exception_type, stop_after_delay, wait_fixed

from harness.cluster import Cluster
from harness.docker.backend import DockerBackend
from harness.docker.daemon import ensure_daemon
from harness.docker.resources import LABEL_RUN_UID, Role
from harness.errors import NodeUnreachable
from harness.nodeclient import Outcome
from harness.spec import BackendName, ClusterSpec
from harness.systems.base import Capability

pytestmark = [pytest.mark.docker, pytest.mark.slow,
              pytest.mark.skipif(shutil.which("etcd") is None,
                                 reason="etcd not installed (Debian's etcd-server, `make etcd-setup`)")]

# etcd's election timeout is 10 heartbeats (harness.systems.registry); leaders are waited for far
# longer than that, as the suites do: a loaded 2-core machine, no etcd timing asserted.
LEADER_TIMEOUT_S = 60.0


@pytest.fixture
def cluster(tmp_path: Path, seed: int) -> Iterator[Cluster]:
    spec = ClusterSpec(node_count=3, backend=BackendName.DOCKER, system="etcd", test_name="docker-etcd",
                       seed=seed, run_dir=tmp_path / "run")
    with Cluster(spec) as cluster:
        assert isinstance(cluster.backend, DockerBackend)
        uid = cluster.backend.run_uid
        yield cluster
    client = ensure_daemon(None)
    assert client.containers.list(all=True, filters={"label": f"{LABEL_RUN_UID}={uid}"}) == []
    assert client.networks.list(filters={"label": f"{LABEL_RUN_UID}={uid}"}) == []


def _resolve(backend: DockerBackend, node: str, name: str) -> str:
    """What ``name`` resolves to inside ``node``'s container (its sandbox's /etc/hosts)."""
    assert backend.resources is not None
    client = ensure_daemon(None)
    container = client.containers.get(backend.resources.name(Role.SANDBOX, node))
    code, out = container.exec_run(["getent", "hosts", name])
    assert code == 0, f"{name} does not resolve in {node}: {out!r}"
    return out.decode().split()[0]


def test_every_member_resolves_each_peer_to_its_own_proxy(cluster: Cluster) -> None:
    backend = cluster.backend
    assert isinstance(backend, DockerBackend)
    assert cluster.has(Capability.PER_DIRECTED_LINK_PROXIES) and not cluster.has(Capability.INGRESS_PROXIES)
    leader = cluster.wait_for_leader(LEADER_TIMEOUT_S)
    assert cluster.node(leader).put("k", "v").outcome is Outcome.OK
    # The run network and one source network per member, all labelled (swept with the run).
    networks = ensure_daemon(None).networks.list(filters={"label": f"{LABEL_RUN_UID}={backend.run_uid}"})
    assert len(networks) == 1 + len(cluster.nodes)
    for a in cluster.nodes:
        for b in cluster.nodes:
            if a != b:
                host, port = cluster.link(a, b).info().listen.rsplit(":", 1)
                assert _resolve(backend, a, b) == host  # b's name, seen from a: a's proxy to b
                assert backend.topology.peer_address(b) == f"{b}:{port}"


def test_cutting_the_leader_off_from_both_followers_deposes_it(cluster: Cluster) -> None:
    """A cut that bites: both directions of the leader's four links (etcd's rafthttp dials from
    both ends) leave the followers a majority that elects one of them in a higher term; the
    followers' link to each other is untouched. Then the heal brings the old leader back as a
    follower of the new one, and the write made meanwhile reads back through it."""
    leader = cluster.wait_for_leader(LEADER_TIMEOUT_S)
    term = cluster.term()
    followers = [n for n in cluster.nodes if n != leader]
    cut = [cluster.link(a, b) for a in cluster.nodes for b in cluster.nodes if a != b and leader in (a, b)]
    for link in cut:
        link.disable()
    assert cluster.link(followers[0], followers[1]).enabled and cluster.link(followers[1], followers[0]).enabled
    new = cluster.wait_for_new_leader(leader, term, timeout_s=LEADER_TIMEOUT_S)
    assert new in followers
    assert cluster.node(new).put("after-cut", "1", timeout_s=10.0).outcome is Outcome.OK
    cluster.reset_links()
    for attempt in Retrying(stop=stop_after_delay(LEADER_TIMEOUT_S), wait=wait_fixed(0.2), reraise=True,
                            retry=retry_if_exception_type((AssertionError, NodeUnreachable))):
        with attempt:
            status = cluster.status(leader)
            assert status["role"] == "FOLLOWER" and status["leader"] is not None
    read = cluster.node(leader).get("after-cut", timeout_s=10.0)
    assert read.outcome is Outcome.OK and read.body.get("value") == "1"


def test_a_killed_member_restarts_from_its_data_and_catches_up(cluster: Cluster) -> None:
    """KILL on Docker: SIGKILL is reported as -9, the member restarts in a new container on the
    same data directory and address (its sandbox keeps IP and resolver) and applies what the
    others committed while it was down."""
    leader = cluster.wait_for_leader(LEADER_TIMEOUT_S)
    victim = next(n for n in cluster.nodes if n != leader)
    assert cluster.kill(victim) == -9
    assert cluster.node(leader).put("while-down", "1", timeout_s=10.0).outcome is Outcome.OK
    target = cluster.status(leader)["commit_index"]
    cluster.start(victim)
    cluster.wait_until(lambda: int(cluster.status(victim).get("applied_index", -1)) >= target,
                       f"{victim} applied index {target}", LEADER_TIMEOUT_S)
    assert "incarnation 2" in Path(cluster.log_path(victim)).read_text()
