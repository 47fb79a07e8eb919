"""Storage faults: a power loss (SIGKILL plus the loss of every write the node had not fsynced)
and seeded disk corruption of a stopped node's WAL or metadata.

A plain SIGKILL keeps the page cache, so a missing fsync never shows. ``PowerLoss`` kills the
node through the process-fault machinery, then rewrites its data directory to what its sync
ledger says was durable (``faults/ledger.py``) before anything starts it again; heal starts it.
What the cut dropped (bytes per file, entries removed, metadata reverted) is the fault's bite:
dropped nothing means the node had synced everything, and the fault is recorded as vacuous.

``Corrupt`` stops the node (SIGKILL), damages its WAL or metadata (``faults/corruption.py``) and
heal starts it again. A node that then refuses to start (exit 3) did the right thing when the
plan expected a refusal; the crashes checker reads the ``corrupt`` fault event for that, and the
crash supervisor never restarts a status-3 exit. Both faults need the node's data directory on
the harness's file system: true for the local backend and for the Docker backend (the run
directory is bind-mounted at the same path, and the node runs as the harness's user).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from faults.base import as_enum, check_number
from faults.corruption import (
    CorruptionPlan,
    Mode,
    StorageFile,
    Where,
    apply_corruption,
    plan_corruption,
)
from faults.ledger import LEDGER_FILE, LedgerError, power_cut
from faults.process import Kill
from faults.verify import Verification
from harness.errors import FaultError

if TYPE_CHECKING:
    from harness.cluster import Cluster

MAX_CORRUPT_BYTES = 64


class PowerLoss(Kill):
    """SIGKILL the target nodes and drop every write they had not fsynced; heal starts them."""

    def __init__(self, target: str = "leader") -> None:
        super().__init__(target, hard=True)
        self.name = "power-loss"
        self._cuts: dict[str, dict[str, Any]] = {}

    def _act(self, cluster: Cluster, node_id: str) -> None:
        data = cluster.run.node_data(node_id)
        if not (data / LEDGER_FILE).is_file():
            raise FaultError(f"power-loss {node_id}: {data / LEDGER_FILE} missing (node not started "
                             "with --sync-ledger): cannot tell what was durable")
        cluster.kill(node_id)
        try:
            self._cuts[node_id] = power_cut(data).to_json()
        except (LedgerError, OSError) as exc:
            self._cuts[node_id] = {"error": str(exc)}
            cluster.start(node_id)  # not in the hit list, so heal would never start it
            raise FaultError(f"power-loss {node_id}: {exc} (node restarted as after a plain kill)") from None

    @property
    def cuts(self) -> dict[str, dict[str, Any]]:
        """Per node hit: what the cut dropped (``faults.ledger.CutReport.to_json``), until heal."""
        return dict(self._cuts)

    def _outcome(self) -> dict[str, object]:
        return {"cut": dict(self._cuts)}

    def verify(self, cluster: Cluster) -> Verification:
        """Bit when the node was killed, like a plain kill: the crash exercised the cluster even
        when the cut found nothing unsynced to drop (that is then said, not judged vacuous, so a
        nemesis run of power cuts on a correct node is not turned into "unknown")."""
        killed = super().verify(cluster)
        if killed.bit is not True:
            return killed
        lost = {n: c["total_dropped_bytes"] for n, c in self._cuts.items() if c.get("total_dropped_bytes")
                or c.get("removed") or c.get("reverted")}
        if not lost:
            return Verification(True, f"{killed.evidence}; the power cut dropped 0 bytes: every write had "
                                      "been fsynced (a plain crash)")
        return Verification(True, "power cut dropped " + ", ".join(
            f"{n}: {b} bytes ({', '.join(sorted(self._cuts[n]['dropped_bytes']))})" for n, b in lost.items()))

    def heal(self, cluster: Cluster) -> None:
        super().heal(cluster)
        self._cuts = {}


class Corrupt(Kill):
    """Stop the target nodes and damage their WAL or metadata (seeded); heal starts them again."""

    def __init__(self, target: str = "one", file: str = "wal", where: str = "tail", mode: str = "flip",
                 nbytes: int = 1, plans: Mapping[str, Any] | None = None) -> None:
        super().__init__(target, hard=True)
        self.name = "corrupt"
        self.file = as_enum(StorageFile, file, "file")
        self.where = as_enum(Where, where, "where")
        self.mode = as_enum(Mode, mode, "mode")
        self.nbytes = int(check_number("nbytes", nbytes, 1, MAX_CORRUPT_BYTES, integer=True))
        if plans is not None and not isinstance(plans, Mapping):
            raise FaultError(f"plans must be an object of node -> plan, got {plans!r}")
        self.plans = {str(n): CorruptionPlan.from_json(p) for n, p in (plans or {}).items()}
        self._applied: dict[str, dict[str, Any] | None] = {}

    def _params(self) -> dict[str, object]:
        return {**super()._params(), "file": self.file.value, "where": self.where.value,
                "mode": self.mode.value, "nbytes": self.nbytes}

    def _act(self, cluster: Cluster, node_id: str) -> None:
        cluster.kill(node_id)
        data = cluster.run.node_data(node_id)
        plan = self.plans.get(node_id)
        if plan is None:
            plan = plan_corruption(data, self.file, self.where, self.mode, self.nbytes, cluster.rng("corrupt"))
        if plan is None:
            self._applied[node_id] = None
            return
        try:
            apply_corruption(data, plan)
        except FaultError:
            cluster.start(node_id)  # not in the hit list, so heal would never start it
            raise
        self._applied[node_id] = plan.to_json()

    @property
    def applied(self) -> dict[str, dict[str, Any] | None]:
        """Per node hit: the corruption plan applied (None: nothing to corrupt), until heal."""
        return dict(self._applied)

    def _outcome(self) -> dict[str, object]:
        return {"plans": {n: p for n, p in self._applied.items() if p is not None},
                "nothing_to_corrupt": sorted(n for n, p in self._applied.items() if p is None)}

    def verify(self, cluster: Cluster) -> Verification:
        stopped = super().verify(cluster)
        if stopped.bit is not True:
            return stopped
        done = {n: p for n, p in self._applied.items() if p is not None}
        if not done:
            return Verification(False, f"nothing to corrupt ({self.file.value} {self.where.value}) on "
                                       f"{', '.join(self._hit)}")
        return Verification(True, "; ".join(
            f"{n}: {p['path']} bytes {p['offset']}..{p['offset'] + p['length']} "
            f"{'zeroed' if not p['mask'] else 'xor ' + hex(p['mask'])} (expect {p['expect']})"
            for n, p in done.items()))

    def heal(self, cluster: Cluster) -> None:
        super().heal(cluster)
        self._applied = {}

