"""End of a run: final heal, final reads recorded in the history, the standard checkers, verdicts.json."""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness.checkers.registry import (
    LINEARIZABLE_BUDGET_S,
    MEMORY_LIMIT_ENV,
    TIME_LIMIT_ENV,
    CheckContext,
    run_standard,
)
from harness.checkers.verdict import Verdict, compose
from harness.errors import HarnessError
from harness.fault import restore_health
from harness.history import Event, EventKind, OpFn
from harness.nodeclient import Outcome
from harness.store import RunDir

if TYPE_CHECKING:
    from harness.cluster import Cluster

FINAL_PROCESS = -1  # the process id of the harness's final reads (workload clients count from 0)
VERDICTS_SCHEMA = 1
__all__ = ["FINAL_PROCESS", "LINEARIZABLE_BUDGET_S", "MEMORY_LIMIT_ENV", "TIME_LIMIT_ENV", "final_heal",
           "final_reads", "standard_verdicts", "write_verdicts"]


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
    """The registry's standard checkers (``harness.checkers.registry.STANDARD``, also what
    ``raftchaos report`` re-runs): durability, crashes (``run_dir`` adds each crashed node's log
    tail) and invariants always; recovery and the fault windows when a fault was injected;
    linearizability, unknown past ``linearizable_budget_s`` of search (default:
    $RAFTCHAOS_CHECK_TIME_LIMIT, else ``LINEARIZABLE_BUDGET_S``) or ``linearizable_memory_mb`` of
    memo (default: $RAFTCHAOS_CHECK_MEMORY_LIMIT, else the checker's own). A checker that raises (a
    malformed history or a bad limit included) yields unknown."""
    return run_standard(events, CheckContext(run_dir, linearizable_budget_s, linearizable_memory_mb))


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
