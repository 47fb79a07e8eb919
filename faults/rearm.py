"""Re-arming a fault on nodes that start again while it is on (e.g. after the crash supervisor's restart)."""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

from harness.errors import HarnessError
from harness.waits import WaitStrategy, wait_until

if TYPE_CHECKING:
    from harness.cluster import Cluster

READY_WITHIN_S = 30.0  # as Cluster.wait_healthy: how long a started node may take to answer
READY_POLL_S = 0.05
_STOP = ""  # queue sentinel (no node id is empty)


class Rearmer:
    """Listens to the cluster's node starts; for each start of one of ``nodes`` it waits in its own
    thread (bounded by ``ready_within_s``) until the node answers its flags API, then calls
    ``apply(node_id)``. The listener itself never blocks (a start may run under the cluster's
    lock). ``stop`` unregisters, abandons pending work and joins the thread; after it ``apply`` is
    never called again. A node that does not answer in time, or an ``apply`` that fails, is kept
    in ``errors`` (as ``"node: reason"``) instead of propagating into someone else's thread."""

    def __init__(self, cluster: Cluster, nodes: Iterable[str], apply: Callable[[str], None],
                 ready_within_s: float = READY_WITHIN_S) -> None:
        self.cluster = cluster
        self.nodes = frozenset(nodes)
        self.apply = apply
        self.ready_within_s = ready_within_s
        self.errors: list[str] = []
        self._queue: queue.SimpleQueue[str] = queue.SimpleQueue()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> Rearmer:
        if self._thread is not None:
            raise HarnessError("rearmer already started")
        self._thread = threading.Thread(target=self._run, name="fault-rearm", daemon=True)
        self._thread.start()
        self.cluster.add_start_listener(self._on_start)
        return self

    def _on_start(self, node_id: str) -> None:
        if node_id in self.nodes and not self._stop.is_set():
            self._queue.put(node_id)

    def _answers(self, node_id: str) -> bool:
        if self._stop.is_set():
            return True  # stop waiting; _rearm sees the stop and does nothing
        try:
            self.cluster.flags(node_id)
        except HarnessError:
            return False
        return True

    def _rearm(self, node_id: str) -> None:
        try:
            wait_until(lambda: self._answers(node_id), what=f"{node_id} to answer after its restart",
                       strategy=WaitStrategy(self.ready_within_s, READY_POLL_S))
            if not self._stop.is_set():
                self.apply(node_id)
        except HarnessError as exc:
            self.errors.append(f"{node_id}: {str(exc).splitlines()[0]}")

    def _run(self) -> None:
        while True:
            node_id = self._queue.get()
            if node_id == _STOP or self._stop.is_set():
                return
            self._rearm(node_id)

    def stop(self) -> None:
        """Idempotent; safe to call from any thread but the rearmer's own."""
        self._stop.set()
        self.cluster.remove_listener(self._on_start)
        if self._thread is not None:
            self._queue.put(_STOP)
            self._thread.join(timeout=self.ready_within_s + 5.0)
