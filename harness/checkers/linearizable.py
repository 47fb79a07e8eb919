"""Linearizability checker for the KV history: the public entry points, the verdict's details, the terminal view."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness.checkers.history_ops import HistoryError, Op, OpStatus, gc_paused, parse_history
from harness.checkers.key_pool import Budget, check_keys, uncompiled, worker_count
from harness.checkers.key_result import KeyResult
from harness.checkers.kv_model import KeyModel, compile_key, group_keys, replay
from harness.checkers.op_reader import read_ops
from harness.checkers.verdict import Validity, Verdict
from harness.checkers.wgl import MEMO_BUDGET_BYTES

if TYPE_CHECKING:  # rich is imported when a verdict is drawn: ``raftchaos check`` answers against the clock
    from rich.console import Console

__all__ = ["MEMO_BUDGET_BYTES", "HistoryError", "check_linearizable", "check_ops", "main_check",
           "print_verdict"]

CHECKER = "linearizable"
DEFAULT_TIME_LIMIT_S = 60.0
_MAX_LISTED = 50  # ops listed per part of an anomaly; the counts are always complete


def _anomaly(m: KeyModel, res: KeyResult) -> dict[str, Any]:
    """The smallest window that explains an invalid key, for reports to highlight.

    From the search: the longest linearizable prefix found, the op it then could not place, and the
    ops concurrent with it. From the stale-read proof: the read, the write that overwrote its value
    and the last op that could have written it, and the ops concurrent with the read."""
    stuck = m.ops[res.stuck]
    end = stuck.return_time if stuck.return_time is not None else float("inf")  # always ok ops
    rival_ids = [i for i, op in enumerate(m.ops) if i != res.stuck and op.call_time <= end
                 and (op.return_time is None or op.return_time >= stuck.call_time)]
    if res.proved:
        proof = [m.ops[i] for i in res.witness]
        value = stuck.value
        if len(proof) == 0:
            why = f"returned {value!r}, which no op that began before the read ended could write"
        else:
            over = proof[0]
            why = (f"returned {value!r}, but the {over.f} by process {over.process} (event {over.index}) "
                   f"wrote another value after every op that could write {value!r} had finished, "
                   f"and finished before the read began")
        out: dict[str, Any] = {"kind": "stale read", "witness_ops": [op.describe() for op in proof],
                               "prefix_length": None, "prefix_tail": [], "state_after_prefix": None}
        window = {stuck.index, *(op.index for op in proof)}
    else:
        why = (f"cannot take effect after any linearization of the ops before it (the longest "
               f"linearizable prefix found has {len(res.prefix)} ops)")
        out = {"kind": "no linearization", "witness_ops": [], "prefix_length": len(res.prefix),
               "prefix_tail": [m.ops[i].describe() for i in res.prefix[-_MAX_LISTED:]],
               "state_after_prefix": replay(m.ops[i] for i in res.prefix)}
        window = {stuck.index, *(m.ops[i].index for i in rival_ids)}
        if res.prefix:
            window.add(m.ops[res.prefix[-1]].index)
    out.update({
        "key": m.key,
        "explanation": f"the {stuck.f} by process {stuck.process} (event {stuck.index}) {why}",
        "stuck_op": stuck.describe(),
        "concurrent_ops": [m.ops[i].describe() for i in rival_ids[:_MAX_LISTED]],
        "concurrent_count": len(rival_ids),
        "window_indexes": sorted(window),
    })
    return out


def _key_summary(res: KeyResult) -> dict[str, Any]:
    out: dict[str, Any] = {"validity": res.validity.value, "ops": res.ops, "pruned": res.pruned,
                           "states": res.states, "elapsed_s": round(res.elapsed_s, 6)}
    if res.reason:
        out["reason"] = res.reason
    return out


def check_ops(ops: list[Op], *, time_limit_s: float = DEFAULT_TIME_LIMIT_S, max_states: int | None = None,
              memory_limit_mb: float | None = None, workers: int | None = None,
              explain_all: bool = False, started: float | None = None) -> Verdict:
    """Check already parsed operations (see ``check_linearizable``). ``started`` (a monotonic
    time, default now) is when the time limit began: a command counts its start and reading.

    Without cyclic garbage collection throughout: the proofs and the search build no cycles, and
    each collection of the oldest generation would rescan the whole history (a third of the proofs'
    time on 100k ops)."""
    with gc_paused():
        return _check_ops(ops, time_limit_s, max_states, memory_limit_mb, workers, explain_all,
                          time.monotonic() if started is None else started)


def _check_ops(ops: list[Op], time_limit_s: float, max_states: int | None, memory_limit_mb: float | None,
               workers: int | None, explain_all: bool, started: float) -> Verdict:
    deadline = started + time_limit_s
    memory = MEMO_BUDGET_BYTES if memory_limit_mb is None else int(memory_limit_mb * 2**20)
    failed_status = OpStatus.FAILED
    effective = [op for op in ops if op.status is not failed_status]
    failed = len(ops) - len(effective)  # no effect, nothing to check
    groups = group_keys(effective)
    del effective
    budget = Budget(deadline, memory, max_states, stop_at_invalid=not explain_all)
    results, compiled = check_keys(groups, budget, workers)
    n = len(groups)
    models = [m if m is not None else uncompiled(*groups[j]) for j, m in enumerate(compiled)]
    for j in range(n):  # an invalid key compiled in a worker: the same model again, for its anomaly
        if results[j].validity is Validity.INVALID and not models[j].compiled:
            models[j] = compile_key(*groups[j])
    keys = {models[j].key: _key_summary(results[j]) for j in range(len(models))}
    anomalies = [_anomaly(m, results[j]) for j, m in enumerate(models) if results[j].validity is Validity.INVALID]
    undecided = [results[j] for j in range(len(models)) if results[j].validity is Validity.UNKNOWN]
    details: dict[str, Any] = {
        "ops": len(ops),
        "failed_ops": failed,
        "checked_ops": sum(results[j].ops for j in range(n)),
        "pruned_ops": sum(results[j].pruned for j in range(n)),
        "keys": keys,
        "elapsed_s": round(time.monotonic() - started, 6),
        "time_limit_s": time_limit_s,
        "memory_limit_mb": round(memory / 2**20, 3),
        "workers": worker_count(workers),
        "explain_all": explain_all,
    }
    if anomalies:
        details["anomalies"] = anomalies  # one per invalid key
        details["anomaly"] = anomalies[0]  # the first, as a shortcut
        # Keys whose search stopped (or never began) because the verdict was already settled.
        details["unchecked_keys"] = {r.key: r.reason for r in undecided}
        more = f" ({len(anomalies)} keys invalid)" if len(anomalies) > 1 else ""
        if undecided:
            more += f" ({len(undecided)} other keys not checked: the verdict was settled)"
        summary = f"not linearizable: key {anomalies[0]['key']!r}: {anomalies[0]['explanation']}{more}"
        return Verdict(CHECKER, Validity.INVALID, summary, details)
    if undecided:
        details["reason"] = undecided[0].reason
        more = f" ({len(undecided)} keys undecided)" if len(undecided) > 1 else ""
        return Verdict(CHECKER, Validity.UNKNOWN, f"unknown: {undecided[0].reason}{more}", details)
    return Verdict(CHECKER, Validity.VALID,
                   f"linearizable: {details['checked_ops']} ops over {len(models)} keys", details)


def check_linearizable(events: Iterable[Mapping[str, Any]] | str | Path, *,
                       time_limit_s: float = DEFAULT_TIME_LIMIT_S, max_states: int | None = None,
                       memory_limit_mb: float | None = None, workers: int | None = None,
                       explain_all: bool = False, started: float | None = None) -> Verdict:
    """Is this KV history linearizable? ``events`` is a list of op events (either schema) or a path
    to a JSONL file of them.

    VALID: every key has a linearization. INVALID: some key has none; ``details["anomaly"]`` names
    the key and the window of ops to highlight. The first invalid key settles the verdict: the
    other keys stop there (listed in ``details["unchecked_keys"]`` with why) unless
    ``explain_all``, which searches every key to explain each. UNKNOWN: the search ran past
    ``time_limit_s`` (wall clock, for the whole history, reading included, counted from
    ``started``, a ``time.monotonic`` value, default now), past ``memory_limit_mb`` of estimated
    memo for the keys searched at once (default ``MEMO_BUDGET_BYTES``), or ``max_states`` memo
    entries on one key; ``details["reason"]`` says which. Keys are searched on ``workers``
    processes (default: every core) when there is enough work. Every key reports its own
    ``elapsed_s`` and ``states``, unknown ones included. Malformed input raises HistoryError
    (``guarded`` turns that into UNKNOWN when checkers are composed).
    """
    started = time.monotonic() if started is None else started
    if isinstance(events, str | Path):
        ops = read_ops(events)
    else:
        ops = parse_history(list(events))
    return check_ops(ops, time_limit_s=time_limit_s, max_states=max_states, memory_limit_mb=memory_limit_mb,
                     workers=workers, explain_all=explain_all, started=started)


def main_check(path: str | Path, time_limit_s: float = DEFAULT_TIME_LIMIT_S, memory_limit_mb: float | None = None,
               workers: int | None = None, explain_all: bool = False) -> int:
    """Check a history file and print the verdict. Returns 0 linearizable, 1 not, 2 unknown, 254 bad
    input (the project's exit-code table, README "Verdicts and exit codes").

    ``time_limit_s`` bounds reading and checking together (the answer is unknown past it)."""
    started = time.monotonic()
    try:
        ops = read_ops(Path(path))
        verdict = check_ops(ops, time_limit_s=time_limit_s, memory_limit_mb=memory_limit_mb,
                            workers=workers, explain_all=explain_all, started=started)
    except (HistoryError, OSError) as exc:
        print(f"raftchaos check: cannot check {path}: {exc}", file=sys.stderr)
        return 254
    print_verdict(verdict)
    return {Validity.VALID: 0, Validity.INVALID: 1, Validity.UNKNOWN: 2}[verdict.validity]


def print_verdict(verdict: Verdict, console: Console | None = None) -> None:
    """Render a linearizability verdict for a terminal: the verdict line, undecided or invalid keys,
    and the window of operations an anomaly consists of."""
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    console = console or Console()
    colour = {Validity.VALID: "green", Validity.INVALID: "red", Validity.UNKNOWN: "yellow"}[verdict.validity]
    console.print(f"[bold {colour}]{verdict.validity.value.upper()}[/] {escape(verdict.summary)}")
    d = verdict.details
    console.print(f"{d['ops']} ops ({d['failed_ops']} failed, {d['pruned_ops']} pruned), "
                  f"{len(d['keys'])} keys, {d['elapsed_s']:.3f} s (limit {d['time_limit_s']:g} s)")
    why = {a["key"]: a["explanation"] for a in d.get("anomalies", [])}
    shown = {k: r for k, r in d["keys"].items() if r["validity"] != "valid"}
    if shown:
        table = Table("key", "verdict", "ops", "states", "s", "why", title="keys not found valid")
        for key, r in shown.items():
            table.add_row(escape(repr(key)), r["validity"], str(r["ops"]), str(r["states"]),
                          f"{r['elapsed_s']:.3f}", escape(r.get("reason") or why.get(key, "")))
        console.print(table)
    anomaly = d.get("anomaly")
    if anomaly:
        title = f"key {anomaly['key']!r}: {anomaly['kind']}"
        if anomaly["prefix_length"] is not None:
            title += f", state after the prefix = {anomaly['state_after_prefix']!r}"
        table = Table("role", "event", "process", "f", "value", "status", "call", "return", title=escape(title))
        rows = [("prefix", op) for op in anomaly["prefix_tail"][-5:]]
        rows += [("witness", op) for op in anomaly["witness_ops"]]
        rows += [("[bold red]stuck[/]", anomaly["stuck_op"])]
        rows += [("concurrent", op) for op in anomaly["concurrent_ops"]]
        for role, op in rows:
            table.add_row(role, str(op["index"]), str(op["process"]), op["f"], escape(repr(op["value"])),
                          op["status"], str(op["call_time"]), str(op["return_time"]))
        console.print(table)
