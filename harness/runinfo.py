"""A run's ``run.json``: what the run actually used, so ``raftchaos replay`` rebuilds the same run.

One writer for every entry point (``raftchaos run``/``reproduce``/``replay``/``up`` and the pytest
plugin). The objects that shape a run register their effective parameters with the run's
``RunRecord`` when they start (``Workload.start``, ``CrashSupervisor.start``, ``Nemesis.begin``),
so a suite test that builds its workload or nemesis itself is recorded as it ran, never as the
defaults. ``harness.run.Run`` (every entry point's lifecycle) names the run and writes the file
(``RunRecord.write``) when the cluster has its first leader and again when the active phase ends.

Schema (``raftchaos.run/2``): ``name``, ``seed``, ``system`` (the system under test, as in the
spec: ``kuduraft`` or ``etcd``; a replay rebuilds its cluster from the spec, so it runs the same
one), ``cluster`` (the ``spec.json`` document without its ``run_dir``), ``workload`` (``enabled``, ``clients``, ``rate_hz``, ``keys``, ``mix``,
``op_timeout_s``), ``supervisor`` (``enabled``, ``restart_delay_s``, ``poll_s``), ``schedule``
(``file``, ``steps``; null when no nemesis ran), ``duration_s``, ``timeline`` (seconds from the
run's start, the first agreed leader: ``workload_start_s``, ``schedule_start_s``,
``workload_stop_s``; measured, so a replay's differ by scheduling noise), ``expect``,
``versions`` and, for a replay, ``replay_of``. ``harness.runplan.read_run_info`` is its strict
reader.
"""

from __future__ import annotations

import json
import threading
import weakref
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from harness.cluster import Cluster
    from harness.workload import WorkloadSpec

RUN_INFO = "run.json"
SCHEMA = "raftchaos.run/2"
# The fields of run.json that differ between a run and its faithful replay: measured offsets, the
# tool versions' run, the replay's own provenance. Everything else must be equal.
MEASURED = ("timeline", "replay_of")

_RECORDS: weakref.WeakKeyDictionary[Any, RunRecord] = weakref.WeakKeyDictionary()
_LOCK = threading.Lock()


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


class RunRecord:
    """The effective parameters of one cluster's run, registered as the run's parts start."""

    def __init__(self, cluster: Any) -> None:
        try:
            self._cluster: Any = weakref.ref(cluster)
        except TypeError:
            self._cluster = lambda: cluster
        self.name: str | None = None
        self.expect: list[list[Any]] = []
        self.replay_of: str | None = None
        self.start_t: float | None = None
        self.end_t: float | None = None
        self.workloads: list[dict[str, Any]] = []
        self.supervisor: dict[str, Any] | None = None
        self.schedules: list[dict[str, Any]] = []
        self._lock = threading.Lock()

    @classmethod
    def of(cls, cluster: Any) -> RunRecord:
        """The record of ``cluster``'s run (made on first use; it lives as long as the cluster)."""
        with _LOCK:
            try:
                record = _RECORDS.get(cluster)
                if record is None:
                    record = _RECORDS[cluster] = cls(cluster)
            except TypeError:  # a stand-in cluster (unit tests) that cannot be weakly keyed: not kept
                return cls(cluster)
            return record

    def _now(self) -> float | None:
        try:
            return float(self._cluster().history.now())
        except Exception:  # noqa: BLE001 - a cluster not started (or gone) has no clock yet
            return None

    # ---- registration (by the parts of a run, when they start) ---------------------------------

    def begin(self, name: str, expect: Sequence[tuple[str, Mapping[str, Any]]] = (),
              replay_of: str | None = None) -> None:
        """The entry point names the run once its cluster has a leader: offsets count from here."""
        with self._lock:
            self.name = name
            self.expect = [[n, dict(p)] for n, p in expect]
            self.replay_of = replay_of
            self.start_t = self._now()

    def workload_started(self, spec: WorkloadSpec) -> int:
        """Returns the workload's index in this run (for ``workload_stopped``)."""
        with self._lock:
            self.workloads.append({"clients": spec.clients, "rate_hz": float(spec.rate_per_s), "keys": spec.keys,
                                   "mix": {f.value: w for f, w in sorted(spec.mix.items(), key=lambda x: x[0].value)},
                                   "op_timeout_s": spec.op_timeout_s, "start_t": self._now(), "stop_t": None})
            return len(self.workloads) - 1

    def workload_stopped(self, index: int) -> None:
        with self._lock:
            if 0 <= index < len(self.workloads) and self.workloads[index]["stop_t"] is None:
                self.workloads[index]["stop_t"] = self._now()

    def supervisor_started(self, restart_delay_s: float, poll_s: float) -> None:
        with self._lock:
            self.supervisor = {"enabled": True, "restart_delay_s": restart_delay_s, "poll_s": poll_s}

    def schedule_started(self, path: Path, steps: int, t0: float) -> None:
        with self._lock:
            self.schedules.append({"file": path.name, "steps": steps, "t0": t0})

    def end(self, duration_s: float | None = None) -> None:
        """The run's active phase is over (the test body returned: measured). ``duration_s``: a run
        that lasted a planned time records that (the wait's overshoot is harness polling)."""
        with self._lock:
            if self.end_t is None:
                now = self._now()
                self.end_t = now if duration_s is None or self.start_t is None else self.start_t + duration_s

    # ---- the document ---------------------------------------------------------------------------

    def _offset(self, t: float | None) -> float | None:
        return None if t is None or self.start_t is None else _round(t - self.start_t)

    def doc(self, cluster: Cluster) -> dict[str, Any]:
        """run.json's document (see the module docstring)."""
        with self._lock:
            spec = cluster.spec.to_dict()
            spec.pop("run_dir", None)
            load = self.workloads[0] if self.workloads else None
            schedule = self.schedules[0] if self.schedules else None
            end_t = self.end_t if self.end_t is not None else self._now()
            workload: dict[str, Any] = {"enabled": load is not None}
            if load is not None:
                workload.update({k: load[k] for k in ("clients", "rate_hz", "keys", "mix", "op_timeout_s")})
            doc = {
                "schema": SCHEMA, "name": self.name or spec["test_name"], "seed": spec["seed"],
                "system": spec["system"], "cluster": spec,
                "workload": workload, "workloads": len(self.workloads),
                "supervisor": self.supervisor or {"enabled": False},
                "schedule": {"file": schedule["file"], "steps": schedule["steps"], "schedules": len(self.schedules)}
                if schedule else None,
                "duration_s": self._offset(end_t) or 0.0,
                "timeline": {"workload_start_s": self._offset(load["start_t"]) if load else None,
                             "workload_stop_s": self._offset(load["stop_t"]) if load else None,
                             "schedule_start_s": self._offset(schedule["t0"]) if schedule else None},
                "expect": self.expect, "versions": _versions(cluster),
            }
            if self.replay_of is not None:
                doc["replay_of"] = self.replay_of
            return doc

    def write(self, cluster: Cluster) -> Path:
        """Write run.json atomically into the run directory (a reader never sees half a file)."""
        path = cluster.run.path / RUN_INFO
        tmp = path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(self.doc(cluster), indent=2, sort_keys=True, default=str), encoding="utf-8")
        tmp.replace(path)
        return path


def _versions(cluster: Cluster) -> dict[str, Any]:
    """The versions the cluster noted at start (Python, raftchaos, Toxiproxy, backend)."""
    for event in cluster.history.events():
        if event.get("kind") == "note" and event.get("text") == "versions":
            versions = event.get("versions")
            return dict(versions) if isinstance(versions, Mapping) else {}
    return {}


def comparable_info(doc: Mapping[str, Any]) -> dict[str, Any]:
    """The part of a run.json a faithful replay reproduces exactly (all but ``MEASURED``)."""
    return {k: v for k, v in doc.items() if k not in MEASURED}
