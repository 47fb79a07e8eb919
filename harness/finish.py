"""End of a run: final heal, final reads recorded in the history, the standard checkers, verdicts.json."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness.checkers.crashes import check_crashes
from harness.checkers.durability import check_durability
from harness.checkers.invariants import check_invariants
from harness.checkers.linearizable import check_linearizable
from harness.checkers.recovery import check_recovery, heal_bound_s
from harness.checkers.verdict import Verdict, compose, guarded
from harness.checkers.windows import check_windows
from harness.errors import HarnessError
from harness.fault import restore_health
from harness.history import Event, EventKind, OpFn
from harness.nodeclient import Outcome
from harness.store import RunDir

if TYPE_CHECKING:
    from harness.cluster import Cluster

FINAL_PROCESS = -1  # the process id of the harness's final reads (workload clients count from 0)
VERDICTS_SCHEMA = 1
# Wall-clock budget of the linearizability search at teardown: past it the verdict is unknown (the
# search looks at the clock every few thousand steps). `raftchaos report DIR` re-checks with more.
LINEARIZABLE_BUDGET_S = 5.0
# Nightly runs bound the search without code changes: seconds and MB (see standard_verdicts).
TIME_LIMIT_ENV, MEMORY_LIMIT_ENV = "RAFTCHAOS_CHECK_TIME_LIMIT", "RAFTCHAOS_CHECK_MEMORY_LIMIT"

__all__ = ["FINAL_PROCESS", "final_heal", "final_reads", "standard_verdicts",
           "write_verdicts"]


def final_heal(cluster: Cluster) -> None:
    """Heal every link, resume paused nodes and restore runtime fault flags (recorded). Nodes that
    are down stay down: restarting them would hide a crash from the checkers."""
    cluster.history.note("final heal")
    restore_health(cluster)


def written_keys(events: Iterable[Event]) -> list[str]:
    """Every key a client operation touched, in first-use order."""
    keys: dict[str, None] = {}
    for event in events:
        if event.get("kind") == EventKind.INVOKE.value and event.get("key") is not None:
            keys.setdefault(str(event["key"]), None)
    return list(keys)


def final_reads(cluster: Cluster, keys: Sequence[str] | None = None,
                timeout_s: float | None = None) -> dict[str, Any]:
    """Read every key (default: every key of the history) on the agreed leader and record each
    attempt as a client op with ``final: true`` (process ``FINAL_PROCESS``). A key is retried
    (each attempt recorded) until one read succeeds or ``timeout_s`` (default: one election plus
    one client op timeout) runs out; returns the values read. Never raises for the system's
    failures: keys left unread make the durability verdict unknown."""
    keys = list(keys) if keys is not None else written_keys(cluster.history.events())
    bound_s = timeout_s if timeout_s is not None else (cluster.timing.new_leader_within_s()
                                                       + cluster.timing.client_timeout_s)
    deadline = time.monotonic() + bound_s
    values: dict[str, Any] = {}
    for key in keys:
        def attempt(key: str = key) -> bool:
            leader = cluster.leader()
            if leader is None:
                return False
            ok, value = _read(cluster, leader, key, max(0.1, deadline - time.monotonic()))
            if ok:
                values[key] = value
            return ok
        try:
            cluster.wait_until(attempt, f"a final read of {key}", max(0.0, deadline - time.monotonic()),
                               poll_s=0.1)
        except HarnessError as exc:
            cluster.history.note("final read gave up", key=key, error=str(exc).splitlines()[0])
    return values


def _read(cluster: Cluster, leader: str, key: str, timeout_s: float) -> tuple[bool, Any]:
    history = cluster.history
    history.append(EventKind.INVOKE, process=FINAL_PROCESS, f=OpFn.READ.value, key=key, value=None,
                   node=leader, final=True)
    result = cluster.node(leader).get(key, min(timeout_s, cluster.timing.client_timeout_s))
    value = result.body.get("value") if result.outcome is Outcome.OK else None
    history.append(EventKind(result.outcome.value), process=FINAL_PROCESS, f=OpFn.READ.value, key=key,
                   value=value, node=leader, latency_s=round(result.latency_s, 6), error=result.error,
                   final=True)
    return result.outcome is Outcome.OK, value


def standard_verdicts(events: Sequence[Event], linearizable_budget_s: float | None = None,
                      linearizable_memory_mb: float | None = None,
                      run_dir: Path | None = None) -> list[Verdict]:
    """Durability, crashes (a node exiting on its own other than by an injected crash is
    invalid; ``run_dir`` adds each crashed node's log tail) and invariants (a node that aborted
    on a broken invariant, exit 70, with its fatal record: invalid) always; recovery (bounded by
    the run's own timing) and the before / during / after windows of each fault when a fault was
    injected; linearizability of the client ops, unknown past ``linearizable_budget_s`` of search
    (default: $RAFTCHAOS_CHECK_TIME_LIMIT, else ``LINEARIZABLE_BUDGET_S``) or
    ``linearizable_memory_mb`` of memo (default: $RAFTCHAOS_CHECK_MEMORY_LIMIT, else the checker's
    own). A checker that raises (a malformed history or a bad limit included) yields unknown."""
    verdicts = [guarded("durability", check_durability, events),
                guarded("crashes", check_crashes, events, run_dir),
                guarded("invariants", check_invariants, events)]
    if any(e.get("kind") == EventKind.FAULT.value for e in events):
        verdicts.append(guarded("recovery", check_recovery, events, heal_bound_s(events)))
        verdicts.append(guarded("windows", check_windows, events))
    verdicts.append(guarded("linearizable", _linearizable, events, linearizable_budget_s,
                            linearizable_memory_mb))
    return verdicts


def _limit(name: str, given: float | None) -> float | None:
    """A positive limit: given, else from the environment variable ``name``, else None."""
    if given is not None:
        return given
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return None
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not value > 0:
        raise HarnessError(f"${name} must be a positive number, got {raw!r}")
    return value


def _linearizable(events: Sequence[Event], budget_s: float | None, memory_mb: float | None = None) -> Verdict:
    time_limit_s = _limit(TIME_LIMIT_ENV, budget_s)
    return check_linearizable(events, time_limit_s=LINEARIZABLE_BUDGET_S if time_limit_s is None else time_limit_s,
                              memory_limit_mb=_limit(MEMORY_LIMIT_ENV, memory_mb))


def verdicts_doc(run: RunDir, verdicts: Sequence[Verdict], extra: Mapping[str, Any]) -> dict[str, Any]:
    """The verdicts.json document: everything the report needs beside the history."""
    return {"schema": VERDICTS_SCHEMA, "run_id": run.run_id, **extra,
            "verdict": compose(verdicts).value, "verdicts": [v.to_dict() for v in verdicts]}


def write_verdicts(run: RunDir, doc: Mapping[str, Any]) -> Path:
    """Write verdicts.json atomically (a re-render never sees half a file)."""
    tmp = run.verdicts_path.with_suffix(".tmp")
    tmp.write_text(json.dumps(doc, indent=2, sort_keys=True, default=str))
    tmp.replace(run.verdicts_path)
    return run.verdicts_path
