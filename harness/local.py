"""LocalBackend: a System's nodes as local processes and one Toxiproxy server, all on 127.0.0.1.

The backend knows no particular system: it allocates the addresses, lays the proxies out with
``harness.systems.topology`` in the shape the system asks for, and starts each node from the
system's ``LaunchSpec`` (kuduraft: ``python -m nodes`` exactly as before the seam)."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
from pathlib import Path

from harness.backend import Capabilities, SeamState, start_banner
from harness.errors import ConfigError, SetupError
from harness.ports import free_ports
from harness.spec import ClusterSpec
from harness.store import RunDir
from harness.sweep import Registry, labelled_env, sweep_orphans
from harness.systems.base import LaunchContext, System
from harness.systems.registry import system_for
from harness.systems.topology import MemberAddresses, plan_topology, proxy_names
from harness.toxi import ProxyConfig
from harness.toxiproxy_server import ToxiproxyServer

HOST = "127.0.0.1"


class LocalBackend(SeamState):
    """Node processes on loopback with free ports, data dirs under the run dir, logs appended.
    ``system`` (default: the one the spec names, ``ClusterSpec.system``) says how to start them.

    Every process gets ``RAFTCHAOS_RUN=<run id>`` (plus its owner) in its environment and its
    own process group; ``prepare`` first sweeps what killed runs left behind. Thread-safe.
    """

    name = "local"
    capabilities = Capabilities(can_kill=True, can_terminate=True, can_pause=True, can_restart=True)

    def __init__(self, sweep: bool = True, system: System | None = None) -> None:
        self.sweep = sweep
        super().__init__(system)
        self._listen: dict[str, MemberAddresses] = {}
        self._lock = threading.RLock()
        self._spec: ClusterSpec | None = None
        self._run: RunDir | None = None
        self._server: ToxiproxyServer | None = None
        self._registry: Registry | None = None
        self._procs: dict[str, subprocess.Popen[bytes]] = {}
        self._paused: set[str] = set()
        self._incarnation: dict[str, int] = {}

    # ---- setup --------------------------------------------------------------------------------

    def prepare(self, spec: ClusterSpec, run: RunDir) -> None:
        with self._lock:
            if self._spec is not None:
                raise ConfigError("LocalBackend.prepare called twice")
            if self.sweep:
                sweep_orphans()
            system = self._system if self._system is not None else system_for(spec.system, spec)
            shape = system.proxy_shape(self.name)  # SystemUnavailable: this system cannot run here
            self._system = system
            self._spec, self._run = spec, run.create()
            self._registry = Registry(run.run_id, run.path)
            names = proxy_names(spec.nodes, shape)
            ports = iter(free_ports(2 * spec.node_count + len(names)))
            for node_id in spec.nodes:  # peer then api port per node, then the proxies: as always
                peer = f"{HOST}:{next(ports)}"
                self._listen[node_id] = MemberAddresses(api=f"{HOST}:{next(ports)}", peer=peer)
            self._topology = plan_topology(spec.nodes, shape, self._listen,
                                           {name: f"{HOST}:{next(ports)}" for name in names})
            self._server = ToxiproxyServer(run.toxiproxy_log, seed=spec.seed,
                                           env=labelled_env(run.run_id))
            self._server.start()
            if self._server.pid is not None:
                self._registry.add([self._server.pid])

    def proxy_configs(self) -> list[ProxyConfig]:
        return self._topology.proxy_configs() if self._topology is not None else []

    @property
    def toxiproxy_api_url(self) -> str:
        if self._server is None:
            raise SetupError("backend not prepared")
        return self._server.api_url

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

    # ---- node processes -----------------------------------------------------------------------

    def start(self, node_id: str) -> None:
        with self._lock:
            self._known(node_id)
            assert self._run is not None and self._registry is not None and self._system is not None
            if self.is_running(node_id):
                raise SetupError(f"{node_id} is already running")
            incarnation = self._incarnation.get(node_id, 0) + 1
            data = self._run.node_data(node_id)
            data.mkdir(parents=True, exist_ok=True)
            launch = self._system.launch_spec(LaunchContext(
                self._run.run_id, node_id, incarnation, data, self._run.path, self._listen, self.topology))
            self._incarnation[node_id] = incarnation
            for path, text in launch.files.items():
                path.write_text(text)
            env = {**labelled_env(self._run.run_id), **launch.env}
            log = self.log_path(node_id)
            log.parent.mkdir(parents=True, exist_ok=True)
            with log.open("ab") as fh:
                fh.write(start_banner(node_id, incarnation))
                fh.flush()
                proc = subprocess.Popen(list(launch.argv), cwd=launch.cwd, env=env, stdin=subprocess.DEVNULL,
                                        stdout=fh, stderr=subprocess.STDOUT, start_new_session=True)
            self._procs[node_id] = proc
            self._paused.discard(node_id)
            self._registry.add([proc.pid])

    def _signal(self, node_id: str, sig: signal.Signals) -> subprocess.Popen[bytes] | None:
        proc = self._procs.get(node_id)
        if proc is None or proc.poll() is not None:
            return None
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        return proc

    def kill(self, node_id: str) -> int | None:
        with self._lock:
            proc = self._signal(node_id, signal.SIGKILL)
            self._paused.discard(node_id)
            if proc is None:
                return self.exit_code(node_id)
            return proc.wait(10)

    def terminate(self, node_id: str, timeout_s: float) -> int | None:
        with self._lock:
            proc = self._signal(node_id, signal.SIGTERM)
            if proc is None:
                return self.exit_code(node_id)
            if node_id in self._paused:  # a stopped process cannot handle SIGTERM until resumed
                self._signal(node_id, signal.SIGCONT)
                self._paused.discard(node_id)
            try:
                return proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self._signal(node_id, signal.SIGKILL)
                return proc.wait(10)

    def pause(self, node_id: str) -> None:
        with self._lock:
            if self._signal(node_id, signal.SIGSTOP) is None:
                raise SetupError(f"cannot pause {node_id}: not running")
            self._paused.add(node_id)

    def resume(self, node_id: str) -> None:
        with self._lock:
            self._signal(node_id, signal.SIGCONT)
            self._paused.discard(node_id)

    def is_running(self, node_id: str) -> bool:
        proc = self._procs.get(node_id)
        return proc is not None and proc.poll() is None

    def is_paused(self, node_id: str) -> bool:
        return node_id in self._paused and self.is_running(node_id)

    def exit_code(self, node_id: str) -> int | None:
        proc = self._procs.get(node_id)
        return proc.poll() if proc is not None else None

    def pid(self, node_id: str) -> int | None:
        proc = self._procs.get(node_id)
        return proc.pid if proc is not None else None

    @property
    def toxiproxy_pid(self) -> int | None:
        return self._server.pid if self._server is not None else None

    # ---- teardown -----------------------------------------------------------------------------

    def close(self) -> None:
        """Stop every node (SIGTERM, SIGKILL after 5 s) and the Toxiproxy server. Idempotent;
        errors are collected and the first re-raised after everything was attempted."""
        errors: list[BaseException] = []
        with self._lock:
            for node_id in list(self._procs):
                try:
                    self.terminate(node_id, timeout_s=5.0)
                except Exception as exc:  # noqa: BLE001 - keep stopping the rest
                    errors.append(exc)
            if self._server is not None:
                try:
                    self._server.stop()
                except Exception as exc:  # noqa: BLE001
                    errors.append(exc)
            if self._registry is not None:
                self._registry.remove()
        if errors:
            raise errors[0]
