"""Cluster: builds a spec'd cluster (Toxiproxy, proxies, nodes) as a context manager; public verbs."""

from __future__ import annotations

import random
import threading
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

from harness.backend import CLIENT, Backend, Capabilities, LinkId, log_tail
from harness.control import NodeControl
from harness.errors import ConfigError, FaultUnavailable, HarnessError, NodeUnreachable, SetupError
from harness.exitguard import GUARD
from harness.history import History
from harness.link import Link
from harness.spec import BackendName, ClusterSpec
from harness.store import RunDir, new_run_dir
from harness.systems.base import Capability, NodeApi, NodeObservation, Observer, System, SystemUnavailable
from harness.systems.registry import system_for
from harness.timing import TimingProfile
from harness.toxi import ToxiproxyClient
from harness.versions import run_versions
from harness.waits import (
    Status,
    WaitStrategy,
    agreed_leader,
    wait_caught_up,
    wait_for_leader,
    wait_for_new_leader,
    wait_until,
)

T = TypeVar("T")
LOG_TAIL_LINES = 20


def make_backend(spec: ClusterSpec, system: System | None = None) -> Backend:
    """The backend the spec names for ``system`` (default: the spec's); the Docker backend is
    imported only when asked for, and runs only systems whose proxy shape it can build."""
    system = system if system is not None else system_for(spec.system, spec)
    if spec.backend is BackendName.LOCAL:
        from harness.local import LocalBackend

        return LocalBackend(system=system)
    system.proxy_shape(spec.backend.value)  # SystemUnavailable names what Docker lacks for it
    try:
        from harness.docker.backend import DockerBackend
    except ImportError as exc:
        raise SetupError(f"docker backend unavailable: {exc}") from None
    backend: Backend = DockerBackend(system=system)
    return backend


class Cluster(NodeControl):
    """A running cluster: ``with Cluster(spec) as c: ...`` starts Toxiproxy, one proxy per link,
    every node, and waits until all answer ``/health``; leaving the block stops everything.

    A start that fails half-way stops what it started and raises SetupError with each node's
    last log lines. Cleanup errors are collected: they never hide the error that ended the
    block, and are raised (as HarnessError) only when the block itself succeeded. A live run is
    registered with the exit guard (``harness.exitguard``), whatever the backend: the first
    SIGTERM/SIGHUP raises KeyboardInterrupt so the block unwinds as on Ctrl-C, and a run never
    closed is closed at exit.
    Process control (``kill``, ``pause``, ...) and flag changes are recorded in the history
    (those verbs live in ``harness.control.NodeControl``).
    """

    def __init__(self, spec: ClusterSpec, backend: Backend | None = None, *,
                 runs_root: Path | str | None = None, status_timeout_s: float = 1.0) -> None:
        self.spec = spec
        given = getattr(backend, "system", None)  # a backend built for a system (LocalBackend) says which
        self.system: System = given if given is not None else system_for(spec.system, spec)
        self.backend: Backend = backend if backend is not None else make_backend(spec, self.system)
        self._runs_root = runs_root
        self._status_timeout_s = status_timeout_s
        self._stack: ExitStack | None = None
        self._lock = threading.RLock()
        self._up: set[str] = set()
        self._links: dict[str, Link] = {}
        self._clients: dict[str, NodeApi] = {}
        self._observers: dict[str, Observer] = {}
        self._cleanup_errors: list[BaseException] = []
        self._rngs: dict[str, random.Random] = {}
        self._exit_listeners: list[Callable[[str, int], None]] = []
        self._start_listeners: list[Callable[[str], None]] = []
        self._run: RunDir | None = None
        self._history: History | None = None
        self._toxi: ToxiproxyClient | None = None
        self._pool: ThreadPoolExecutor | None = None

    # ---- lifecycle ----------------------------------------------------------------------------

    def __enter__(self) -> Cluster:
        self.start_cluster()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close(primary=exc)

    def start_cluster(self) -> None:
        """Bring the whole cluster up (what ``__enter__`` does)."""
        if self._stack is not None:
            raise ConfigError("cluster already started")
        self._stack = ExitStack()
        try:
            self._start_all()
        except BaseException as exc:
            tails = self.log_tails() if self._run is not None else {}
            self.close(primary=exc, reraise=False)
            if isinstance(exc, HarnessError | SystemUnavailable | KeyboardInterrupt | SystemExit):
                raise
            raise SetupError(f"cluster start failed: {type(exc).__name__}: {exc}", tails) from exc

    def _start_all(self) -> None:
        stack = self._stack
        assert stack is not None
        if self.spec.run_dir is not None:
            self._run = RunDir(self.spec.run_dir).create()
        else:
            self._run = new_run_dir(self.spec.test_name, self.spec.seed, self._runs_root)
        guard_key = f"cluster {self._run.run_id} {id(self):x}"
        GUARD.register(guard_key, self._emergency_close)  # SIGTERM/SIGHUP unwind like Ctrl-C; atexit
        stack.callback(GUARD.unregister, guard_key)  # the last thing a complete close does
        self._run.spec_path.write_text(self.spec.to_json())
        self._history = History(self._run.events_path)
        self._on_close(self._history.close)
        self._history.note("cluster starting", spec=self.spec.to_dict(), run_id=self.run_id)
        self._pool = ThreadPoolExecutor(max_workers=self.spec.node_count, thread_name_prefix="status")
        self._on_close(lambda: self._pool.shutdown(wait=True, cancel_futures=True) if self._pool else None)
        self._on_close(self.backend.close)
        self.backend.prepare(self.spec, self._run)
        self._toxi = ToxiproxyClient(self.backend.toxiproxy_api_url)
        self._history.note("versions", versions=run_versions(self.backend.name, self._toxi))
        self._toxi.populate(self.backend.proxy_configs())
        self._on_close(self._delete_proxies)
        self._links = {p.name: Link(LinkId.parse(p.name), self._toxi) for p in self.backend.proxy_configs()}
        for node_id in self.nodes:
            api = self.backend.node_http_url(node_id)
            self._observers[node_id] = self.system.observer(node_id, api, timeout_s=self._status_timeout_s)
            self._clients[node_id] = self.system.node_client(node_id, api, self.backend.client_url(node_id),
                                                             timeout_s=self._status_timeout_s)
        self._on_close(self._stop_nodes)
        for node_id in self.nodes:
            self.start(node_id)
        self.wait_healthy()

    def _on_close(self, fn: Callable[[], Any]) -> None:
        """Run ``fn`` at close (LIFO); its error is collected instead of propagating."""
        assert self._stack is not None

        def guarded() -> None:
            try:
                fn()
            except Exception as exc:  # noqa: BLE001 - collected, reported after full cleanup
                self._cleanup_errors.append(exc)
        self._stack.callback(guarded)

    def attach(self, close: Callable[[], Any]) -> None:
        """Register a helper's stop function (observer, workload, supervisor) to run at close,
        before the nodes are stopped."""
        self._on_close(close)

    def _stop_nodes(self) -> None:
        self.reap()
        for node_id in self.nodes:
            if self.backend.is_running(node_id):
                self.terminate(node_id)

    def _delete_proxies(self) -> None:
        if self._toxi is not None:
            for name in self._links:
                self._toxi.delete_proxy(name, missing_ok=True)

    def _emergency_close(self) -> None:
        """What the exit guard runs for this run at exit or on a second SIGTERM/SIGHUP: the normal
        close when it has not begun, else (it was interrupted) the backend's own stop."""
        if self._stack is not None:
            self.close(reraise=False)
        else:
            self.backend.close()

    def close(self, primary: BaseException | None = None, reraise: bool = True) -> None:
        """Stop everything (helpers, nodes, proxies, server, history). Idempotent."""
        stack, self._stack = self._stack, None
        if stack is None:
            return
        stack.close()
        errors, self._cleanup_errors = self._cleanup_errors, []
        if primary is not None:
            for err in errors:
                primary.add_note(f"also during cleanup: {type(err).__name__}: {err}")
        elif errors and reraise:
            raise HarnessError("cluster cleanup failed: " + "; ".join(
                f"{type(e).__name__}: {e}" for e in errors)) from errors[0]

    # ---- identity and state -------------------------------------------------------------------

    @property
    def nodes(self) -> tuple[str, ...]:
        return self.spec.nodes

    def _need(self, value: T | None, what: str) -> T:
        if value is None:
            raise ConfigError(f"cluster not started: no {what}")
        return value

    @property
    def run(self) -> RunDir:
        return self._need(self._run, "run directory")

    @property
    def run_dir(self) -> Path:
        return self.run.path

    @property
    def run_id(self) -> str:
        return self.run.run_id

    @property
    def history(self) -> History:
        return self._need(self._history, "history")

    @property
    def timing(self) -> TimingProfile:
        return self.spec.timing

    @property
    def capabilities(self) -> Capabilities:
        return self.backend.capabilities

    def has(self, capability: Capability) -> bool:
        """Whether the system under test has ``capability`` on this backend (harness.systems)."""
        return capability in self.system.capabilities(self.backend.name)

    def rng(self, purpose: str) -> random.Random:
        """The run's random.Random for ``purpose``, seeded by the run seed and the purpose; the same
        object on every call, so a run's draws for one purpose form one reproducible sequence."""
        with self._lock:
            if purpose not in self._rngs:
                self._rngs[purpose] = random.Random(f"{self.spec.seed}/{purpose}")
            return self._rngs[purpose]

    def _check(self, node_id: str) -> str:
        if node_id not in self.nodes:
            raise ConfigError(f"unknown node {node_id!r} (nodes are {', '.join(self.nodes)})")
        return node_id

    def node(self, node_id: str) -> NodeApi:
        """The node's client (``System.node_client``, typed by ``harness.systems.base.NodeApi``):
        status (and kuduraft's flags, events, step-down) go to the node directly, KV via
        ``client->id``; a call the system lacks raises FaultUnavailable (the test skips)."""
        return self._need(self._clients.get(self._check(node_id)), f"client for {node_id}")

    def log_path(self, node_id: str) -> Path:
        return self.backend.log_path(self._check(node_id))

    def log_tails(self, lines: int = LOG_TAIL_LINES) -> dict[str, list[str]]:
        """Each node's last ``lines`` log lines."""
        return {n: log_tail(self.backend.log_path(n), lines) for n in self.nodes}

    # ---- status -------------------------------------------------------------------------------

    def observe(self, node_id: str) -> NodeObservation:
        """One node's state through the System's observer; NodeUnreachable when it does not answer."""
        return self._need(self._observers.get(self._check(node_id)), f"observer for {node_id}").observe()

    def status(self, node_id: str) -> dict[str, Any]:
        """One node's observation as a status document (kuduraft: its ``/status``; any system:
        ``role``, ``term``, ``leader``, ``commit_index``, ``applied_index``); NodeUnreachable when
        it does not answer."""
        return self.observe(node_id).status_document()

    def _status_or_none(self, node_id: str) -> dict[str, Any] | None:
        if not self.backend.is_running(node_id) or self.backend.is_paused(node_id):
            return None
        try:
            return self.status(node_id)
        except (NodeUnreachable, HarnessError):
            return None

    def statuses(self) -> dict[str, Status | None]:
        """Every node's ``/status`` (None for a stopped, paused or silent node), asked in parallel."""
        pool = self._need(self._pool, "status pool")
        return dict(zip(self.nodes, pool.map(self._status_or_none, self.nodes), strict=True))

    def leader(self) -> str | None:
        """The leader a majority of nodes agrees on right now (id and term), or None."""
        return agreed_leader(self.statuses(), len(self.nodes))

    def followers(self) -> list[str]:
        """Every node except the current agreed leader (all nodes when there is none)."""
        leader = self.leader()
        return [n for n in self.nodes if n != leader]

    def term(self) -> int | None:
        """The highest term any answering node reports."""
        terms = [int(st["term"]) for st in self.statuses().values() if st and "term" in st]
        return max(terms) if terms else None

    # ---- links --------------------------------------------------------------------------------

    def link(self, src: str, dst: str) -> Link:
        """The proxy of ``src``'s outbound RPC connection to ``dst`` (``n1->n2``). FaultUnavailable
        (the test skips) when the system's proxy shape on this backend has no such proxy, e.g.
        etcd's ingress proxies on the local backend (``harness.systems.topology``)."""
        if self._check(src) == self._check(dst):
            raise ConfigError(f"no link from {src} to itself")
        link = self._links.get(LinkId(src, dst).name)
        if link is None:
            reason = self.cut_unavailable([(src, dst)])
            raise FaultUnavailable(f"link {src}->{dst}", reason or f"{self.system.name} on the {self.backend.name} "
                                   "backend: no proxy for this directed link")
        return link

    def cut_unavailable(self, pairs: Iterable[tuple[str, str]]) -> str | None:
        """Why the peer connections ``src->dst`` in ``pairs`` cannot be cut without cutting others
        on this cluster (one line naming the system, backend and collateral), None when they can:
        the topology's answer (``Topology.cut``), so a fault's availability check says before
        injection what ``link`` would refuse at it. None for a backend without a topology."""
        topology = getattr(self.backend, "topology", None)
        if topology is None:
            return None
        plan = topology.cut(pairs)
        return None if plan.available else f"{self.system.name} on the {self.backend.name} backend: {plan.reason}"

    def client_link(self, node_id: str) -> Link:
        """The proxy clients' KV operations to ``node_id`` go through (``client->n1``)."""
        return self._links[LinkId(CLIENT, self._check(node_id)).name]

    def links(self) -> list[Link]:
        return list(self._links.values())

    def reset_links(self) -> None:
        """Re-enable every proxy and remove every toxic (Toxiproxy ``/reset``)."""
        self._need(self._toxi, "toxiproxy").reset()

    # ---- waits --------------------------------------------------------------------------------

    def strategy(self, timeout_s: float, poll_s: float = 0.05) -> WaitStrategy:
        return WaitStrategy(timeout_s, poll_s)

    def wait_healthy(self, timeout_s: float = 30.0) -> None:
        """Every running node answers ``/health``; a node that exits fails at once (SetupError)."""
        def check() -> bool:
            for node_id, code in self.reap():
                raise SetupError(f"{node_id} exited with code {code} during start", self.log_tails())
            return all(self.node(n).health() for n in self.nodes if self.backend.is_running(n))
        wait_until(check, what="every node to answer /health", strategy=self.strategy(timeout_s),
                   log_tails=self.log_tails)

    def wait_for_leader(self, timeout_s: float | None = None) -> str:
        """An agreed leader (default bound: the timing profile's first-leader bound)."""
        bound = timeout_s if timeout_s is not None else self.timing.first_leader_within_s
        return wait_for_leader(self, self.strategy(bound))

    def wait_for_new_leader(self, old_leader: str | None, old_term: int | None = None,
                            timeout_s: float | None = None) -> str:
        """A leader other than ``old_leader`` (or, given ``old_term``, any leader in a later term)."""
        bound = timeout_s if timeout_s is not None else self.timing.new_leader_within_s()
        return wait_for_new_leader(self, old_leader, old_term, self.strategy(bound))

    def wait_caught_up(self, nodes: list[str] | None = None, timeout_s: float | None = None,
                       target_index: int | None = None) -> int:
        """Every node (or ``nodes``) committed and applied the leader's commit index."""
        bound = timeout_s if timeout_s is not None else 2 * self.timing.new_leader_within_s()
        return wait_caught_up(self, self.strategy(bound), nodes, target_index)

    def wait_until(self, predicate: Callable[[], T], what: str, timeout_s: float,
                   poll_s: float = 0.05) -> T:
        """Wait for ``predicate()`` to be truthy; WaitTimeout with node logs otherwise."""
        return wait_until(predicate, what=what, strategy=self.strategy(timeout_s, poll_s),
                          log_tails=self.log_tails)

    def __repr__(self) -> str:
        run = self._run.run_id if self._run else "not started"
        return f"Cluster({self.spec}, run={run})"
