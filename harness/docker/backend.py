"""DockerBackend: a System's nodes as containers, and one Toxiproxy container, on private internal bridges per run.

The backend knows no particular system: it gives each node a fixed IP on the run network (peer
port 7000, api port 8000), lays the proxies out with ``harness.systems.topology`` in the shape the
system asks for, and starts each incarnation from ``system.launch_spec`` (``harness.docker.launch``
maps it to the container). Two shapes:

- ``PER_DIRECTED_LINK`` (kuduraft): every proxy on Toxiproxy's run-network IP, one port each; the
  node's cluster file says which proxy it dials for each peer.
- ``PER_DIRECTED_LINK_BY_NAME`` (etcd: one advertised peer URL per member): one more internal
  network per source node, joined by that node's sandbox and by Toxiproxy. Proxy ``a->b`` listens
  on Toxiproxy's IP on a's network at b's port, and a's sandbox resolves each peer's node id to
  that IP (``/etc/hosts`` entries, which the node containers share). So ``http://b:port`` reaches
  ``a->b`` from a and ``c->b`` from c: per-directed-link cuts for a system that cannot be told a
  per-peer address. Chosen over per-source IP aliases or DNAT inside the containers because it
  needs no capability (NET_ADMIN) nor tool (iptables) in the images, only Docker's own networks.

Addresses are fixed per run, so a restarted node keeps its IP and its resolver. The harness
reaches nodes and Toxiproxy at their container IPs from the host; no port is ever published. The
run directory is bind-mounted at the same absolute path, so data directories survive restarts and
each node appends to the same log file as with the local backend.

Exit codes: a container killed by signal N exits 128+N; it is reported as -N, like a local
process (``Popen.returncode``), so 85 (injected crash) and the signal cases mean the same on both
backends. Uses the docker SDK only.
"""

from __future__ import annotations

import contextlib
import functools
import os
import sys
import threading
from pathlib import Path

import docker
from docker.errors import APIError
from requests.exceptions import RequestException
from rich.console import Console
from rich.progress import Progress

from harness.backend import Capabilities, SeamState, start_banner
from harness.docker.containers import addresses_on, create_container, wait_for_api
from harness.docker.daemon import ensure_daemon
from harness.docker.images import Images, ensure_host_binary_image, ensure_images
from harness.docker.launch import container_launch
from harness.docker.network import AddressPlan, create_run_network, create_source_network, proxy_layout
from harness.docker.resources import Role, RunResources, sweep
from harness.docker.waiter import Incarnation, start_exit_waiter
from harness.errors import ConfigError, HarnessError, SetupError
from harness.exitguard import GUARD
from harness.spec import ClusterSpec
from harness.store import RunDir
from harness.systems.base import Image, LaunchContext, System, SystemUnavailable
from harness.systems.registry import system_for
from harness.systems.topology import (
    MemberAddresses,
    ProxyShape,
    plan_topology,
)
from harness.toxi import ProxyConfig

__all__ = ["DockerBackend"]

RPC_PORT = 7000
HTTP_PORT = 8000
TOXIPROXY_API_PORT = 8474
FIRST_PROXY_PORT = 20001
TOXIPROXY_START_TIMEOUT_S = 20.0


class DockerBackend(SeamState):
    """A System's nodes and Toxiproxy as containers on private networks per run; thread-safe.
    ``system`` (default: the one the spec names, ``ClusterSpec.system``) says how to start them."""

    name = "docker"
    capabilities = Capabilities(can_kill=True, can_terminate=True, can_pause=True, can_restart=True)

    def __init__(self, progress: Progress | None = None, sweep_dead_runs: bool = True,
                 system: System | None = None) -> None:
        super().__init__(system)
        self._listen: dict[str, MemberAddresses] = {}
        self._source_networks: dict[str, str] = {}
        self._built: dict[tuple[Image, str], str] = {}
        self._progress = progress
        self._sweep_dead_runs = sweep_dead_runs
        self._lock = threading.RLock()
        self._closing = threading.Event()
        self._client: docker.DockerClient | None = None
        self._images: Images | None = None
        self._spec: ClusterSpec | None = None
        self._run: RunDir | None = None
        self._root: Path | None = None
        self._resources: RunResources | None = None
        self._network_name: str | None = None
        self._plan: AddressPlan | None = None
        self._toxiproxy_id: str | None = None
        self._node_ip: dict[str, str] = {}
        self._nodes: dict[str, Incarnation] = {}
        self._paused: set[str] = set()
        self._sandboxes: dict[str, str] = {}

    # ---- setup --------------------------------------------------------------------------------

    def prepare(self, spec: ClusterSpec, run: RunDir) -> None:
        with self._lock:
            if self._spec is not None:
                raise ConfigError("DockerBackend.prepare called twice")
            system = self._system if self._system is not None else system_for(spec.system, spec)
            shape = system.proxy_shape(self.name)  # SystemUnavailable: this system cannot run here
            if not shape.per_link:
                raise SystemUnavailable(f"{system.name}: the docker backend builds per-directed-link proxies, "
                                        f"not {shape.value}")
            self._system = system
            self._spec, self._run = spec, run.create()
            self._root = run.path.resolve()
            progress = self._progress if self._progress is not None else _default_progress()
            if progress is not None and progress is not self._progress:
                with progress:
                    self._client = ensure_daemon(progress)
                    self._images = ensure_images(self._client, progress)
            else:
                self._client = ensure_daemon(progress)
                self._images = ensure_images(self._client, progress)
            if self._sweep_dead_runs:
                sweep(self._client)  # what killed runs left behind; its errors must not stop this run
            self._resources = RunResources(run.run_id, self._root)
            GUARD.register(self._resources.uid, functools.partial(_emergency_sweep, self._client,
                                                                   self._resources.uid))
            network, self._plan = create_run_network(self._client, self._resources)
            self._network_name = network.name
            for index, node_id in enumerate(spec.nodes):
                self._node_ip[node_id] = ip = self._plan.node_ip(index)
                self._listen[node_id] = MemberAddresses(api=f"{ip}:{HTTP_PORT}", peer=f"{ip}:{RPC_PORT}")
            if shape is ProxyShape.PER_DIRECTED_LINK_BY_NAME:
                for node_id in spec.nodes:
                    self._source_networks[node_id] = create_source_network(self._client, self._resources, node_id)
            source_hosts = self._start_toxiproxy(spec.seed)
            proxy_listen = proxy_layout(spec.nodes, shape, self._plan.toxiproxy_ip, source_hosts, FIRST_PROXY_PORT)
            self._topology = plan_topology(spec.nodes, shape, self._listen, proxy_listen)
            for node_id in spec.nodes:
                self._start_sandbox(node_id)

    def _start_toxiproxy(self, seed: int) -> dict[str, str]:
        """Start Toxiproxy on the run network and every source network; returns its IP on each
        source network (by source node), known only once it runs."""
        assert self._resources is not None and self._images is not None and self._plan is not None
        self._toxiproxy_id = self._create(
            image=self._images.toxiproxy,
            name=self._resources.name(Role.TOXIPROXY),
            labels=self._resources.labels(Role.TOXIPROXY),
            ip=self._plan.toxiproxy_ip,
            command=["-seed", str(seed), "-proxy-metrics"],
        )
        for network in self._source_networks.values():
            self._api.connect_container_to_network(self._toxiproxy_id, network)
        self._api.start(self._toxiproxy_id)
        wait_for_api(self._api, self._toxiproxy_id, f"{self.toxiproxy_api_url}/version", TOXIPROXY_START_TIMEOUT_S,
                     "toxiproxy")
        return addresses_on(self._api, self._toxiproxy_id, self._source_networks) if self._source_networks else {}

    def _start_sandbox(self, node_id: str) -> None:
        """Start the container that owns ``node_id``'s network namespace and IP for the whole run.

        Node containers join it, so while a node is down its IP still exists and a connection to it
        is refused at once (as on loopback), instead of stalling on ARP: Toxiproxy dials upstreams
        inside its accept loop without a timeout, and a stalled dial blocks that proxy's disable and
        delete for seconds.

        In the by-name shape it also joins ``node_id``'s source network and carries the node's name
        resolution (``Topology.peer_hosts``): each peer's id resolves to Toxiproxy on that network.
        """
        assert self._resources is not None and self._images is not None
        hosts = self.topology.peer_hosts
        sandbox_id = self._create(
            image=self._images.base,
            name=self._resources.name(Role.SANDBOX, node_id),
            labels=self._resources.labels(Role.SANDBOX, node_id),
            ip=self._node_ip[node_id],
            command=["sleep", "infinity"],
            hostname=node_id,
            extra_hosts=dict(hosts[node_id]) if hosts is not None else None,
        )
        if node_id in self._source_networks:
            self._api.connect_container_to_network(sandbox_id, self._source_networks[node_id])
        self._api.start(sandbox_id)
        self._sandboxes[node_id] = sandbox_id

    @property
    def _api(self) -> docker.APIClient:
        if self._client is None:
            raise SetupError("docker backend not prepared")
        return self._client.api

    def _create(self, image: str, name: str, labels: dict[str, str], command: list[str], ip: str | None = None,
                join: str | None = None, mount_run: bool = False, extra_hosts: dict[str, str] | None = None,
                **kwargs: object) -> str:
        """``containers.create_container`` on the run network; ``mount_run`` mounts the run directory."""
        assert self._network_name is not None
        return create_container(self._api, self._network_name, image, name, labels, command, ip=ip, join=join,
                                bind=self._root if mount_run else None, extra_hosts=extra_hosts, **kwargs)

    def proxy_configs(self) -> list[ProxyConfig]:
        return self._topology.proxy_configs() if self._topology is not None else []

    @property
    def toxiproxy_api_url(self) -> str:
        if self._plan is None:
            raise SetupError("docker backend not prepared")
        return f"http://{self._plan.toxiproxy_ip}:{TOXIPROXY_API_PORT}"

    def _known(self, node_id: str) -> None:
        if node_id not in self._listen:
            raise ConfigError(f"unknown node {node_id!r}")

    def node_http_url(self, node_id: str) -> str:
        self._known(node_id)
        return f"http://{self._listen[node_id].api}"

    def client_url(self, node_id: str) -> str:
        self._known(node_id)
        return f"http://{self.topology.client[node_id]}"

    def log_path(self, node_id: str) -> Path:
        assert self._run is not None
        return self._run.node_log(node_id)

    # ---- node containers ----------------------------------------------------------------------

    def start(self, node_id: str) -> None:
        with self._lock:
            self._known(node_id)
            assert self._spec is not None and self._run is not None and self._root is not None
            assert self._resources is not None and self._system is not None
            if self.is_running(node_id):
                raise SetupError(f"{node_id} is already running")
            previous = self._nodes.get(node_id)
            number = previous.number + 1 if previous is not None else 1
            data = self._run.node_data(node_id).resolve()
            data.mkdir(parents=True, exist_ok=True)
            launch = self._system.launch_spec(LaunchContext(
                self._run.run_id, node_id, number, data, self._root, self._listen, self.topology, backend=self.name))
            log = self.log_path(node_id).resolve()
            settings = container_launch(launch, log, self._root, self._resources.run_id)
            image = self._image(launch.image, launch.argv[0])
            for path, text in settings.files.items():
                path.write_text(text)
            log.parent.mkdir(parents=True, exist_ok=True)
            with log.open("ab") as fh:
                fh.write(start_banner(node_id, number, " (docker)"))
            container_id = self._create(
                image=image,
                name=self._resources.name(Role.NODE, node_id),
                labels=self._resources.labels(Role.NODE, node_id),
                join=self._sandboxes[node_id],
                command=list(settings.command),
                entrypoint=list(settings.entrypoint),
                user=f"{os.getuid()}:{os.getgid()}",
                working_dir=settings.working_dir,
                environment=dict(settings.environment),
                mount_run=True,
            )
            incarnation = Incarnation(number, container_id)
            self._nodes[node_id] = incarnation
            self._paused.discard(node_id)
            self._api.start(container_id)
            start_exit_waiter(incarnation, self._closing, node_id)

    def _image(self, kind: Image, program: str) -> str:
        """The image a launch runs in: the node image, or ``program`` (a host binary) baked into the
        base image, built once per content (SetupError naming the file when it cannot be)."""
        assert self._images is not None and self._client is not None
        if kind is Image.NODE:
            return self._images.node
        key = (kind, program)
        if key not in self._built:
            self._built[key] = ensure_host_binary_image(self._client, self._progress, self._images.base,
                                                        Path(program))
        return self._built[key]

    def kill(self, node_id: str) -> int | None:
        with self._lock:
            return self._signal_and_wait(node_id, "SIGKILL", 10.0)

    def terminate(self, node_id: str, timeout_s: float) -> int | None:
        with self._lock:
            incarnation = self._nodes.get(node_id)
            if incarnation is None or incarnation.done.is_set():
                return self.exit_code(node_id)
            if node_id in self._paused:  # a frozen process cannot handle SIGTERM until thawed
                self.resume(node_id)
            code = self._signal_and_wait(node_id, "SIGTERM", timeout_s)
            if not incarnation.done.is_set():
                code = self._signal_and_wait(node_id, "SIGKILL", 10.0)
            return code

    def _signal_and_wait(self, node_id: str, signal_name: str, timeout_s: float) -> int | None:
        incarnation = self._nodes.get(node_id)
        if incarnation is None or incarnation.done.is_set():
            return self.exit_code(node_id)
        with contextlib.suppress(APIError):  # it may have exited meanwhile
            self._api.kill(incarnation.container_id, signal=signal_name)
        if signal_name == "SIGKILL" and node_id in self._paused:
            # A frozen cgroup holds even SIGKILL until thawed; Docker 20.10 does not thaw for us.
            with contextlib.suppress(APIError):
                self._api.unpause(incarnation.container_id)
        if signal_name == "SIGKILL":
            self._paused.discard(node_id)
        incarnation.done.wait(timeout_s)
        return incarnation.exit_code if incarnation.done.is_set() else None

    def pause(self, node_id: str) -> None:
        with self._lock:
            if not self.is_running(node_id):
                raise SetupError(f"cannot pause {node_id}: not running")
            self._api.pause(self._nodes[node_id].container_id)
            self._paused.add(node_id)

    def resume(self, node_id: str) -> None:
        with self._lock:
            incarnation = self._nodes.get(node_id)
            if incarnation is not None and node_id in self._paused:
                with contextlib.suppress(APIError):
                    self._api.unpause(incarnation.container_id)
            self._paused.discard(node_id)

    def is_running(self, node_id: str) -> bool:
        incarnation = self._nodes.get(node_id)
        return incarnation is not None and not incarnation.done.is_set()

    def is_paused(self, node_id: str) -> bool:
        return node_id in self._paused and self.is_running(node_id)

    def exit_code(self, node_id: str) -> int | None:
        incarnation = self._nodes.get(node_id)
        if incarnation is None or not incarnation.done.is_set():
            return None
        return incarnation.exit_code

    @property
    def resources(self) -> RunResources | None:
        """Names and labels of this run's Docker resources (None before prepare and after close)."""
        return self._resources

    @property
    def run_uid(self) -> str | None:
        """The ``raftchaos.run_uid`` label value of this run's Docker resources (None before prepare)."""
        return self._resources.uid if self._resources is not None else None

    def container_id(self, node_id: str) -> str | None:
        """The current container of ``node_id`` (for debugging and tests)."""
        incarnation = self._nodes.get(node_id)
        return incarnation.container_id if incarnation is not None else None

    # ---- teardown -----------------------------------------------------------------------------

    def close(self) -> None:
        """Stop every node (SIGTERM, SIGKILL after 5 s) and Toxiproxy, save Toxiproxy's log, remove the
        run's containers and network. Idempotent; errors are collected and the first raised at the end."""
        errors: list[BaseException] = []
        with self._lock:
            for node_id in list(self._nodes):
                try:
                    self.terminate(node_id, timeout_s=5.0)
                except Exception as exc:  # noqa: BLE001 - keep stopping the rest
                    errors.append(exc)
            self._closing.set()
            if self._client is not None and self._toxiproxy_id is not None:
                try:
                    self._api.stop(self._toxiproxy_id, timeout=2)
                    assert self._run is not None
                    self._run.toxiproxy_log.write_bytes(self._api.logs(self._toxiproxy_id))
                    self._api.remove_container(self._toxiproxy_id, force=True)  # its log is saved
                except (APIError, RequestException, OSError) as exc:
                    errors.append(exc)
                self._toxiproxy_id = None
            if self._client is not None and self._resources is not None:
                report = sweep(self._client, run_uid=self._resources.uid, only_dead=False)
                errors.extend(HarnessError(message) for message in report.errors)
                if not report.errors:
                    GUARD.unregister(self._resources.uid)  # else the exit hook tries once more
                self._resources = None
        if errors:
            raise errors[0]


def _emergency_sweep(client: docker.DockerClient, run_uid: str) -> None:
    """What the exit guard runs for a run that was not closed: force-remove its resources (logs saved)."""
    report = sweep(client, run_uid=run_uid, only_dead=False)
    if report.errors:
        print(f"raftchaos: leftovers of run {run_uid}: {'; '.join(report.errors)}; run `raftchaos clean`",
              file=sys.stderr)


def _default_progress() -> Progress | None:
    """A progress display on stderr when it is a terminal (a cold image build takes ~40 s), else None."""
    if not sys.stderr.isatty():
        return None
    return Progress(console=Console(stderr=True), transient=True)
