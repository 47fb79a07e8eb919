"""A stand-in for a seam-aware backend, for the System integration tests only: it starts a
system's nodes on loopback from their LaunchSpecs, behind a real Toxiproxy server laid out by
``harness.systems.topology``, and stops every process it started (on success and on failure).

The local backend is wired to the seam now (``harness.local``); this stays as the least code that
exercises an adapter end to end without the Cluster around it: addresses from ``harness.ports``, processes labelled with
the run id (``harness.sweep.labelled_env``) so a killed test's leftovers are swept like any run's.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from pathlib import Path
from types import TracebackType

from harness.errors import SetupError
from harness.nodeclient import Outcome
from harness.ports import HOST, free_ports
from harness.sweep import labelled_env
from harness.systems.base import (
    AppendKvClient,
    KvClient,
    LaunchContext,
    NodeObservation,
    Observer,
    Role,
    System,
)
from harness.systems.topology import MemberAddresses, Topology, plan_topology, proxy_names
from harness.toxi import ToxiproxyClient
from harness.toxiproxy_server import ToxiproxyServer
from harness.waits import WaitStrategy, wait_until

NODES = ("n1", "n2", "n3")


class SeamRun:
    """``nodes`` of ``system`` under ``path`` (one directory per run); a context manager."""

    def __init__(self, system: System, nodes: tuple[str, ...], path: Path, seed: int) -> None:
        self.system, self.nodes, self.path, self.seed = system, nodes, path, seed
        self.run_id = path.name
        shape = system.proxy_shape("local")
        names = proxy_names(nodes, shape)
        ports = iter(free_ports(2 * len(nodes) + len(names)))
        self.listen = {n: MemberAddresses(api=f"{HOST}:{next(ports)}", peer=f"{HOST}:{next(ports)}") for n in nodes}
        self.topology: Topology = plan_topology(nodes, shape, self.listen, {p: f"{HOST}:{next(ports)}" for p in names})
        self.server = ToxiproxyServer(path / "toxiproxy.log", seed=seed, env=labelled_env(self.run_id))
        self.toxi: ToxiproxyClient | None = None
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.incarnation: dict[str, int] = {}
        self.observers: dict[str, Observer] = {
            n: system.observer(n, f"http://{self.listen[n].api}", timeout_s=1.0) for n in nodes}

    def __enter__(self) -> SeamRun:
        self.path.mkdir(parents=True, exist_ok=True)
        try:
            self.toxi = self.server.start()
            self.toxi.populate(self.topology.proxy_configs())
            for node in self.nodes:
                self.start(node)
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.close()

    def start(self, node: str) -> None:
        number = self.incarnation.get(node, 0) + 1
        self.incarnation[node] = number
        ctx = LaunchContext(self.run_id, node, number, self.path / "data" / node, self.path, self.listen,
                            self.topology)
        launch = self.system.launch_spec(ctx)
        for file, text in launch.files.items():
            file.write_text(text)
        launch.data_dir.parent.mkdir(parents=True, exist_ok=True)
        env = {**labelled_env(self.run_id), **launch.env}
        with (self.path / f"{node}.log").open("ab") as log:
            self.procs[node] = subprocess.Popen(list(launch.argv), env=env, cwd=launch.cwd, stdout=log,
                                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                                start_new_session=True)

    def kill(self, node: str) -> int:
        proc = self.procs[node]
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        return proc.wait(10)

    def kv(self, node: str) -> KvClient:
        """The node's KV client through its ``client->node`` proxy."""
        return self.system.kv_client(node, f"http://{self.topology.client[node]}", timeout_s=5.0)

    def observe(self, nodes: tuple[str, ...] | None = None) -> dict[str, NodeObservation]:
        """Every live node's observation; nodes that do not answer are left out."""
        seen = {}
        for node in nodes or self.nodes:
            if self.procs[node].poll() is not None:
                continue
            with contextlib.suppress(Exception):
                seen[node] = self.observers[node].observe()
        return seen

    def wait_leader(self, among: tuple[str, ...], timeout_s: float, above_term: int = -1) -> NodeObservation:
        """A leader every answering node of ``among`` agrees on (a majority of the cluster
        answering), in a term above ``above_term``. Raises WaitTimeout with the logs' tails."""
        def agreed() -> NodeObservation | None:
            for node, proc in self.procs.items():
                if node in among and proc.poll() is not None:
                    raise SetupError(f"{node} exited with {proc.returncode}", self.log_tails())
            seen = self.observe(among)
            leaders = [o for o in seen.values() if o.is_leader and o.term > above_term]
            if len(seen) * 2 <= len(self.nodes) or len(leaders) != 1:
                return None
            leader = leaders[0]
            return leader if all(o.leader == leader.node_id for o in seen.values()) else None
        return wait_until(agreed, what=f"one leader among {', '.join(among)} above term {above_term}",
                          strategy=WaitStrategy(timeout_s, poll_s=0.1), log_tails=self.log_tails)

    def log_tails(self, lines: int = 15) -> dict[str, list[str]]:
        tails = {}
        for node in self.nodes:
            try:
                tails[node] = (self.path / f"{node}.log").read_text(errors="replace").splitlines()[-lines:]
            except OSError:
                tails[node] = []
        return tails

    def close(self) -> None:
        """SIGTERM every node's group, SIGKILL after 5 s, then the Toxiproxy server (its proxies go
        with it). Every step is attempted; the first error is re-raised at the end."""
        errors: list[BaseException] = []
        for proc in self.procs.values():
            try:
                if proc.poll() is None:
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(proc.pid, signal.SIGTERM)
                    try:
                        proc.wait(5)
                    except subprocess.TimeoutExpired:
                        with contextlib.suppress(ProcessLookupError):
                            os.killpg(proc.pid, signal.SIGKILL)
                        proc.wait(5)
            except Exception as exc:  # noqa: BLE001 - keep stopping the rest
                errors.append(exc)
        try:
            self.server.stop()
        except Exception as exc:  # noqa: BLE001
            errors.append(exc)
        if errors:
            raise errors[0]


def smoke(run: SeamRun, leader_timeout_s: float) -> None:
    """Elect, write and read (put, cas, append), kill the leader, see a new leader in a higher
    term that still serves the value: the same for every system."""
    first = run.wait_leader(NODES, leader_timeout_s)
    assert first.members == NODES  # kuduraft: its static config; etcd: its member list
    kv = run.kv(first.node_id)
    put = kv.put("seam-k", 41)
    assert put.outcome is Outcome.OK, put
    cas = run.kv(first.node_id).cas("seam-k", 41, 42)
    assert cas.outcome is Outcome.OK and cas.body["swapped"] is True, cas
    missed = run.kv(first.node_id).cas("seam-k", 41, 43)
    assert missed.outcome is Outcome.OK and missed.body["swapped"] is False and missed.body["value"] == 42

    appender = run.kv(first.node_id)
    assert isinstance(appender, AppendKvClient)
    for piece in ("a", "b"):
        appended = appender.append("seam-list", piece)
        assert appended.outcome is Outcome.OK, appended
    assert run.kv(first.node_id).get("seam-list").body["value"] == "ab"

    run.kill(first.node_id)
    survivors = tuple(n for n in NODES if n != first.node_id)
    second = run.wait_leader(survivors, leader_timeout_s, above_term=first.term)
    assert second.node_id != first.node_id and second.term > first.term and second.role is Role.LEADER
    got = run.kv(second.node_id).get("seam-k")
    assert got.outcome is Outcome.OK and got.body["value"] == 42, got
