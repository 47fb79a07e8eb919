"""Stop live runs when the process ends: an atexit hook, and SIGTERM/SIGHUP turned into KeyboardInterrupt."""

from __future__ import annotations

import atexit
import os
import signal
import threading
from collections.abc import Callable
from types import FrameType

__all__ = ["GUARD", "HANDLED_SIGNALS", "ExitGuard"]

HANDLED_SIGNALS = (signal.SIGTERM, signal.SIGHUP)


class ExitGuard:
    """Keeps one cleanup callable per live run and runs them all at exit or on a terminating signal.

    Every backend's runs register here (``Cluster`` does, for its whole run; the Docker backend also
    registers a sweep of its labelled resources). Ctrl-C (SIGINT) already raises KeyboardInterrupt,
    which unwinds ``with Cluster(...)`` blocks and pytest fixtures; SIGTERM and SIGHUP are turned
    into the same KeyboardInterrupt (so the same ``finally`` code runs) the first time, and into an
    immediate cleanup plus the signal's default action the second time (or when no run is live).
    Whatever a run did not remove by then is removed by the atexit hook. Handlers are installed only
    from the main thread and only over the default disposition (an application's own handler is
    left alone). Thread-safe.
    """

    def __init__(self, hooks: bool = True) -> None:
        """``hooks=False``: never install the atexit hook or signal handlers (for tests)."""
        self._lock = threading.RLock()  # the signal handler runs on the main thread, maybe inside a call
        self._runs: dict[str, Callable[[], object]] = {}
        self._installed = not hooks
        self._signalled = False

    def register(self, key: str, cleanup: Callable[[], object]) -> None:
        """Run ``cleanup()`` at exit unless ``unregister(key)`` comes first (the run closed cleanly)."""
        with self._lock:
            self._runs[key] = cleanup
            if not self._installed:
                self._install()

    def unregister(self, key: str) -> None:
        with self._lock:
            self._runs.pop(key, None)

    @property
    def live(self) -> list[str]:
        with self._lock:
            return list(self._runs)

    def run_all(self) -> list[str]:
        """Run and forget every registered cleanup, newest first (a run registered inside another's
        lifetime is torn down before it); returns the errors as text (never raises)."""
        with self._lock:
            runs, self._runs = self._runs, {}
        errors = []
        for key, cleanup in reversed(runs.items()):
            try:
                cleanup()
            except Exception as exc:  # noqa: BLE001 - keep cleaning the other runs
                errors.append(f"cleaning up {key}: {type(exc).__name__}: {exc}")
        return errors

    def _install(self) -> None:
        atexit.register(self.run_all)
        self._installed = True
        if threading.current_thread() is not threading.main_thread():
            return
        for signum in HANDLED_SIGNALS:
            if signal.getsignal(signum) in (signal.SIG_DFL, None):
                signal.signal(signum, self._on_signal)

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        name = signal.Signals(signum).name
        if self._signalled or not self.live:
            # Second signal (or nothing to clean): clean up now and die the way the signal asks.
            self.run_all()
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)
            return
        self._signalled = True
        raise KeyboardInterrupt(f"{name}: stopping this process's runs and removing what they started")


GUARD = ExitGuard()
