"""Process faults: kill / terminate / pause / restart nodes chosen by id or role, recorded with who and the term."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from faults.base import as_target, bounded, check_known, check_number
from faults.verify import UNVERIFIED, Verification, node_silent
from harness.errors import FaultError, HarnessError
from harness.fault import FaultRecord, Target, check_available, record_fault, record_heal, resolve_target

if TYPE_CHECKING:
    from harness.cluster import Cluster

MAX_STOP_TIMEOUT_S = 60.0


class _ProcessFault:
    """Acts on each resolved node in turn and remembers whom it hit, so ``heal`` undoes exactly
    that, also after a partial inject. ``heal`` is idempotent and thread-safe."""

    name = "process"
    capability = "can_kill"

    def __init__(self, target: Target | str) -> None:
        self.target = as_target(target)
        self._lock = threading.Lock()
        self._hit: list[str] = []
        self._record: FaultRecord | None = None
        self._verification = UNVERIFIED

    def available(self, cluster: Cluster) -> str | None:
        check_known(cluster, self.target)
        if not getattr(cluster.capabilities, self.capability):
            return f"backend {cluster.backend.name} cannot {self.name} nodes ({self.capability} is false)"
        return self.target.unavailable_reason(cluster.nodes)

    def setup(self, cluster: Cluster) -> None:
        """Nothing to prepare: a node already down is simply not hit (recorded as such)."""

    def teardown(self, cluster: Cluster) -> None:
        """Nothing left: ``heal`` brought back exactly the nodes this fault took down."""

    def _params(self) -> dict[str, object]:
        return {"action": self.name, "target": str(self.target)}

    def _act(self, cluster: Cluster, node_id: str) -> None:
        raise NotImplementedError

    def _undo(self, cluster: Cluster, node_id: str) -> None:
        raise NotImplementedError

    def _took_effect(self, cluster: Cluster, node_id: str) -> bool | None:
        """Checked right after acting on ``node_id`` (default: the process is gone); None: unknown."""
        return not cluster.is_running(node_id)

    def verify(self, cluster: Cluster) -> Verification:
        """Whether the action took effect on every node hit (vacuous when no node was running)."""
        if not self._hit:
            return Verification(False, "no target node was running")
        seen = {n: self._took_effect(cluster, n) for n in self._hit}
        missed = [n for n, ok in seen.items() if ok is False]
        if any(ok is None for ok in seen.values()) and not missed:
            return Verification(None, f"cannot observe {self.name} on {', '.join(self._hit)}")
        if missed:
            return Verification(False, f"{self.name} did not take effect on {', '.join(missed)}")
        return Verification(True, f"{self.name} took effect on {', '.join(self._hit)}")

    def inject(self, cluster: Cluster) -> FaultRecord:
        if self._record is not None:
            raise FaultError(f"{self.name} is already injected")
        ids, term = resolve_target(cluster, self.target)
        running = [n for n in ids if cluster.is_running(n)]
        params = {**self._params(), "skipped_not_running": [n for n in ids if n not in running]}
        try:
            for node_id in running:
                self._act(cluster, node_id)
                self._hit.append(node_id)
        except HarnessError as exc:
            self._record = record_fault(cluster, self.name, {**params, "error": str(exc)}, self._hit, term)
            raise FaultError(f"{self.name} {self.target}: failed on a node after hitting "
                             f"{self._hit or 'none'}: {exc}") from exc
        self._verification = self.verify(cluster)
        self._record = record_fault(cluster, self.name, {**params, **self._outcome()}, self._hit, term)
        return self._record

    def _outcome(self) -> dict[str, object]:
        """Parameters known only after acting (e.g. what a power cut dropped), for the record."""
        return {}

    def heal(self, cluster: Cluster) -> None:
        with self._lock:
            while self._hit:
                self._undo(cluster, self._hit[-1])
                self._hit.pop()
            if self._record is not None:
                record_heal(cluster, self._record, **self._verification.heal_fields())
                self._record = None
                self._verification = UNVERIFIED


class Kill(_ProcessFault):
    """Stop the target nodes (SIGKILL, or SIGTERM with ``hard=False``); heal starts them again
    with their data directories (unless something, e.g. the crash supervisor, already did)."""

    def __init__(self, target: Target | str, hard: bool = True, stop_timeout_s: float = 5.0) -> None:
        super().__init__(target)
        if not isinstance(hard, bool):
            raise FaultError(f"hard must be a bool, got {hard!r}")
        self.hard = hard
        self.stop_timeout_s = check_number("stop_timeout_s", stop_timeout_s, 0.0, MAX_STOP_TIMEOUT_S)
        self.name = "kill" if hard else "terminate"
        self.capability = "can_kill" if hard else "can_terminate"

    def _act(self, cluster: Cluster, node_id: str) -> None:
        if self.hard:
            cluster.kill(node_id)
        else:
            cluster.terminate(node_id, self.stop_timeout_s)

    def _undo(self, cluster: Cluster, node_id: str) -> None:
        if not cluster.is_running(node_id):
            cluster.start(node_id)


class Pause(_ProcessFault):
    """SIGSTOP the target nodes (sockets stay open, nothing answers: like a long GC pause);
    heal resumes them. Needs a backend that can pause."""

    name = "pause"
    capability = "can_pause"

    def _act(self, cluster: Cluster, node_id: str) -> None:
        cluster.pause(node_id)

    def _took_effect(self, cluster: Cluster, node_id: str) -> bool | None:
        """The paused process stopped answering."""
        return node_silent(cluster, node_id)

    def _undo(self, cluster: Cluster, node_id: str) -> None:
        if cluster.is_running(node_id) and cluster.is_paused(node_id):
            cluster.resume(node_id)


class Restart(_ProcessFault):
    """Stop (SIGTERM, or SIGKILL with ``hard=True``) and start the target nodes at once. The heal
    event only closes the record: the nodes are already back when ``inject`` returns."""

    name = "restart"
    capability = "can_restart"

    def __init__(self, target: Target | str, hard: bool = False) -> None:
        super().__init__(target)
        if not isinstance(hard, bool):
            raise FaultError(f"hard must be a bool, got {hard!r}")
        self.hard = hard

    def _params(self) -> dict[str, object]:
        return {**super()._params(), "hard": self.hard}

    def _act(self, cluster: Cluster, node_id: str) -> None:
        cluster.restart(node_id, hard=self.hard)

    def _took_effect(self, cluster: Cluster, node_id: str) -> bool | None:
        """A new process runs."""
        return cluster.is_running(node_id)

    def _undo(self, cluster: Cluster, node_id: str) -> None:
        if not cluster.is_running(node_id):
            cluster.start(node_id)


# ---- suite helpers ----------------------------------------------------------------------------

@contextmanager
def stopped(cluster: Cluster, target: Target | str, hard: bool = True,
            for_s: float | None = None) -> Iterator[FaultRecord]:
    """``with stopped(cluster, "leader"): ...``: the nodes are down for the block (or ``for_s``)."""
    with bounded(Kill(target, hard), cluster, for_s) as record:
        yield record


@contextmanager
def paused(cluster: Cluster, target: Target | str, for_s: float | None = None) -> Iterator[FaultRecord]:
    """``with paused(cluster, "followers"): ...``: the nodes are SIGSTOPped for the block."""
    with bounded(Pause(target), cluster, for_s) as record:
        yield record


def _one_shot(fault: _ProcessFault, cluster: Cluster) -> FaultRecord:
    check_available(fault, cluster)
    return fault.inject(cluster)


def kill(cluster: Cluster, target: Target | str, hard: bool = True) -> Kill:
    """Stop the nodes now and return the injected fault; ``fault.heal(cluster)`` starts them again.
    Prefer ``stopped(...)`` in suites: it heals in ``finally``."""
    fault = Kill(target, hard)
    _one_shot(fault, cluster)
    return fault


def terminate(cluster: Cluster, target: Target | str) -> Kill:
    """SIGTERM variant of ``kill``."""
    return kill(cluster, target, hard=False)


def pause(cluster: Cluster, target: Target | str) -> Pause:
    """Pause the nodes now; ``resume(cluster, fault)`` (or ``fault.heal``) resumes them."""
    fault = Pause(target)
    _one_shot(fault, cluster)
    return fault


def resume(cluster: Cluster, fault: Pause) -> None:
    """Resume what ``pause`` paused and record the heal."""
    fault.heal(cluster)


def restart(cluster: Cluster, target: Target | str, hard: bool = False) -> FaultRecord:
    """Restart the nodes now (recorded as one ``restart`` fault followed by its heal)."""
    fault = Restart(target, hard)
    record = _one_shot(fault, cluster)
    fault.heal(cluster)
    return record
