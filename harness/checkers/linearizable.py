"""Linearizability checker for the KV history: per-key WGL search with memoisation, under a time and memory budget."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from harness.checkers.history_ops import (
    APPEND,
    APPEND_CODED,
    CAS,
    CAS_FAILED,
    READ_EQ,
    READ_NULL,
    WRITE,
    HistoryError,
    KeyModel,
    Op,
    OpStatus,
    compile_keys,
    parse_history,
    read_history,
    replay,
)
from harness.checkers.verdict import Validity, Verdict

CHECKER = "linearizable"
DEFAULT_TIME_LIMIT_S = 60.0
# Memory the memo of one key may use (estimated as it grows, from the sizes below), so that with
# the history itself loaded the checker's peak stays far below 1 GB.
MEMO_BUDGET_BYTES = 400 * 1024 * 1024
_NEW_STATE_BYTES = 200  # a dict slot, the state object and its first packed int
_SET_BYTES = 250  # the set that replaces a single packed int
_MIN_ENTRY_BYTES = 64  # a set slot and a small int
_CLOCK_EVERY = 4096  # search steps between looks at the clock (a step costs ~0.3-1 us)
_MAX_LISTED = 50  # ops listed per part of an anomaly; the counts are always complete


@dataclass
class KeyResult:
    """The search's outcome on one key. ``prefix`` (op ids in linearization order) and ``stuck`` (the
    op whose return was reached before it could be placed) describe the deepest point the search
    reached; they explain an INVALID key."""

    key: str
    validity: Validity
    ops: int
    pruned: int
    states: int = 0
    steps: int = 0
    elapsed_s: float = 0.0
    reason: str | None = None
    prefix: list[int] = field(default_factory=list)
    stuck: int = -1


def _unknown(m: KeyModel, reason: str, states: int = 0, steps: int = 0) -> KeyResult:
    return KeyResult(m.key, Validity.UNKNOWN, len(m.ops), m.pruned, states, steps, reason=reason)


def search_key(m: KeyModel, deadline: float, max_states: int | None = None) -> KeyResult:
    """Decide whether one key's operations are linearizable (WGL with memoisation).

    Entries (calls and returns) sit in a doubly linked list in time order. At each node of the
    search (a set of placed ops and the state they leave), the search takes a call from the list
    whose op the model accepts, lifts the op out (call and return) and goes on from the list's
    head; reaching a return entry means that op could not be placed, so it backtracks. Info ops
    have no return entry: they can be placed any time after their call, or never. A node seen
    before, (placed set, state, whether an info op was just placed), is never explored twice.

    Three sound reductions keep the search small (each holds because of an exchange argument: any
    linearization can be rewritten into one the reduced search still explores):

    - an op that leaves the state unchanged (an ok read, a failed cas) and can go now is placed
      now, as the only branch: moving it earlier keeps every other op legal and cannot break real
      time (nothing that had to precede it is unplaced, or its return entry would come first);
    - an info op may not be followed directly by a write: removing the info op gives a
      linearization that is as good (the write hides its effect). Likewise an info op that changes
      nothing, and all but the first unplaced of identical info ops, are never placed;
    - on a key whose value only grows (appends and reads only), an append must leave a prefix of
      the next unplaced read's value; such states are coded as ints (see ``Prefixes``).

    The placed set is two Python ints: ok ops as ``base`` (all ops below it are placed) plus the
    bits above it, so the ints are as wide as the concurrency rather than the history; and one bit
    per info op. Stops with UNKNOWN past ``deadline`` (a ``time.monotonic`` value), once the memo
    holds ``max_states`` entries, or once it is estimated to use ``MEMO_BUDGET_BYTES``.

    The loop is one function with everything inlined because it runs millions of times: a call
    per step would double the time.
    """
    started = time.monotonic()
    n = len(m.ops)
    kind, arg, arg2, info, twin = m.kind, m.arg, m.arg2, m.info, m.twin
    if m.prefixes is not None:
        values, width, recode = m.prefixes.values, m.prefixes.width, m.prefixes.code
    bit: list[int] = []  # ok op: its id among ok ops; info op: its mask among info ops
    n_ok = n_info = 0
    for i in range(n):
        if info[i]:
            bit.append(1 << n_info)
            n_info += 1
        else:
            bit.append(n_ok)
            n_ok += 1
    if max_states is None:
        max_states = MEMO_BUDGET_BYTES // _MIN_ENTRY_BYTES
    if n_ok == 0:  # info ops alone can always be left out
        return KeyResult(m.key, Validity.VALID, n, m.pruned, elapsed_s=time.monotonic() - started)
    base_bits = n_ok.bit_length()
    head = 2 * n
    nxt = [-1] * (2 * n + 1)
    prv = [-1] * (2 * n + 1)
    last = head
    for e in m.entries:
        nxt[last] = e
        prv[e] = last
        last = e
    done = bytearray(n)
    memo: dict[Any, Any] = {}  # state -> packed placed-set (an int), or a set of them once several
    states = mem_bytes = 0
    # The stack is a chain of tuples (parent, op, and the search variables before the op), so the
    # deepest point reached can be kept by reference instead of copied.
    top: Any = None
    depth = 0
    state: Any = m.initial
    base = rel = ibits = fresh = 0  # fresh: the last op placed was an info op that changed the state
    remaining = n_ok
    best: tuple[int, Any, int] | None = None  # depth, stack top, stuck op
    steps = 0
    only_unchanging = True  # first look for an op that leaves the state unchanged
    e = nxt[head]
    while True:
        steps += 1
        if steps % _CLOCK_EVERY == 0:
            reason = None
            if time.monotonic() > deadline:
                reason = f"time limit reached on key {m.key!r} after {states} states"
            elif mem_bytes > MEMO_BUDGET_BYTES:
                reason = (f"memory budget of {MEMO_BUDGET_BYTES // 2**20} MiB reached on key {m.key!r} "
                          f"after {states} states")
            if reason:
                return _unknown(m, reason, states, steps)
        if e >= 0 and not e & 1:
            i = e >> 1
            k = kind[i]
            if only_unchanging:
                if k == READ_EQ:
                    ok = state == arg[i]
                elif k == READ_NULL:
                    ok = state is None or state == ""
                elif k == CAS_FAILED:
                    ok = state != arg[i]
                else:
                    ok = False
                if not ok:
                    e = nxt[e]
                    continue
                new, forced, nfresh = state, True, 0
            else:
                if k == WRITE:
                    if fresh:
                        e = nxt[e]
                        continue
                    new = arg[i]
                elif k == CAS:
                    if state != arg[i]:
                        e = nxt[e]
                        continue
                    new = arg2[i]
                elif k == APPEND_CODED:
                    t = arg[i]
                    if type(state) is int:
                        j, length = divmod(state, width)
                        if values[j].startswith(t, length):  # still a prefix of the same read value
                            new = state + len(t)
                        else:
                            new = recode(values[j][:length] + t)
                    else:
                        new = state + t
                    # The value only grows, so it must stay a prefix of every unplaced read's value;
                    # test the first such read (a necessary condition; searched a bounded distance).
                    x, hops = nxt[e], 0
                    while x >= 0 and hops < 64 and not (x & 1 and kind[x >> 1] == READ_EQ):
                        x, hops = nxt[x], hops + 1
                    if x >= 0 and x & 1 and kind[x >> 1] == READ_EQ:
                        goal = arg[x >> 1]
                        if type(new) is not int or type(goal) is not int:
                            e = nxt[e]
                            continue
                        if new != goal:
                            j, length = divmod(new, width)
                            jg, length_g = divmod(goal, width)
                            if length > length_g or (j != jg and values[jg][:length] != values[j][:length]):
                                e = nxt[e]
                                continue
                elif k == APPEND:
                    if state is None:
                        new = arg[i]
                    elif type(state) is str:
                        new = state + arg[i]
                    else:
                        e = nxt[e]
                        continue
                else:  # nothing unchanging could go here, so reads and failed cas cannot either
                    e = nxt[e]
                    continue
                forced, nfresh = False, 0
                if info[i]:
                    tw = twin[i]
                    if new == state or (tw >= 0 and not done[tw]):
                        e = nxt[e]
                        continue
                    nfresh = 1
            if info[i]:
                nbase, nrel, nibits = base, rel, ibits | bit[i]
            else:
                oid = bit[i]
                if oid == base:
                    r = rel | 1
                    shift = (~r & (r + 1)).bit_length() - 1
                    nbase, nrel = base + shift, r >> shift
                else:
                    nbase, nrel = base, rel | (1 << (oid - base))
                nibits = ibits
            packed = ((((nrel << n_info) | nibits) << base_bits | nbase) << 1) | nfresh
            seen = memo.get(new)
            hit = False
            if seen is None:
                memo[new] = packed
                mem_bytes += _NEW_STATE_BYTES + (len(new) if type(new) is str else 0)
            elif type(seen) is int:
                if seen == packed:
                    hit = True
                else:
                    memo[new] = {seen, packed}
                    mem_bytes += _SET_BYTES
            elif packed in seen:
                hit = True
            else:
                seen.add(packed)
                mem_bytes += _MIN_ENTRY_BYTES + (packed.bit_length() >> 3)
            if not hit:
                states += 1
                if states > max_states:
                    return _unknown(m, f"state budget of {max_states} explored states reached on key "
                                       f"{m.key!r}", states, steps)
                top = (top, i, state, base, rel, ibits, fresh, forced)
                depth += 1
                state, base, rel, ibits, fresh = new, nbase, nrel, nibits, nfresh
                done[i] = 1
                c = 2 * i
                p, q = prv[c], nxt[c]
                nxt[p] = q
                if q >= 0:
                    prv[q] = p
                if not info[i]:
                    p, q = prv[c + 1], nxt[c + 1]
                    nxt[p] = q
                    if q >= 0:
                        prv[q] = p
                    remaining -= 1
                    if remaining == 0:
                        break
                only_unchanging = True
                e = nxt[head]
                continue
            if not forced:
                e = nxt[e]
                continue
            e = -2  # the one branch worth trying here was explored before: this node fails
        # No candidate left at this node: a return entry, the end of the list, or -2 (above).
        if only_unchanging and e != -2:
            only_unchanging = False
            e = nxt[head]
            continue
        if e == -1:  # the list holds only info calls: every ok op is placed
            break
        if best is None or depth > best[0]:
            best = (depth, top, e >> 1 if e >= 0 else top[1])
        while True:
            if top is None:
                _, chain, stuck = best
                prefix: list[int] = []
                while chain is not None:
                    prefix.append(chain[1])
                    chain = chain[0]
                return KeyResult(m.key, Validity.INVALID, n, m.pruned, states, steps,
                                 time.monotonic() - started, None, prefix[::-1], stuck)
            top, i, state, base, rel, ibits, fresh, forced = top
            depth -= 1
            done[i] = 0
            c = 2 * i
            if not info[i]:
                p, q = prv[c + 1], nxt[c + 1]
                nxt[p] = c + 1
                if q >= 0:
                    prv[q] = c + 1
                remaining += 1
            p, q = prv[c], nxt[c]
            nxt[p] = c
            if q >= 0:
                prv[q] = c
            if not forced:  # a forced op was the only branch of its node: that node fails too
                break
        only_unchanging = False
        e = nxt[2 * i]
    return KeyResult(m.key, Validity.VALID, n, m.pruned, states, steps, time.monotonic() - started)


# ---- verdict ------------------------------------------------------------------------------------------


def _anomaly(m: KeyModel, res: KeyResult) -> dict[str, Any]:
    """The smallest window that explains an invalid key: the longest linearizable prefix the search
    found, the op it then could not place, and the ops that could have gone before that op's return."""
    stuck = m.ops[res.stuck]
    placed = set(res.prefix)
    rival_ids = [i for i, op in enumerate(m.ops)
                 if i not in placed and i != res.stuck and op.call_time <= stuck.return_time]
    tail = [m.ops[i].describe() for i in res.prefix[-_MAX_LISTED:]]
    rivals = [m.ops[i].describe() for i in rival_ids[:_MAX_LISTED]]
    window = sorted({stuck.index, *(m.ops[i].index for i in rival_ids)})
    return {"key": m.key, "prefix_length": len(res.prefix), "prefix_tail": tail,
            "state_after_prefix": replay(m.ops[i] for i in res.prefix), "stuck_op": stuck.describe(),
            "concurrent_ops": rivals, "concurrent_count": len(rival_ids), "window_indexes": window}


def _key_summary(res: KeyResult) -> dict[str, Any]:
    out: dict[str, Any] = {"validity": res.validity.value, "ops": res.ops, "pruned": res.pruned,
                           "states": res.states, "elapsed_s": round(res.elapsed_s, 6)}
    if res.reason:
        out["reason"] = res.reason
    return out


def check_ops(ops: list[Op], *, time_limit_s: float = DEFAULT_TIME_LIMIT_S,
              max_states: int | None = None) -> Verdict:
    """Check already parsed operations (see ``check_linearizable``)."""
    started = time.monotonic()
    deadline = started + time_limit_s
    failed = sum(op.status is OpStatus.FAILED for op in ops)  # no effect, nothing to check
    models = compile_keys(op for op in ops if op.status is not OpStatus.FAILED)
    # Small keys first, so one hard key spends the remaining time rather than starving the others.
    order = sorted(range(len(models)), key=lambda j: len(models[j].ops))
    results: dict[int, KeyResult] = {}
    for j in order:
        m = models[j]
        if time.monotonic() > deadline:
            results[j] = _unknown(m, "not checked: time limit reached on earlier keys")
        else:
            results[j] = search_key(m, deadline, max_states)
    keys = {models[j].key: _key_summary(results[j]) for j in range(len(models))}
    anomalies = []
    for j, m in enumerate(models):
        if results[j].validity is Validity.INVALID:
            anomalies.append(_anomaly(m, results[j]))
            keys[m.key]["anomaly"] = anomalies[-1]
    unknown = [results[j] for j in range(len(models)) if results[j].validity is Validity.UNKNOWN]
    details: dict[str, Any] = {
        "ops": len(ops),
        "failed_ops": failed,
        "checked_ops": sum(len(m.ops) for m in models),
        "pruned_ops": sum(m.pruned for m in models),
        "keys": keys,
        "elapsed_s": round(time.monotonic() - started, 6),
        "time_limit_s": time_limit_s,
    }
    if anomalies:
        details["anomaly"] = anomalies[0]  # the first invalid key's, as a shortcut for reports
        details["invalid_keys"] = [a["key"] for a in anomalies]
        a = anomalies[0]
        stuck = a["stuck_op"]
        summary = (f"not linearizable: key {a['key']!r}: no order places the {stuck['f']} of process "
                   f"{stuck['process']} (value {stuck['value']!r}, event {stuck['index']}); the longest "
                   f"linearizable prefix found has {a['prefix_length']} ops"
                   + (f" ({len(anomalies)} keys invalid)" if len(anomalies) > 1 else ""))
        return Verdict(CHECKER, Validity.INVALID, summary, details)
    if unknown:
        details["reason"] = unknown[0].reason
        summary = f"unknown: {unknown[0].reason}" + (f" ({len(unknown)} keys undecided)" if len(unknown) > 1 else "")
        return Verdict(CHECKER, Validity.UNKNOWN, summary, details)
    return Verdict(CHECKER, Validity.VALID,
                   f"linearizable: {details['checked_ops']} ops over {len(models)} keys", details)


def check_linearizable(events: Iterable[Mapping[str, Any]] | str | Path, *,
                       time_limit_s: float = DEFAULT_TIME_LIMIT_S, max_states: int | None = None) -> Verdict:
    """Is this KV history linearizable? ``events`` is a list of op events (either schema) or a path
    to a JSONL file of them.

    VALID: every key has a linearization. INVALID: some key has none; ``details["anomaly"]`` names
    the key and the window of ops to highlight. UNKNOWN: the search ran past ``time_limit_s``
    (wall clock, for the whole history) or ``max_states`` memo entries on one key (default: what
    fits ``MEMO_BUDGET_BYTES``); ``details["reason"]`` says which. Malformed input raises
    HistoryError (``guarded`` turns that into UNKNOWN when checkers are composed).
    """
    if isinstance(events, str | Path):
        _, ops = read_history(events)
    else:
        ops = parse_history(list(events))
    return check_ops(ops, time_limit_s=time_limit_s, max_states=max_states)


def main_check(path: str | Path, time_limit_s: float = DEFAULT_TIME_LIMIT_S) -> int:
    """Check a history file and print the verdict. Returns 0 linearizable, 1 not, 2 unknown or bad input."""
    try:
        verdict = check_linearizable(Path(path), time_limit_s=time_limit_s)
    except (HistoryError, OSError) as exc:
        print(f"raftchaos check: cannot check {path}: {exc}", file=sys.stderr)
        return 2
    print_verdict(verdict)
    return {Validity.VALID: 0, Validity.INVALID: 1, Validity.UNKNOWN: 2}[verdict.validity]


def print_verdict(verdict: Verdict, console: Console | None = None) -> None:
    """Render a linearizability verdict for a terminal: the verdict line, undecided or invalid keys,
    and the window of operations an anomaly consists of."""
    console = console or Console()
    colour = {Validity.VALID: "green", Validity.INVALID: "red", Validity.UNKNOWN: "yellow"}[verdict.validity]
    console.print(f"[bold {colour}]{verdict.validity.value.upper()}[/] {escape(verdict.summary)}")
    d = verdict.details
    console.print(f"{d['ops']} ops ({d['failed_ops']} failed, {d['pruned_ops']} pruned), "
                  f"{len(d['keys'])} keys, {d['elapsed_s']:.3f} s")
    shown = {k: r for k, r in d["keys"].items() if r["validity"] != "valid"}
    if shown:
        table = Table("key", "verdict", "ops", "states", "s", "reason", title="keys not found valid")
        for key, r in shown.items():
            table.add_row(escape(repr(key)), r["validity"], str(r["ops"]), str(r["states"]),
                          f"{r['elapsed_s']:.3f}", escape(r.get("reason") or ""))
        console.print(table)
    anomaly = d.get("anomaly")
    if anomaly:
        table = Table("role", "event", "process", "f", "value", "status", "call", "return",
                      title=f"key {anomaly['key']!r}: state after the prefix = "
                            f"{anomaly['state_after_prefix']!r}")
        rows = [("prefix", op) for op in anomaly["prefix_tail"][-5:]]
        rows += [("[bold red]stuck[/]", anomaly["stuck_op"])]
        rows += [("concurrent", op) for op in anomaly["concurrent_ops"]]
        for role, op in rows:
            table.add_row(role, str(op["index"]), str(op["process"]), op["f"], escape(repr(op["value"])),
                          op["status"], str(op["call_time"]), str(op["return_time"]))
        console.print(table)
