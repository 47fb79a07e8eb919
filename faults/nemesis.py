"""The nemesis: executes planned schedule steps on a live cluster on time, records schedule.jsonl, heals at the end.

Each step waits for its offset with a deadline-based wait on the nemesis's stop event (never a
sleep loop), builds its fault from the catalog, checks availability, injects or heals it (the
fault records its ``fault``/``heal`` events in the history) and appends one line to the run's
``schedule.jsonl``: ``step``, ``offset_s`` (planned), ``t`` (history clock), ``op``, ``slot``,
``fault``, ``params`` (as planned), and for injections ``targets`` (resolved), ``term``,
``resolved`` (the fault event's parameters: groups, links, jitter draws) or ``skipped`` (why) or
``error``. The final heal (every fault still open, then ``restore_health``) always runs, also
after an error or ``stop()``, before anything else looks at the run.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from faults.catalog import build_fault
from harness.errors import FaultError, FaultUnavailable, HarnessError, NoTarget
from harness.fault import Fault, FaultRecord, restore_health
from harness.runinfo import RunRecord
from harness.schedule import Step, StepOp

if TYPE_CHECKING:
    from harness.cluster import Cluster


def read_schedule(path: Path | str) -> list[dict[str, Any]]:
    """The executed steps of a run (``schedule.jsonl``); a torn last line is dropped."""
    out = []
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        if line.strip():
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:
                break
    return out


class Nemesis:
    """Runs ``steps`` against ``cluster``; ``run()`` blocks, ``start()`` runs it on a thread and
    ``stop()`` ends it early. Either way the final heal runs before ``run``/``stop`` return.
    ``errors`` lists injections that failed (the harness's problem, recorded, never raised)."""

    def __init__(self, cluster: Cluster, steps: Sequence[Step], path: Path | None = None) -> None:
        self.cluster = cluster
        self.steps = list(steps)
        self.path = path or cluster.run.schedule_path
        self.errors: list[str] = []
        self.skipped: list[str] = []
        self.executed: list[dict[str, Any]] = []
        self._open: dict[int, Fault] = {}
        self._stop = threading.Event()
        self._done = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.RLock()
        self._slots = max((s.slot for s in self.steps), default=0)
        self.t0: float | None = None

    # ---- lifecycle ------------------------------------------------------------------------------

    def start(self) -> Nemesis:
        if self._thread is not None:
            raise HarnessError("nemesis already started")
        self.cluster.attach(self.stop)
        self._thread = threading.Thread(target=self.run, name="nemesis", daemon=True)
        self._thread.start()
        return self

    def begin(self) -> float:
        """Fix the schedule's time zero (history clock) if not yet fixed; returns it."""
        with self._lock:
            if self.t0 is None:
                self.t0 = self.cluster.history.now()
                self.cluster.history.note("nemesis starting", steps=len(self.steps))
                RunRecord.of(self.cluster).schedule_started(self.path, len(self.steps), self.t0)  # run.json
            return self.t0

    def run(self) -> None:
        """Execute every step on time, then the final heal (always)."""
        t0 = self.begin()
        try:
            for step in self.steps:
                delay = t0 + step.offset_s - self.cluster.history.now()
                if self._stop.wait(max(0.0, delay)):
                    break
                self.apply(step)
        finally:
            self.final_heal()
            self._done.set()

    def now_s(self) -> float:
        """Seconds since the schedule's time zero."""
        return self.cluster.history.now() - self.begin()

    def next_slot(self) -> int:
        with self._lock:
            self._slots += 1
            return self._slots

    def wait(self, timeout_s: float) -> bool:
        """Wait (deadline-bounded) for the schedule to finish; True when it did."""
        return self._done.wait(timeout_s)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=60)

    # ---- steps ----------------------------------------------------------------------------------

    def apply(self, step: Step) -> dict[str, Any]:
        """Execute one step now and record it in schedule.jsonl; returns the recorded line."""
        with self._lock:
            index = len(self.executed)
            self.executed.append({})  # reserve the index
            self._slots = max(self._slots, step.slot)
        line: dict[str, Any] = {"step": index, **step.to_dict(), "t": round(self.cluster.history.now(), 6),
                                "at_s": round(self.now_s(), 6)}
        if step.op is StepOp.INJECT:
            line.update(self._inject(step))
        elif step.op is StepOp.HEAL:
            line.update(self._heal(step.slot))
        else:
            line.update(self._heal_all())
        self._write(index, line)
        return line

    def open_faults(self) -> dict[int, Fault]:
        with self._lock:
            return dict(self._open)

    def _inject(self, step: Step) -> dict[str, Any]:
        assert step.fault is not None
        fault: Fault | None = None
        try:
            fault = build_fault(step.fault.name, step.fault.params)
            reason = fault.available(self.cluster)
            if reason:
                self.skipped.append(f"{step.fault.name}: {reason}")
                return {"skipped": reason}
            fault.setup(self.cluster)
            record: FaultRecord = fault.inject(self.cluster)
        except FaultUnavailable as exc:
            return {"skipped": exc.reason}
        except NoTarget as exc:
            self.skipped.append(f"{step.fault.name}: {exc}")
            return {"skipped": str(exc)}
        except HarnessError as exc:
            self.errors.append(f"{step.fault.name}: {exc}")
            if fault is not None:
                with self._lock:
                    self._open[step.slot] = fault  # a partial inject: healed like any other
            return {"error": str(exc).splitlines()[0]}
        with self._lock:
            self._open[step.slot] = fault
        return {"targets": list(record.targets), "term": record.term, "resolved": dict(record.params)}

    def _heal_one(self, fault: Fault | None) -> str | None:
        if fault is None:
            return None
        try:
            fault.heal(self.cluster)
            fault.teardown(self.cluster)
        except HarnessError as exc:
            self.errors.append(f"heal {fault.name}: {exc}")
            return str(exc).splitlines()[0]
        return None

    def _heal(self, slot: int) -> dict[str, Any]:
        with self._lock:
            fault = self._open.pop(slot, None)
        if fault is None:
            return {"skipped": "nothing open in this slot"}
        error = self._heal_one(fault)
        return {"error": error} if error else {}

    def _heal_all(self) -> dict[str, Any]:
        with self._lock:
            slots = sorted(self._open, reverse=True)
        errors = [e for slot in slots if (e := self._heal(slot).get("error"))]
        return {"healed_slots": slots, **({"error": "; ".join(errors)} if errors else {})}

    def final_heal(self) -> None:
        """Heal what is still open (newest first), then reset links, resume nodes, restore flags."""
        self._heal_all()
        try:
            self.cluster.history.note("nemesis final heal")
            self.cluster.wait_healthy()  # a node the heal just started must serve before its flags are reset
            restore_health(self.cluster)
        except HarnessError as exc:
            self.errors.append(f"final heal: {exc}")

    def _write(self, index: int, line: dict[str, Any]) -> None:
        with self._lock:
            self.executed[index] = line
            with self.path.open("a", encoding="utf-8") as fh:
                fh.write(json.dumps(line, sort_keys=True, default=str) + "\n")


def run_steps(cluster: Cluster, steps: Sequence[Step]) -> Nemesis:
    """Run ``steps`` in the foreground (the final heal included) and return the finished nemesis."""
    nemesis = Nemesis(cluster, steps)
    nemesis.run()
    return nemesis


def check_steps(steps: Sequence[Step]) -> None:
    """Validate every fault of a plan before anything starts (FaultError naming the first bad one)."""
    for step in steps:
        if step.fault is not None:
            try:
                build_fault(step.fault.name, step.fault.params)
            except FaultError as exc:
                raise FaultError(f"step at {step.offset_s:g} s: {exc}") from None
