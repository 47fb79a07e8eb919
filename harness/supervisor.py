"""Crash supervisor (off unless started): restarts a node that exited with the injected-crash code."""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from types import TracebackType
from typing import Protocol

from harness.errors import HarnessError
from harness.history import History, NodeEventType

INJECTED_CRASH_EXIT = 85


class Supervised(Protocol):
    @property
    def history(self) -> History: ...

    def reap(self) -> list[tuple[str, int]]: ...

    def add_exit_listener(self, listener: Callable[[str, int], None]) -> None: ...

    def start(self, node_id: str) -> None: ...

    def is_running(self, node_id: str) -> bool: ...


class CrashSupervisor:
    """Watches for nodes exiting on their own (every ``poll_s``); one that exited with status 85
    (an injected crash) is started again ``restart_delay_s`` later. The exit and the start are
    recorded as ``node`` events (``exit`` by the cluster's reap, then ``restart`` and ``start``).
    Any other exit code is left alone (it is a real crash, for the checkers to report).
    ``restarts`` counts restarts done; ``errors`` keeps restart failures.
    """

    def __init__(self, cluster: Supervised, restart_delay_s: float = 0.5, poll_s: float = 0.05,
                 codes: frozenset[int] = frozenset({INJECTED_CRASH_EXIT})) -> None:
        self.cluster = cluster
        self.restart_delay_s = restart_delay_s
        self.poll_s = poll_s
        self.codes = codes
        self.restarts = 0
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._exits: queue.SimpleQueue[tuple[str, int]] = queue.SimpleQueue()

    def start(self) -> CrashSupervisor:
        if self._thread is not None:
            raise HarnessError("supervisor already started")
        attach = getattr(self.cluster, "attach", None)
        if attach is not None:
            attach(self.stop)
        self.cluster.add_exit_listener(lambda node_id, code: self._exits.put((node_id, code)))
        self._thread = threading.Thread(target=self._run, name="crash-supervisor", daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(self.poll_s):
            try:
                self.cluster.reap()  # exits found here or by anyone else arrive via the listener
            except HarnessError:
                return  # the run is closing
            while not self._exits.empty():
                node_id, code = self._exits.get()
                if code in self.codes and not self._stop.wait(self.restart_delay_s):
                    self._restart(node_id, code)

    def _restart(self, node_id: str, code: int) -> None:
        try:
            if self.cluster.is_running(node_id):
                return  # someone else restarted it during the delay
            self.cluster.history.node_event(node_id, NodeEventType.RESTART, code, by="supervisor")
            self.cluster.start(node_id)
            self.restarts += 1
        except HarnessError as exc:
            self.errors.append(f"{node_id}: {exc}")

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def __enter__(self) -> CrashSupervisor:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()
