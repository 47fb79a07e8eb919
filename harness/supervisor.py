"""Crash supervisor (off unless started): restarts a node that exited with the injected-crash code;
and the classification of every node exit status (docs/node-api.md, "Exit statuses")."""

from __future__ import annotations

import enum
import json
import queue
import threading
from collections.abc import Callable, Iterable
from types import TracebackType
from typing import Any, Protocol

from harness.errors import HarnessError
from harness.history import History, NodeEventType
from harness.runinfo import RunRecord

INJECTED_CRASH_EXIT = 85
INVARIANT_VIOLATION_EXIT = 70
FATAL_STORAGE_EXIT = 74
FATAL_LOG_MARK = "RAFTCHAOS_FATAL "
"""The node logs its fatal record as one line: this prefix, then JSON (nodes/fatal.py)."""


class ExitCause(enum.StrEnum):
    """Why a node process ended, from its exit status (negative = killed by that signal)."""

    CLEAN = "clean"  # 0
    BAD_CONFIG = "bad_config"  # 2: refused its flags or cluster file at start
    CORRUPT_STORAGE = "corrupt_storage"  # 3: refused corrupt storage at start
    INJECTED_CRASH = "injected_crash"  # 85: a fault_crash_* flag fired (kuduraft's exit)
    INVARIANT_VIOLATION = "invariant_violation"  # 70: kuduraft's CHECK / LOG(FATAL)
    FATAL_STORAGE = "fatal_storage"  # 74: a WAL or metadata write failed
    SIGNAL = "signal"  # < 0
    ERROR = "error"  # anything else (1: an uncaught exception in the node)


_BY_CODE = {0: ExitCause.CLEAN, 2: ExitCause.BAD_CONFIG, 3: ExitCause.CORRUPT_STORAGE,
            INJECTED_CRASH_EXIT: ExitCause.INJECTED_CRASH,
            INVARIANT_VIOLATION_EXIT: ExitCause.INVARIANT_VIOLATION,
            FATAL_STORAGE_EXIT: ExitCause.FATAL_STORAGE}


def classify_exit(code: int) -> ExitCause:
    if code < 0:
        return ExitCause.SIGNAL
    return _BY_CODE.get(code, ExitCause.ERROR)


def fatal_record(log_lines: Iterable[str]) -> dict[str, Any] | None:
    """The last fatal record a node logged (None when the lines hold none or only damaged ones)."""
    found = None
    for line in log_lines:
        at = line.find(FATAL_LOG_MARK)
        if at < 0:
            continue
        try:
            doc = json.loads(line[at + len(FATAL_LOG_MARK):])
        except ValueError:
            continue
        if isinstance(doc, dict):
            found = doc
    return found


def exit_details(code: int, log_lines: Iterable[str]) -> dict[str, Any]:
    """Fields of a node ``exit`` event beside its code: ``cause`` always; ``fatal`` (the node's own
    record, read from its log tail after the process is gone) for statuses 70 and 74, None when
    the log did not keep it."""
    cause = classify_exit(code)
    details: dict[str, Any] = {"cause": cause.value}
    if cause in (ExitCause.INVARIANT_VIOLATION, ExitCause.FATAL_STORAGE):
        details["fatal"] = fatal_record(log_lines)
    return details


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
    Any other exit code is left alone (it is a real crash, for the checkers to report): the exit
    event carries its ``cause`` (``classify_exit``) and, for an invariant violation or a fatal
    storage error, the node's ``fatal`` record.
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
        RunRecord.of(self.cluster).supervisor_started(self.restart_delay_s, self.poll_s)  # run.json
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
