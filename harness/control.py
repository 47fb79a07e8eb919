"""The recorded node verbs a Cluster mixes in: process control (start, kill, pause, ...), exit and
start listeners, and runtime flag changes. Every change is an event in the run's history."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from harness.backend import Backend, Capabilities, log_tail
from harness.errors import ConfigError
from harness.history import History, NodeEventType
from harness.supervisor import exit_details

FATAL_TAIL_LINES = 50  # the node's fatal record is among its last log lines

if TYPE_CHECKING:
    from harness.systems.base import NodeApi


class NodeControl:
    """Mixin for Cluster: the node verbs above, each recorded in the history under the cluster's
    lock. It owns no state; Cluster.__init__ creates the attributes declared below."""

    backend: Backend
    _lock: threading.RLock
    _up: set[str]
    _exit_listeners: list[Callable[[str, int], None]]
    _start_listeners: list[Callable[[str], None]]

    if TYPE_CHECKING:  # provided by Cluster
        @property
        def history(self) -> History: ...

        @property
        def capabilities(self) -> Capabilities: ...

        def _check(self, node_id: str) -> str: ...

        def node(self, node_id: str) -> NodeApi: ...

    # ---- process control (recorded) -----------------------------------------------------------

    def add_exit_listener(self, listener: Callable[[str, int], None]) -> None:
        """Call ``listener(node_id, code)`` whenever ``reap`` finds a node that exited on its own."""
        self._exit_listeners.append(listener)

    def add_start_listener(self, listener: Callable[[str], None]) -> None:
        """Call ``listener(node_id)`` after every ``start`` (a restart's and the crash supervisor's
        too): the process runs but may not answer yet. It runs in the starting thread, maybe under
        the cluster's lock, so it must not block (a fault hands the work to a thread of its own)."""
        self._start_listeners.append(listener)

    def remove_listener(self, listener: Callable[..., None]) -> None:
        """Stop calling ``listener`` (a start or an exit listener); no error if it is not registered."""
        for listeners in (self._start_listeners, self._exit_listeners):
            if listener in listeners:
                listeners.remove(listener)

    def reap(self) -> list[tuple[str, int]]:
        """Record an ``exit`` event for every node that exited on its own since last seen
        (the observer and the crash supervisor call this on their ticks)."""
        exited = []
        with self._lock:
            for node_id in sorted(self._up):
                code = self.backend.exit_code(node_id)
                if code is not None:
                    self._up.discard(node_id)
                    self.history.node_event(node_id, NodeEventType.EXIT, code, **exit_details(
                        code, log_tail(self.backend.log_path(node_id), FATAL_TAIL_LINES)))
                    exited.append((node_id, code))
        for node_id, code in exited:
            for listener in list(self._exit_listeners):
                listener(node_id, code)
        return exited

    def is_running(self, node_id: str) -> bool:
        return self.backend.is_running(self._check(node_id))

    def start(self, node_id: str) -> None:
        """Start a stopped node (its data directory is kept)."""
        with self._lock:
            self.reap()
            self.backend.start(self._check(node_id))
            self._up.add(node_id)
            self.history.node_event(node_id, NodeEventType.START)
        for listener in list(self._start_listeners):
            listener(node_id)

    def kill(self, node_id: str) -> int | None:
        """SIGKILL; returns the exit code."""
        return self._stop(node_id, NodeEventType.KILL, lambda: self.backend.kill(node_id))

    def terminate(self, node_id: str, timeout_s: float = 5.0) -> int | None:
        """SIGTERM (SIGKILL after ``timeout_s``); returns the exit code."""
        return self._stop(node_id, NodeEventType.TERMINATE,
                          lambda: self.backend.terminate(node_id, timeout_s))

    def _stop(self, node_id: str, event: NodeEventType, stop: Callable[[], int | None]) -> int | None:
        with self._lock:
            self._check(node_id)
            self.reap()
            if node_id not in self._up:
                return self.backend.exit_code(node_id)
            code = stop()
            self._up.discard(node_id)
            self.history.node_event(node_id, event, code)
            return code

    def restart(self, node_id: str, hard: bool = False) -> None:
        """Stop (SIGKILL if ``hard`` else SIGTERM) if running, then start again."""
        with self._lock:
            code = self.kill(node_id) if hard else self.terminate(node_id)
            self.history.node_event(node_id, NodeEventType.RESTART, code)
            self.start(node_id)

    def pause(self, node_id: str) -> None:
        if not self.capabilities.can_pause:
            raise ConfigError(f"backend {self.backend.name} cannot pause nodes")
        with self._lock:
            self.backend.pause(self._check(node_id))
            self.history.node_event(node_id, NodeEventType.PAUSE)

    def resume(self, node_id: str) -> None:
        with self._lock:
            self.backend.resume(self._check(node_id))
            self.history.node_event(node_id, NodeEventType.RESUME)

    def is_paused(self, node_id: str) -> bool:
        return self.backend.is_paused(self._check(node_id))

    # ---- flags (recorded) ---------------------------------------------------------------------

    def flags(self, node_id: str) -> dict[str, Any]:
        return self.node(node_id).flags()

    def set_flag(self, node_id: str, name: str, value: Any) -> Any:
        """Change a runtime flag on one node (recorded); returns the node's new value."""
        new = self.node(node_id).set_flag(name, value)
        self.history.node_event(node_id, NodeEventType.FLAG, flag=name, value=new)
        return new

    @contextmanager
    def paused(self, node_id: str) -> Iterator[None]:
        """Pause a node for the duration of the block (resumed in ``finally``)."""
        self.pause(node_id)
        try:
            yield
        finally:
            self.resume(node_id)
