"""A Docker run's lifecycle: leftovers of a SIGKILLed pytest are swept at the next start; SIGTERM and Ctrl-C
remove the run's resources (logs saved first); a SIGKILLed node container keeps its acknowledged writes."""

from __future__ import annotations

import queue
import shutil
import signal
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import docker
import pytest

from harness.cluster import Cluster
from harness.docker.daemon import ensure_daemon
from harness.docker.resources import LABEL_RUN_UID, sweep
from harness.nodeclient import Outcome
from harness.spec import BackendName, ClusterSpec

pytestmark = [pytest.mark.docker, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
CHILD_READY_TIMEOUT_S = 120.0  # a cold image build happens in the child on a fresh machine
CHILD_EXIT_TIMEOUT_S = 60.0
WRITES = 200

CHILD_TEST = '''
"""Held by the parent test: start a Docker cluster, add a labelled volume, say READY, block on stdin."""
import sys
from pathlib import Path

import docker

from harness.cluster import Cluster
from harness.docker.resources import Role
from harness.spec import BackendName, ClusterSpec


def test_hold():
    spec = ClusterSpec(node_count=3, backend=BackendName.DOCKER, seed={seed}, test_name="held",
                       run_dir=Path({run_dir!r}), system={system!r})
    with Cluster(spec) as cluster:
        resources = cluster.backend.resources
        client = docker.from_env()
        client.volumes.create(resources.name(Role.VOLUME), labels=resources.labels(Role.VOLUME))
        cluster.wait_for_leader()
        print("READY", resources.uid, flush=True)
        sys.stdin.readline()  # the parent kills us while we wait here
'''



def _default_signals() -> None:
    """The child starts with default dispositions, as from an interactive shell: run as a background
    job (or under nohup) this test process inherits SIGINT/SIGHUP ignored, and the child would keep
    an ignored signal ignored and never see the one the test sends (as tests/integration/test_leaks.py)."""
    for signum in (signal.SIGINT, signal.SIGHUP, signal.SIGTERM):
        signal.signal(signum, signal.SIG_DFL)

class HeldRun:
    """A child ``pytest`` process that holds a 3-node Docker cluster until signalled."""

    def __init__(self, tmp_path: Path, seed: int, system: str = "kuduraft") -> None:
        self.run_dir = tmp_path / "held-run"
        test_file = tmp_path / "child" / "test_held.py"
        test_file.parent.mkdir(parents=True)
        test_file.write_text(textwrap.dedent(CHILD_TEST.format(seed=seed, run_dir=str(self.run_dir), system=system)))
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "pytest", "-q", "-s", "-p", "no:cacheprovider", "--rootdir",
             str(test_file.parent), str(test_file)],
            cwd=REPO, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            preexec_fn=_default_signals,
        )  # fmt: skip
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.output: list[str] = []
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.output.append(line)
            self.lines.put(line)
        self.lines.put(None)

    def wait_ready(self) -> str:
        """The run uid the child announced (fails with the child's output if it never does)."""
        while True:
            try:
                line = self.lines.get(timeout=CHILD_READY_TIMEOUT_S)
            except queue.Empty:
                pytest.fail(f"child not READY in {CHILD_READY_TIMEOUT_S} s:\n{''.join(self.output)}")
            if line is None:
                pytest.fail(f"child exited before READY:\n{''.join(self.output)}")
            if line.startswith("READY "):
                return line.split()[1]

    def signal(self, signum: int) -> int:
        self.proc.send_signal(signum)
        try:
            return self.proc.wait(CHILD_EXIT_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            pytest.fail(f"child ignored signal {signum}:\n{''.join(self.output)}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture
def held(tmp_path: Path, seed: int) -> Iterator[HeldRun]:
    run = HeldRun(tmp_path, seed)
    yield run
    run.stop()


@pytest.fixture(scope="module")
def client() -> Iterator[docker.DockerClient]:
    client = ensure_daemon(None)
    yield client
    client.close()


def leftovers(client: docker.DockerClient, uid: str) -> dict[str, list[str]]:
    selector = {"label": f"{LABEL_RUN_UID}={uid}"}
    return {
        "containers": sorted(c.name for c in client.containers.list(all=True, filters=selector)),
        "networks": sorted(n.name for n in client.networks.list(filters=selector)),
        "volumes": sorted(v.name for v in client.volumes.list(filters=selector)),
    }


def test_next_start_sweeps_what_a_sigkilled_pytest_left(
    held: HeldRun, client: docker.DockerClient, tmp_path: Path, seed: int
) -> None:
    uid = held.wait_ready()
    assert held.signal(signal.SIGKILL) == -signal.SIGKILL
    left = leftovers(client, uid)
    # 3 nodes + 3 sandboxes + Toxiproxy, the run network, the volume: nothing cleaned them up.
    assert (len(left["containers"]), len(left["networks"]), len(left["volumes"])) == (7, 1, 1), left
    spec = ClusterSpec(node_count=1, backend=BackendName.DOCKER, seed=seed, test_name="next-start",
                       run_dir=tmp_path / "next-run")  # fmt: skip
    with Cluster(spec):
        assert leftovers(client, uid) == {"containers": [], "networks": [], "volumes": []}
    saved = list((held.run_dir / "docker").glob("*-toxiproxy.log"))
    assert saved, "the sweep saves each container's log into its run directory before removing it"


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "ctrl-c"])
def test_signal_removes_the_runs_resources(held: HeldRun, client: docker.DockerClient, signum: int) -> None:
    uid = held.wait_ready()
    assert leftovers(client, uid)["containers"], "the child's cluster should be up"
    code = held.signal(signum)
    assert code != -signal.SIGKILL, "".join(held.output)
    left = leftovers(client, uid)
    assert (left["containers"], left["networks"]) == ([], []), "".join(held.output)
    assert (held.run_dir / "toxiproxy.log").read_text().strip(), "Toxiproxy's log is saved before removal"
    assert all((held.run_dir / "nodes" / f"n{i}.log").is_file() for i in (1, 2, 3))
    for volume in left["volumes"]:  # the child's extra volume: not the backend's to remove
        client.volumes.get(volume).remove()


@pytest.mark.skipif(shutil.which("etcd") is None, reason="etcd not installed (Debian's etcd-server, `make etcd-setup`)")
def test_etcd_runs_source_networks_go_on_ctrl_c_and_with_the_sweep_after_sigkill(
        client: docker.DockerClient, tmp_path: Path, seed: int) -> None:
    """etcd on Docker adds one network per member (the by-name proxies): Ctrl-C removes them with
    the run, and after a SIGKILLed run the label sweep does."""
    interrupted = HeldRun(tmp_path / "int", seed, system="etcd")
    try:
        uid = interrupted.wait_ready()
        assert len(leftovers(client, uid)["networks"]) == 4  # the run network + one per member
        assert interrupted.signal(signal.SIGINT) != -signal.SIGKILL, "".join(interrupted.output)
        left = leftovers(client, uid)
        assert (left["containers"], left["networks"]) == ([], []), "".join(interrupted.output)
        for volume in left["volumes"]:
            client.volumes.get(volume).remove()
    finally:
        interrupted.stop()
    killed = HeldRun(tmp_path / "kill", seed, system="etcd")
    try:
        uid = killed.wait_ready()
        assert killed.signal(signal.SIGKILL) == -signal.SIGKILL
        assert len(leftovers(client, uid)["networks"]) == 4
        report = sweep(client)  # what the next Docker start does first
        assert report.errors == [] and leftovers(client, uid) == {"containers": [], "networks": [], "volumes": []}
    finally:
        killed.stop()


def _write_all(cluster: Cluster, leader: str, count: int) -> dict[str, str]:
    client = cluster.node(leader)

    def put(index: int) -> tuple[str, str, Outcome]:
        key, value = f"k{index:04d}", f"v{index}"
        return key, value, client.put(key, value, timeout_s=5.0).outcome

    with ThreadPoolExecutor(max_workers=8) as pool:
        return {key: value for key, value, outcome in pool.map(put, range(count)) if outcome is Outcome.OK}


def test_sigkilled_node_containers_keep_acknowledged_writes(tmp_path: Path, seed: int) -> None:
    spec = ClusterSpec(node_count=3, backend=BackendName.DOCKER, seed=seed, test_name="durable",
                       run_dir=tmp_path / "run")  # fmt: skip
    with Cluster(spec) as cluster:
        leader = cluster.wait_for_leader()
        acked = _write_all(cluster, leader, WRITES)
        assert len(acked) == WRITES, f"only {len(acked)} of {WRITES} writes acknowledged"
        committed = int(cluster.status(leader)["commit_index"])
        before = {n: cluster.backend.container_id(n) for n in cluster.nodes}  # type: ignore[attr-defined]
        for node_id in cluster.nodes:  # every copy now lives only in the containers' data directories
            assert cluster.kill(node_id) == -signal.SIGKILL
        for node_id in cluster.nodes:
            cluster.start(node_id)
        cluster.wait_healthy()
        after = {n: cluster.backend.container_id(n) for n in cluster.nodes}  # type: ignore[attr-defined]
        assert all(after[n] != before[n] for n in cluster.nodes), "each node runs in a new container"
        durable = [n for n in cluster.nodes if int(cluster.status(n)["last_index"]) >= committed]
        assert len(durable) >= 2, f"a majority must have kept index {committed} on disk"
        new_leader = cluster.wait_for_leader()
        reader = cluster.node(new_leader)

        def read(key: str) -> tuple[str, object]:
            result = reader.get(key, timeout_s=5.0)
            assert result.outcome is Outcome.OK, f"read of {key} failed: {result}"
            return key, result.body.get("value")

        with ThreadPoolExecutor(max_workers=8) as pool:
            seen = dict(pool.map(read, sorted(acked)))
        lost = {k: v for k, v in acked.items() if seen.get(k) != v}
        assert not lost, f"{len(lost)} acknowledged writes lost, e.g. {sorted(lost)[:5]}"
