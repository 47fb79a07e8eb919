"""harness/docker/launch.py and images.py's host-binary context: a System's LaunchSpec as a container."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from harness.backend import links_of
from harness.docker.images import host_binary_context
from harness.docker.launch import ENTRYPOINT, container_launch
from harness.docker.network import proxy_layout
from harness.errors import SetupError
from harness.spec import ClusterSpec
from harness.store import RunDir
from harness.systems.base import Image, LaunchContext, LaunchSpec, MemberAddresses
from harness.systems.kuduraft import KuduraftSystem
from harness.systems.topology import ProxyShape, plan_topology, proxy_names

NODES = ("n1", "n2", "n3")


def _docker_ctx(run: RunDir, node_id: str, incarnation: int = 1) -> LaunchContext:
    """What DockerBackend.start hands the system: container IPs, one proxy port each on Toxiproxy."""
    listen = {n: MemberAddresses(api=f"10.5.0.{i}:8000", peer=f"10.5.0.{i}:7000") for i, n in enumerate(NODES, 10)}
    names = proxy_names(NODES, ProxyShape.PER_DIRECTED_LINK)
    topo = plan_topology(NODES, ProxyShape.PER_DIRECTED_LINK, listen,
                         {name: f"10.5.0.2:{20001 + i}" for i, name in enumerate(names)})
    return LaunchContext(run.run_id, node_id, incarnation, run.node_data(node_id), run.path, listen, topo,
                         backend="docker")


def test_kuduraft_on_docker_runs_what_the_backend_ran_before_the_seam(tmp_path: Path) -> None:
    """Before the seam the backend ran ``sh -c 'exec python3 -m nodes "$@" >>"$0" 2>&1' LOG ARGS`` in
    /app with these arguments; now the adapter says ``python3 -m nodes ARGS`` and the generic
    entrypoint execs it: the same process, the same environment, the same cluster file."""
    spec = ClusterSpec(node_count=3, seed=7, flags={"follower_unavailable_considered_failed_sec": 300},
                       node_flags={"n2": {"raft_enable_pre_election": False}})
    run = RunDir(tmp_path / "run")
    ctx = _docker_ctx(run, "n2", incarnation=2)
    launch = KuduraftSystem(spec).launch_spec(ctx)
    log = run.node_log("n2")
    settings = container_launch(launch, log, run.path, "run-id")
    before = ["--config", str(run.cluster_file), "--id", "n2", "--data", str(run.node_data("n2")),
              "--seed", str(spec.node_seed("n2", 2)), "--sync-ledger"]
    for name, value in spec.node_flags_for("n2").items():  # the timing profile's flags, then the spec's
        before += ["--flag", f"{name}={str(value).lower() if isinstance(value, bool) else value}"]
    assert "raft_enable_pre_election=false" in before and "follower_unavailable_considered_failed_sec=300" in before
    assert launch.image is Image.NODE
    assert settings.command == (str(log), "python3", "-m", "nodes", *before)
    assert settings.working_dir == "/app"
    assert settings.environment == {"PYTHONUNBUFFERED": "1", "RAFTCHAOS_RUN": "run-id"}
    cluster = json.loads(settings.files[run.cluster_file])
    assert cluster["nodes"]["n2"] == {"rpc": "10.5.0.11:7000", "http": "10.5.0.11:8000"}
    assert cluster["dial"]["n1"] == {"n2": "10.5.0.2:20001", "n3": "10.5.0.2:20002"}  # n1->n2, n1->n3


def test_the_entrypoint_execs_the_argv_appending_both_streams_to_the_log(tmp_path: Path) -> None:
    log = tmp_path / "n1.log"
    log.write_text("banner\n")
    argv = ["sh", "-c", "echo out; echo err >&2; exit 85"]
    done = subprocess.run([*ENTRYPOINT, str(log), *argv], check=False, timeout=30)
    assert done.returncode == 85  # the node's own status is the container's
    assert log.read_text().splitlines() == ["banner", "out", "err"]


def test_a_path_the_container_cannot_see_is_one_line_naming_it(tmp_path: Path) -> None:
    run = tmp_path / "run"
    ok = LaunchSpec(argv=("/usr/bin/etcd",), env={}, data_dir=run / "n1", listen=MemberAddresses("a:1", "a:2"))
    assert container_launch(ok, run / "logs" / "n1.log", run, "r").working_dir == "/"
    for bad in (LaunchSpec(argv=("x",), env={}, data_dir=tmp_path / "elsewhere", listen=ok.listen),
                LaunchSpec(argv=("x",), env={}, data_dir=run / ".." / "escape", listen=ok.listen),
                LaunchSpec(argv=("x",), env={}, data_dir=run / "n1", listen=ok.listen,
                           files={Path("/etc/cluster.json"): "{}"})):
        with pytest.raises(SetupError, match="outside the run directory") as err:
            container_launch(bad, run / "n1.log", run, "r")
        assert "\n" not in str(err.value)
    with pytest.raises(SetupError, match="empty argv"):
        container_launch(LaunchSpec(argv=(), env={}, data_dir=run, listen=ok.listen), run / "l", run, "r")


def test_a_host_binary_image_keeps_the_binary_at_its_own_path(tmp_path: Path) -> None:
    binary = tmp_path / "etcd"
    binary.write_bytes(b"\x7fELF-fake")
    repository, files = host_binary_context(binary)
    assert repository == "raftchaos/etcd"
    assert files["binary"] == b"\x7fELF-fake"
    assert f"COPY binary {binary}\n" in files["Dockerfile"].decode()
    with pytest.raises(SetupError, match="cannot be read"):
        host_binary_context(tmp_path / "missing")
    with pytest.raises(SetupError, match="absolute path"):
        host_binary_context(Path("etcd"))


def test_kuduraft_proxies_keep_the_docker_layout_from_before_the_seam() -> None:
    """Per directed link: every proxy on Toxiproxy's run-network IP, ports from 20001 in the order
    of ``links_of`` (what the backend allocated before the seam); by name: per-source hosts."""
    spec = ClusterSpec(node_count=3)
    layout = proxy_layout(spec.nodes, ProxyShape.PER_DIRECTED_LINK, "10.5.0.2", {}, 20001)
    assert layout == {link.name: f"10.5.0.2:{20001 + i}" for i, link in enumerate(links_of(spec))}
    by_name = proxy_layout(spec.nodes, ProxyShape.PER_DIRECTED_LINK_BY_NAME, "10.5.0.2",
                           {"n1": "10.6.0.2", "n2": "10.7.0.2", "n3": "10.8.0.2"}, 20001)
    assert by_name["n1->n2"] == "10.6.0.2:20002" and by_name["n3->n2"] == "10.8.0.2:20002"
    assert by_name["client->n1"] == "10.5.0.2:20004"
