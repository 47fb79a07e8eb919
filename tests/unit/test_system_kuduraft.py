"""harness/systems/kuduraft: the adapter launches what LocalBackend launches today, and maps /status."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from harness import local
from harness.spec import ClusterSpec
from harness.store import RunDir
from harness.systems.base import AppendKvClient, Capability, KvClient, LaunchContext, Observer, Role, System
from harness.systems.kuduraft import KuduraftSystem, NodeClient, observation
from harness.systems.topology import MemberAddresses, ProxyShape, plan_topology, proxy_names


class _FakeServer:
    pid = None
    api_url = "http://127.0.0.1:1"

    def __init__(self, *args: Any, **kwargs: Any) -> None: ...

    def start(self) -> None: ...

    def stop(self) -> None: ...


class _FakeRegistry:
    def __init__(self, *args: Any) -> None: ...

    def add(self, pids: Any) -> None: ...

    def remove(self) -> None: ...


class _Proc:
    pid = 424242

    def poll(self) -> int:
        return 0


def _backend_today(spec: ClusterSpec, run: RunDir, ports: list[int], monkeypatch: pytest.MonkeyPatch
                   ) -> tuple[local.LocalBackend, list[dict[str, Any]]]:
    """A LocalBackend prepared and started with no process, server or port probe: what it would run."""
    launched: list[dict[str, Any]] = []

    def popen(argv: list[str], **kwargs: Any) -> _Proc:
        launched.append({"argv": argv, **kwargs})
        return _Proc()

    monkeypatch.setattr(local, "ToxiproxyServer", _FakeServer)
    monkeypatch.setattr(local, "Registry", _FakeRegistry)
    monkeypatch.setattr(local, "free_ports", lambda count: ports[:count])
    monkeypatch.setattr(subprocess, "Popen", popen)
    backend = local.LocalBackend(sweep=False)
    backend.prepare(spec, run)
    for node_id in spec.nodes:
        backend.start(node_id)
    return backend, launched


@pytest.mark.parametrize("topology", [{}, {"n3": "n2"}])
def test_launch_spec_equals_what_the_local_backend_builds_today(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, topology: dict[str, str]) -> None:
    spec = ClusterSpec(node_count=3, seed=7, flags={"follower_unavailable_considered_failed_sec": 300},
                       node_flags={"n2": {"raft_enable_pre_election": False}}, topology=topology)
    run = RunDir(tmp_path / "run-1")
    ports = list(range(23000, 23100))
    backend, launched = _backend_today(spec, run, ports, monkeypatch)
    today_file = json.loads(run.cluster_file.read_text())

    # The same ports, handed out in the backend's order, through the seam's pure topology.
    it = iter(ports)
    listen = {}
    for n in spec.nodes:
        rpc, http = next(it), next(it)
        listen[n] = MemberAddresses(api=f"127.0.0.1:{http}", peer=f"127.0.0.1:{rpc}")
    proxy_listen = {name: f"127.0.0.1:{next(it)}" for name in proxy_names(spec.nodes, ProxyShape.PER_DIRECTED_LINK)}
    topo = plan_topology(spec.nodes, ProxyShape.PER_DIRECTED_LINK, listen, proxy_listen)
    assert topo.proxy_configs() == backend.proxy_configs()

    system = KuduraftSystem(spec)
    for node_id, today in zip(spec.nodes, launched, strict=True):
        ctx = LaunchContext(run_id=run.run_id, node_id=node_id, incarnation=1, data_dir=run.node_data(node_id),
                            run_path=run.path, listen=listen, topology=topo)
        launch = system.launch_spec(ctx)
        assert list(launch.argv) == today["argv"]
        assert launch.cwd == today["cwd"]
        for name, value in launch.env.items():
            assert today["env"][name] == value
        assert launch.listen == listen[node_id]
        assert json.loads(launch.files[run.cluster_file]) == today_file
        assert f"http://{launch.listen.api}" == backend.node_http_url(node_id)
        assert f"http://{topo.client[node_id]}" == backend.client_url(node_id)


def test_second_incarnation_gets_the_backends_seed() -> None:
    spec = ClusterSpec(node_count=1, seed=3)
    listen = {"n1": MemberAddresses("127.0.0.1:1", "127.0.0.1:2")}
    topo = plan_topology(("n1",), ProxyShape.PER_DIRECTED_LINK, listen, {"client->n1": "127.0.0.1:3"})
    ctx = LaunchContext("r", "n1", 2, Path("/d"), Path("/r"), listen, topo)
    argv = KuduraftSystem(spec).launch_spec(ctx).argv
    assert argv[argv.index("--seed") + 1] == str(spec.node_seed("n1", 2))


STATUS = {
    "uuid": "n1", "role": "LEADER", "term": 4, "voted_for": "n1", "leader": "n1", "last_index": 9,
    "commit_index": 8, "applied_index": 7, "peers": {
        "n2": {"failed_attempts": 2, "request_pending": True, "counters": {"requests_sent": 11,
                                                                           "responses_ok": 9, "responses_error": 2}},
    },
}


def test_status_maps_to_an_observation_with_per_peer_evidence() -> None:
    obs = observation("n1", STATUS, ("n1", "n2", "n3"))
    assert (obs.role, obs.term, obs.leader, obs.commit_index, obs.applied_index) == (Role.LEADER, 4, "n1", 8, 7)
    assert obs.is_leader and obs.members == ("n1", "n2", "n3") and obs.raw["last_index"] == 9
    assert obs.peers is not None
    peer = obs.peers["n2"]
    assert (peer.requests_sent, peer.responses_ok, peer.responses_error, peer.failed_attempts,
            peer.request_pending) == (11, 9, 2, 2, True)


def test_a_follower_reports_no_peer_evidence_and_a_null_leader() -> None:
    obs = observation("n2", {"role": "FOLLOWER", "term": 1, "leader": None, "peers": {}}, ("n1", "n2"))
    assert obs.role is Role.FOLLOWER and obs.leader is None and obs.peers is None


def test_unreadable_status_is_one_line_naming_the_node() -> None:
    from harness.errors import HarnessError
    with pytest.raises(HarnessError, match="n1 /status: unreadable") as err:
        observation("n1", {"role": "LEADER"}, ("n1",))
    assert "\n" not in str(err.value)


def test_adapter_satisfies_the_protocols_and_has_every_capability() -> None:
    system = KuduraftSystem(ClusterSpec())
    assert isinstance(system, System)
    assert isinstance(system.observer("n1", "http://127.0.0.1:1"), Observer)
    client = system.kv_client("n1", "http://127.0.0.1:9")
    assert isinstance(client, KvClient) and isinstance(client, AppendKvClient) and isinstance(client, NodeClient)
    assert client.kv_url == "http://127.0.0.1:9"
    for backend in ("local", "docker"):
        assert set(system.capabilities(backend)) == set(Capability) - {Capability.INGRESS_PROXIES}
        assert system.proxy_shape(backend) is ProxyShape.PER_DIRECTED_LINK
    assert system.fault_exit_statuses()[85].startswith("injected crash")
