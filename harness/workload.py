"""Seeded workload clients: threads doing KV operations over the client links, recorded in the history."""

from __future__ import annotations

import itertools
import random
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType, TracebackType
from typing import TYPE_CHECKING, Any

from harness.errors import ConfigError, HarnessError
from harness.history import EventKind, OpFn
from harness.nodeclient import KvResult, Outcome
from harness.runinfo import RunRecord

if TYPE_CHECKING:
    from harness.cluster import Cluster

DEFAULT_MIX: Mapping[OpFn, float] = MappingProxyType({OpFn.WRITE: 0.4, OpFn.READ: 0.4, OpFn.CAS: 0.2})


@dataclass(frozen=True)
class WorkloadSpec:
    """``clients`` threads issuing ``rate_per_s`` operations per second in total (paced, one at a
    time per client) over keys ``k0..k{keys-1}``, choosing operations by ``mix`` weights.
    ``op_timeout_s`` None: the timing profile's client timeout."""

    clients: int = 3
    rate_per_s: float = 30.0
    keys: int = 4
    mix: Mapping[OpFn, float] = field(default_factory=lambda: DEFAULT_MIX)
    op_timeout_s: float | None = None

    def __post_init__(self) -> None:
        if self.clients < 1 or self.keys < 1 or self.rate_per_s <= 0:
            raise ConfigError(f"workload needs clients >= 1, keys >= 1, rate > 0: {self}")
        mix = {OpFn(f): float(w) for f, w in self.mix.items()}
        if not mix or any(w < 0 for w in mix.values()) or sum(mix.values()) <= 0:
            raise ConfigError(f"workload mix needs non-negative weights with a positive sum: {self.mix}")
        object.__setattr__(self, "mix", MappingProxyType(mix))


@dataclass
class WorkloadStats:
    invoked: int = 0
    ok: int = 0
    fail: int = 0
    info: int = 0


class Workload:
    """Runs the clients against a started cluster until ``stop()``.

    Every operation is an ``invoke`` followed by exactly one ``ok``/``fail``/``info`` from the
    same process. After an ``info`` (indeterminate) the client continues under a new process id.
    Clients follow ``not_leader`` hints and otherwise move to a random node after an error.
    Nothing is retried silently: each attempt is its own recorded operation. Writes, cas targets
    and appends carry values unique across the run (``c<client>-<seq>``). A cas whose compare
    failed completes as ``fail`` with ``error`` null and the value it found as ``observed``; a
    cas the node refused (``not_leader``, ``bad_request``) is a ``fail`` naming the error.
    """

    def __init__(self, cluster: Cluster, spec: WorkloadSpec | None = None) -> None:
        self.cluster = cluster
        self.spec = spec or WorkloadSpec()
        self.stats = WorkloadStats()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._process_ids = itertools.count(0)
        self._lock = threading.Lock()
        self._recorded: int | None = None

    def start(self) -> Workload:
        if self._threads:
            raise HarnessError("workload already started")
        self.cluster.attach(self.stop)
        self._recorded = RunRecord.of(self.cluster).workload_started(self.spec)  # run.json: what ran
        for index in range(self.spec.clients):
            rng = self.cluster.rng(f"workload/client{index}")
            thread = threading.Thread(target=self._client, args=(index, rng),
                                      name=f"workload-{index}", daemon=True)
            self._threads.append(thread)
        for thread in self._threads:
            thread.start()
        return self

    def _new_process(self) -> int:
        with self._lock:
            return next(self._process_ids)

    def _count(self, kind: str) -> None:
        with self._lock:
            setattr(self.stats, kind, getattr(self.stats, kind) + 1)

    def _client(self, index: int, rng: random.Random) -> None:
        process = self._new_process()
        nodes = list(self.cluster.nodes)
        node = rng.choice(nodes)
        seq = itertools.count(1)
        known: dict[str, Any] = {}  # last value this client saw per key, for cas
        period_s = self.spec.clients / self.spec.rate_per_s
        timeout_s = self.spec.op_timeout_s or self.cluster.timing.client_timeout_s
        fns, weights = zip(*self.spec.mix.items(), strict=True)
        next_at = self.cluster.history.now() + rng.uniform(0, period_s)
        while not self._stop.wait(max(0.0, next_at - self.cluster.history.now())):
            next_at += period_s
            f = rng.choices(fns, weights)[0]
            key = f"k{rng.randrange(self.spec.keys)}"
            try:
                kind, result = self._one(process, node, f, key, f"c{index}-{next(seq)}", known,
                                         timeout_s)
            except HarnessError:
                return  # the history closed: the run is over
            if kind is EventKind.INFO:
                process = self._new_process()
            if result.error == "not_leader" and result.leader in nodes:
                node = result.leader
            elif kind is not EventKind.OK:
                node = rng.choice(nodes)

    def _one(self, process: int, node: str, f: OpFn, key: str, unique: str, known: dict[str, Any],
             timeout_s: float) -> tuple[EventKind, KvResult]:
        history = self.cluster.history
        client = self.cluster.node(node)
        if f is OpFn.WRITE:
            value: Any = unique
        elif f is OpFn.CAS:
            value = [known.get(key), unique]
        elif f is OpFn.APPEND:
            value = unique
        else:
            value = None
        history.invoke(process, f, key, value, node)
        self._count("invoked")
        if f is OpFn.WRITE:
            result = client.put(key, value, timeout_s)
        elif f is OpFn.CAS:
            result = client.cas(key, value[0], value[1], timeout_s)
        elif f is OpFn.APPEND:
            result = client.append(key, value, timeout_s)
        else:
            result = client.get(key, timeout_s)
        kind = EventKind(result.outcome.value)
        error = result.error
        extra: dict[str, Any] = {}
        if result.outcome is Outcome.OK:
            if f is OpFn.READ:
                value = result.body.get("value")
                known[key] = value
            elif f is OpFn.WRITE:
                known[key] = value
            elif f is OpFn.CAS:
                known[key] = result.body.get("value")
                if not result.body.get("swapped", False):
                    # The compare executed (through the log) and found another value: a `fail`
                    # without an error, which the linearizability checker uses as the constraint
                    # "the value was not `from` here", unlike an errored fail (no effect at all).
                    kind, error = EventKind.FAIL, None
                    extra["observed"] = known[key]
        history.complete(kind, process, f, key, value, node, result.latency_s, error, **extra)
        self._count(kind.value)
        return kind, result

    def stop(self) -> None:
        """Stop issuing; in-flight operations finish (bounded by the op timeout) and are recorded."""
        self._stop.set()
        if self._recorded is not None:
            RunRecord.of(self.cluster).workload_stopped(self._recorded)
        for thread in self._threads:
            thread.join(timeout=(self.spec.op_timeout_s or self.cluster.timing.client_timeout_s) + 5)

    def __enter__(self) -> Workload:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()
