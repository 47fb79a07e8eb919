"""Observer: background threads sampling every node's state into the history at a fixed interval,
and copying each node's own event trace (``GET /events``) into it as ``trace`` events.

A sample is the node's observation through the System seam (``Cluster.status``: kuduraft's
``/status``, or the fields every system reports); the trace is copied only from a system with
``Capability.NODE_TRACE`` (kuduraft's node)."""

from __future__ import annotations

import threading
from types import TracebackType
from typing import Any, Protocol

from harness.errors import HarnessError, NodeUnreachable
from harness.history import History
from harness.systems.base import Capability

DEFAULT_INTERVAL_S = 0.05


class Observed(Protocol):
    """What the observer needs from a cluster."""

    @property
    def nodes(self) -> tuple[str, ...]: ...

    @property
    def history(self) -> History: ...

    def status(self, node_id: str) -> dict[str, Any]: ...

    def is_running(self, node_id: str) -> bool: ...

    def is_paused(self, node_id: str) -> bool: ...

    def reap(self) -> list[tuple[str, int]]: ...


def trim_status(status: dict[str, Any]) -> dict[str, Any]:
    """The status without ``flags`` (flag changes are recorded as ``node`` events already)."""
    return {k: v for k, v in status.items() if k != "flags"}


class _TraceCursor:
    """Where the observer is in one node's trace: the process (``boot``) and the last ``seq``."""

    def __init__(self) -> None:
        self.boot: str | None = None
        self.since = 0


class Observer:
    """Samples each node's ``/status`` every ``interval_s`` as ``sample`` events (one thread per
    node, so a silent node does not delay the others; its sample carries ``status: null`` and
    the error). Also records nodes that exited on their own (``Cluster.reap``), and each node's
    new trace events (``trace``, node clock in ``node_t``): the observer only decides *when* the
    harness learns about them, the node's timestamps say when they happened. ``stop()`` is
    idempotent and returns once the threads have ended.
    """

    def __init__(self, cluster: Observed, interval_s: float = DEFAULT_INTERVAL_S) -> None:
        if interval_s <= 0:
            raise HarnessError(f"observer interval must be positive, got {interval_s}")
        self.cluster = cluster
        self.interval_s = interval_s
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._cursors: dict[str, _TraceCursor] = {}
        self.samples = 0
        self.traced = 0
        has = getattr(cluster, "has", None)  # a stand-in cluster without a System: kuduraft's node
        self._tracing = has(Capability.NODE_TRACE) if has is not None else True

    def start(self) -> Observer:
        if self._threads:
            raise HarnessError("observer already started")
        attach = getattr(self.cluster, "attach", None)
        if attach is not None:
            attach(self.stop)
        for node_id in self.cluster.nodes:
            thread = threading.Thread(target=self._run, args=(node_id,), name=f"observer-{node_id}",
                                      daemon=True)
            self._threads.append(thread)
            thread.start()
        return self

    def _run(self, node_id: str) -> None:
        history = self.cluster.history
        tick = 0
        start = history.now()
        while not self._stop.is_set():
            self._sample(node_id, history)
            tick += 1
            # Fixed rate: wait for the next tick boundary (skipping ticks that were overrun).
            delay = start + tick * self.interval_s - history.now()
            if delay < 0:
                tick += int(-delay // self.interval_s) + 1
                delay = start + tick * self.interval_s - history.now()
            if self._stop.wait(max(0.0, delay)):
                break

    def _sample(self, node_id: str, history: History) -> None:
        try:
            if node_id == self.cluster.nodes[0]:
                self.cluster.reap()
            if not self.cluster.is_running(node_id):
                history.sample(node_id, None, "not running")
            elif self.cluster.is_paused(node_id):
                history.sample(node_id, None, "paused")
            else:
                history.sample(node_id, trim_status(self.cluster.status(node_id)))
                if self._tracing:
                    self._trace(node_id, history)
            self.samples += 1
        except NodeUnreachable as exc:
            history.sample(node_id, None, str(exc))
        except HarnessError as exc:
            if "closed" in str(exc):  # the history closed under us: the run is over
                self._stop.set()
            else:
                history.sample(node_id, None, str(exc))

    def _trace(self, node_id: str, history: History) -> None:
        """Copy the node's trace events after the last one recorded (all of them, page by page)."""
        node = getattr(self.cluster, "node", None)
        if node is None:
            return
        cursor = self._cursors.setdefault(node_id, _TraceCursor())
        client = node(node_id)
        for _ in range(100):  # pages; a bound so a misbehaving node cannot pin the thread
            page = client.events(cursor.since)
            boot = str(page.get("boot"))
            if boot != cursor.boot:
                if cursor.boot is not None:
                    cursor.since = 0  # a new process: its sequence starts over
                    cursor.boot = boot
                    continue
                cursor.boot = boot
            if not page.get("complete", True):
                history.note("trace gap: the observer fell behind the node's event ring",
                             node=node_id, gap=True, since=cursor.since)
            for event in page["events"]:
                history.trace(node_id, boot, event)
                self.traced += 1
            cursor.since = int(page.get("next_since", cursor.since))
            if not page.get("truncated"):
                return

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=10)

    def __enter__(self) -> Observer:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()
