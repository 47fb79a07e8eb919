"""The System seam wired into the harness (issue #13): ``--system``, the ``requires`` /
``kuduraft_only`` markers, the spec's and run.json's system, the generic node handle, the
observation's status document, and a LocalBackend that lays out and launches etcd from its System.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from harness import local
from harness.cluster import Cluster, make_backend
from harness.errors import ConfigError, FaultUnavailable, NodeUnreachable
from harness.history import History
from harness.nodeclient import KvResult, Outcome
from harness.runinfo import RunRecord
from harness.spec import BackendName, ClusterSpec
from harness.store import RunDir
from harness.systems.base import Capability, NodeApi, NodeObservation, Role
from harness.systems.etcd import EtcdSystem
from harness.systems.handle import NodeHandle
from harness.systems.kuduraft import KuduraftSystem, NodeClient
from harness.systems.requirements import capabilities_of, requirement_skip
from harness.systems.topology import MemberAddresses, ProxyShape, plan_topology, proxy_names

REPO = Path(__file__).resolve().parents[2]
ETCD = EtcdSystem(binary=Path("/bin/true"))  # capabilities and launch specs need no real etcd


# ---- markers: what a test needs, and the reason it skips ----------------------------------------

def test_requires_takes_capabilities_or_their_names_and_names_a_bad_one() -> None:
    assert capabilities_of([Capability.KILL, "pause"]) == [Capability.KILL, Capability.PAUSE]
    with pytest.raises(ConfigError, match=r"requires: 'teleport' is not a capability \(choose from runtime_flags, "):
        capabilities_of(["teleport"])
    with pytest.raises(ConfigError, match="requires: 3 is not a capability"):
        capabilities_of([3])


def test_a_system_with_every_capability_runs_the_test() -> None:
    kudu = KuduraftSystem(ClusterSpec())
    assert requirement_skip(kudu, "local", [Capability.NODE_TRACE, Capability.PER_DIRECTED_LINK_PROXIES]) is None
    assert requirement_skip(kudu, "local", [], kuduraft_only=True) is None
    assert requirement_skip(ETCD, "local", [Capability.KILL, Capability.PAUSE]) is None


def test_etcd_skips_what_it_lacks_and_kuduraft_only_tests_with_the_reason() -> None:
    assert requirement_skip(ETCD, "local", [Capability.PER_DIRECTED_LINK_PROXIES]) == (
        "etcd on the local backend lacks the capability this test needs: per_directed_link_proxies")
    only = requirement_skip(ETCD, "local", [Capability.KILL], kuduraft_only=True)
    assert only is not None and only.startswith("kuduraft_only: checks kuduraft's own behaviour")
    assert only.endswith("(running etcd)")
    assert requirement_skip(ETCD, "local", [], True, "B34: no check-quorum") == (
        "kuduraft_only: B34: no check-quorum (running etcd)")


TINY = '''
import pytest
from harness.systems.base import Capability


@pytest.mark.requires(Capability.KILL, Capability.PAUSE)
def test_process():
    pass


@pytest.mark.requires(Capability.PER_DIRECTED_LINK_PROXIES)
def test_links():
    pass


@pytest.mark.kuduraft_only(reason="B34")
def test_kuduraft():
    pass
'''


def _pytest(tmp_path: Path, *args: str, body: str = TINY) -> subprocess.CompletedProcess[str]:
    (tmp_path / "test_tiny.py").write_text(body)
    return subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "-rs", *args,
                           "test_tiny.py"], cwd=tmp_path, env=dict(os.environ, PYTHONPATH=str(REPO)),
                          capture_output=True, text=True, timeout=120)


def test_the_system_option_selects_what_runs_and_says_why_the_rest_skips(tmp_path: Path) -> None:
    kudu = _pytest(tmp_path)
    assert kudu.returncode == 0 and "3 passed" in kudu.stdout, kudu.stdout + kudu.stderr
    etcd = _pytest(tmp_path, "--system", "etcd")
    assert etcd.returncode == 0 and "1 passed, 2 skipped" in etcd.stdout, etcd.stdout + etcd.stderr
    assert "etcd on the local backend lacks the capability this test needs: per_directed_link_proxies" in etcd.stdout
    assert "kuduraft_only: B34 (running etcd)" in etcd.stdout


def test_an_unknown_system_is_one_usage_error_listing_the_systems(tmp_path: Path) -> None:
    proc = _pytest(tmp_path, "--system", "zookeeper")
    assert proc.returncode == 4, proc.stdout + proc.stderr
    assert "ERROR: --system zookeeper: unknown system (choose from etcd, kuduraft)" in proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout and "passed" not in proc.stdout


def test_a_requires_marker_with_no_capability_is_a_usage_error_naming_the_test(tmp_path: Path) -> None:
    body = "import pytest\n\n\n@pytest.mark.requires('teleport')\ndef test_x():\n    pass\n"
    proc = _pytest(tmp_path, body=body)
    assert proc.returncode == 4, proc.stdout + proc.stderr
    assert "test_tiny.py::test_x: requires: 'teleport' is not a capability" in proc.stderr


# ---- the spec and run.json name the system ---------------------------------------------------------

def test_the_spec_records_its_system_and_an_older_spec_is_kuduraft() -> None:
    spec = ClusterSpec(system="etcd", seed=4)
    assert spec.to_dict()["system"] == "etcd" and ClusterSpec.from_dict(spec.to_dict()) == spec
    old = ClusterSpec().to_dict()
    del old["system"]
    assert ClusterSpec.from_dict(old).system == "kuduraft"
    assert "system=etcd" in str(spec) and "system=" not in str(ClusterSpec())
    with pytest.raises(ConfigError, match="system must be a system name"):
        ClusterSpec(system="../etcd")


class _Cluster:
    def __init__(self, tmp_path: Path) -> None:
        self.spec = ClusterSpec(seed=2, run_dir=tmp_path, test_name="t", system="etcd")
        self.run = RunDir(tmp_path)
        self.history = History(tmp_path / "events.jsonl", clock=lambda: 0.0)


def test_run_json_names_the_system(tmp_path: Path) -> None:
    cluster = _Cluster(tmp_path)
    doc = json.loads(RunRecord.of(cluster).write(cluster).read_text())  # type: ignore[arg-type]
    assert doc["system"] == "etcd" and doc["cluster"]["system"] == "etcd"


# ---- what a Cluster hands out for a node ----------------------------------------------------------

def _obs(**kw: Any) -> NodeObservation:
    base: dict[str, Any] = {"node_id": "n1", "role": Role.FOLLOWER, "term": 3, "leader": "n2", "commit_index": 9,
                            "applied_index": 8, "members": ("n1", "n2", "n3"),
                            "raw": {"raftTerm": "3", "leader": "1234"}}
    return NodeObservation(**{**base, **kw})


def test_the_status_document_speaks_the_harness_vocabulary_over_the_systems_own() -> None:
    doc = _obs().status_document()
    assert doc == {"raftTerm": "3", "leader": "n2", "role": "FOLLOWER", "term": 3, "commit_index": 9,
                   "applied_index": 8}
    unknown = _obs(role=Role.UNKNOWN, leader=None, applied_index=None).status_document()
    assert unknown["leader"] is None and "applied_index" not in unknown  # a wait reads "not yet"


def test_kuduraft_status_is_its_own_document_unchanged() -> None:
    from harness.systems.kuduraft import observation
    status = {"uuid": "n1", "role": "LEADER", "term": 4, "leader": "n1", "commit_index": 8, "applied_index": 7,
              "peers": {}, "step_downs": 0}
    assert observation("n1", status, ("n1",)).status_document() == status


class _Observer:
    def __init__(self, obs: NodeObservation | None) -> None:
        self.obs = obs

    def observe(self) -> NodeObservation:
        if self.obs is None:
            raise NodeUnreachable("n1 POST /v3/maintenance/status: refused", "refused")
        return self.obs


class _Kv:
    def __init__(self) -> None:
        self.calls: list[tuple[Any, ...]] = []

    def _ok(self, *call: Any) -> KvResult:
        self.calls.append(call)
        return KvResult(Outcome.OK, 0.0, {"value": call[-1]})

    def get(self, key: str, timeout_s: float | None = None) -> KvResult:
        return self._ok("get", key, None)

    def put(self, key: str, value: Any, timeout_s: float | None = None) -> KvResult:
        return self._ok("put", key, value)

    def cas(self, key: str, expected: Any, new: Any, timeout_s: float | None = None) -> KvResult:
        return self._ok("cas", key, expected, new)


def test_the_handle_serves_kv_and_state_and_refuses_kuduraft_only_calls_as_unavailable() -> None:
    kv = _Kv()
    handle = NodeHandle("n1", "etcd", _Observer(_obs()), kv)
    assert handle.put("k", 1).outcome is Outcome.OK and handle.cas("k", 1, 2).body == {"value": 2}
    assert handle.get("k").outcome is Outcome.OK and [c[0] for c in kv.calls] == ["put", "cas", "get"]
    appended = handle.append("k", "x")  # this KV client has no append: definitely not executed
    assert appended.outcome is Outcome.FAIL and appended.error == "etcd has no append"
    assert handle.status()["term"] == 3 and handle.health() is True
    assert handle.flags() == {}  # no runtime flags: nothing for the final heal to restore
    for call in (lambda: handle.events(0), lambda: handle.set_flag("x", 1), handle.step_down):
        with pytest.raises(FaultUnavailable, match="etcd lacks the capability"):
            call()
    with pytest.raises(NodeUnreachable):
        NodeHandle("n1", "etcd", _Observer(None), kv).health()


def test_both_node_clients_are_what_cluster_node_hands_out() -> None:
    """``Cluster.node`` is typed by the ``NodeApi`` protocol: kuduraft's client and the handle of
    any other system both satisfy it, at run time and (the annotated assignments) for mypy."""
    kuduraft: NodeApi = KuduraftSystem(ClusterSpec()).node_client("n1", "http://127.0.0.1:1", "http://127.0.0.1:2")
    handle: NodeApi = NodeHandle("n1", "etcd", _Observer(_obs()), _Kv())
    assert isinstance(kuduraft, NodeClient) and isinstance(kuduraft, NodeApi)
    assert isinstance(handle, NodeApi)
    assert not isinstance(_Kv(), NodeApi)  # a bare KV client is not a node: no status, no health


class _IngressBackend:
    """Just what ``Cluster.cut_unavailable``/``link`` read: etcd's local-backend topology."""

    name = "local"
    system = ETCD

    def __init__(self, nodes: tuple[str, ...]) -> None:
        listen = {n: MemberAddresses(f"127.0.0.1:{8000 + i}", f"127.0.0.1:{7000 + i}") for i, n in enumerate(nodes)}
        names = proxy_names(nodes, ProxyShape.INGRESS_PER_DESTINATION)
        self.topology = plan_topology(nodes, ProxyShape.INGRESS_PER_DESTINATION, listen,
                                      {name: f"127.0.0.1:{9000 + i}" for i, name in enumerate(names)})


def test_the_cluster_says_which_cuts_its_proxies_express_before_any_link_is_touched() -> None:
    """What a fault's availability check asks (``faults.links.cut_unavailable``) and what
    ``Cluster.link`` refuses with are one answer, the topology's, naming system and backend."""
    spec = ClusterSpec(system="etcd")
    cluster = Cluster(spec, backend=_IngressBackend(spec.nodes))  # type: ignore[arg-type]
    reason = cluster.cut_unavailable([("n1", "n2")])
    assert reason is not None and reason.startswith("etcd on the local backend: ingress_per_destination topology")
    assert "would also cut n3->n2" in reason
    with pytest.raises(FaultUnavailable) as err:
        cluster.link("n1", "n2")
    assert reason in str(err.value)
    assert cluster.cut_unavailable([("n1", "n2"), ("n3", "n2")]) is None  # all of peers->n2: expressible


# ---- backends -------------------------------------------------------------------------------------

def test_docker_gets_the_system_it_runs() -> None:
    """Both systems run on Docker now (issue #13): the backend is built for the spec's system
    (nothing starts before ``prepare``)."""
    from harness.docker.backend import DockerBackend

    for name in ("etcd", "kuduraft"):
        backend = make_backend(ClusterSpec(system=name, backend=BackendName.DOCKER))
        assert isinstance(backend, DockerBackend) and backend.system is not None and backend.system.name == name


def test_an_unknown_system_in_a_spec_is_one_config_error() -> None:
    with pytest.raises(ConfigError, match=r"unknown system 'zookeeper' \(choose from etcd, kuduraft\)"):
        make_backend(ClusterSpec(system="zookeeper"))


class _Proc:
    pid = 424242

    def poll(self) -> int:
        return 0


class _Nothing:
    pid = None
    api_url = "http://127.0.0.1:1"

    def __init__(self, *args: Any, **kwargs: Any) -> None: ...

    def start(self) -> None: ...

    def stop(self) -> None: ...

    def add(self, pids: Any) -> None: ...

    def remove(self) -> None: ...


def test_the_local_backend_lays_out_ingress_proxies_and_launches_etcd_from_its_system(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    launched: list[dict[str, Any]] = []
    monkeypatch.setattr(local, "ToxiproxyServer", _Nothing)
    monkeypatch.setattr(local, "Registry", _Nothing)
    monkeypatch.setattr(local, "free_ports", lambda count: list(range(24000, 24000 + count)))
    monkeypatch.setattr(subprocess, "Popen", lambda argv, **kw: launched.append({"argv": argv, **kw}) or _Proc())
    spec = ClusterSpec(system="etcd", seed=1)
    backend = local.LocalBackend(sweep=False, system=ETCD)
    backend.prepare(spec, RunDir(tmp_path / "run"))
    assert [p.name for p in backend.proxy_configs()] == [
        "peers->n1", "peers->n2", "peers->n3", "client->n1", "client->n2", "client->n3"]
    backend.start("n2")
    argv = launched[0]["argv"]
    assert argv[0] == "/bin/true" and argv[argv.index("--name") + 1] == "n2"
    assert argv[argv.index("--listen-peer-urls") + 1] == "http://127.0.0.1:24002"  # its own peer port
    assert argv[argv.index("--initial-advertise-peer-urls") + 1] == "http://127.0.0.1:24007"  # peers->n2
    assert backend.node_http_url("n2") == "http://127.0.0.1:24003"
    assert backend.client_url("n2") == "http://127.0.0.1:24010"
    assert launched[0]["env"]["RAFTCHAOS_RUN"] == "run"
    assert not backend.topology.cut([("n1", "n2")]).available
