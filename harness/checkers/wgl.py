"""The per-key linearizability search: Wing & Gong / Lowe (WGL) with memoisation, under a time and memory budget.

Its outcome type and budget test live in ``key_result.py`` (re-exported here)."""

from __future__ import annotations

import time
from bisect import bisect_left
from collections.abc import Generator
from typing import Any

from harness.checkers.key_result import KeyResult, budget_reason, unknown
from harness.checkers.kv_model import (
    APPEND,
    APPEND_CODED,
    CAS,
    CAS_FAILED,
    READ_EQ,
    READ_NULL,
    WRITE,
    KeyModel,
)
from harness.checkers.verdict import Validity

__all__ = ["MEMO_BUDGET_BYTES", "KeyResult", "budget_reason", "search_key", "search_steps", "unknown"]

# Memory the memo of one key may use, estimated as it grows from the sizes below (measured with
# tracemalloc), so that with the history itself loaded the checker's peak stays far below 1 GB.
MEMO_BUDGET_BYTES = 400 * 1024 * 1024
_NEW_STATE_BYTES = 200  # a dict slot, the state object and its first packed int
_SET_BYTES = 250  # the set that replaces a single packed int
_MIN_ENTRY_BYTES = 64  # a set slot and a small int
SLICE_STEPS = 256  # search steps between yields to the scheduler (a step costs well under 1 us)

# What the search yields between slices: explored states, steps taken, estimated memo bytes.
Progress = tuple[int, int, int]


def search_key(m: KeyModel, deadline: float, max_states: int | None = None,
               memory_budget: int = MEMO_BUDGET_BYTES) -> KeyResult:
    """Search one key alone until it is decided, ``deadline`` (a ``time.monotonic`` value) passes,
    or its memo is estimated to use ``memory_budget`` bytes (see ``search_steps``)."""
    started = time.monotonic()
    search = search_steps(m, max_states)
    states = steps = 0
    try:
        while True:
            states, steps, mem_bytes = next(search)
            reason = budget_reason(m, states, mem_bytes, memory_budget, deadline)
            if reason:
                search.close()
                return unknown(m, reason, states, steps, time.monotonic() - started)
    except StopIteration as done:
        result: KeyResult = done.value
        result.elapsed_s = time.monotonic() - started
        return result


def search_steps(m: KeyModel, max_states: int | None = None) -> Generator[Progress, None, KeyResult]:
    """Decide whether one key's operations are linearizable, as a resumable search: it yields its
    progress every ``SLICE_STEPS`` steps, so a scheduler can interleave keys, watch one deadline and
    one memory budget, and drop a key by closing its generator. Returns the KeyResult (with
    ``elapsed_s`` 0: the scheduler knows the time spent).

    Ok ops' call and return entries sit in a doubly linked list in time order. At each node of the
    search (a set of placed ops and the state they leave) the search picks a call from the list
    that the model accepts, lifts the op out (call and return) and starts again from the list's
    head; reaching a return entry means that op could not be placed, so it backtracks. Info ops
    have no return: they can be placed any time after their call, or never, so they wait in pools
    instead (one for writes and appends, one per ``from`` value for cas, so a cas is only looked
    at when the state is its ``from``), and count as called while their call precedes the first
    return entry. A node seen before (placed set, state, whether an info op was just placed) is
    never explored twice.

    Sound reductions (each an exchange argument: any linearization can be rewritten into one that
    the reduced search still explores):

    - an op that leaves the state unchanged (an ok read, a failed cas) and can go now is placed
      now, as the only branch: moving it earlier keeps every other op legal and cannot break real
      time (anything that had to precede it is placed, or its return entry would come first);
    - an info op is never followed directly by a write: dropping the info op gives a linearization
      as good (the write hides its effect). Likewise an info op that changes nothing is never
      placed, and of identical info ops only the earliest unplaced one is a candidate;
    - on a key whose value only grows (appends and reads), an append must leave a prefix of the
      next unplaced read's value; states are then coded as ints (see ``Prefixes``);
    - on a key mixing appends with writes (or cas), the same holds between writes: after an
      append or write, the next unplaced ok read sees the new value grown by appends, unless an
      unplaced write or cas (other than the op placed) that was called before the read returned
      takes effect in between; then it sees that op's value grown by appends. So the new value,
      or the value of one such op, must be a prefix of the read's value (the empty value for a
      read of null; equal to it for a value that is not a string). Writes and cas are few on such
      keys, so the test is a short loop.

    The placed set is two Python ints: ok ops as ``base`` (all ops below it are placed) plus the
    bits above it, so the ints are as wide as the concurrency rather than the history; and one bit
    per info op. Returns UNKNOWN once the memo holds ``max_states`` entries; the memo's estimated
    size is the third figure of each yield.

    The loop is one function with everything inlined because it runs millions of times: a call
    per step would double the time.
    """
    n = len(m.ops)
    kind, arg, arg2, info = m.kind, m.arg, m.arg2, m.info
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
        return KeyResult(m.key, Validity.VALID, n, m.pruned)
    base_bits = n_ok.bit_length()

    head = 2 * n
    nxt = [-1] * (2 * n + 1)
    prv = [-1] * (2 * n + 1)
    rank = [0] * (2 * n)  # an entry's place in time order (info calls included)
    last = head
    for r, e in enumerate(m.entries):
        rank[e] = r
        if not info[e >> 1]:
            nxt[last] = e
            prv[e] = last
            last = e
    never = 2 * n + 1  # a rank after every entry

    # Info pools: doubly linked over op ids, heads numbered after the ops. Only the first unplaced
    # of identical info ops is linked; placing it links its next twin in its place.
    next_twin = [-1] * n
    first_kind = [t < 0 for t in m.twin]
    for i in range(n):
        if info[i] and m.twin[i] >= 0:
            next_twin[m.twin[i]] = i
    any_head = n
    pool_of: dict[Any, int] = {}  # cas from value -> pool head
    members: dict[int, list[int]] = {}
    for i in range(n):
        if info[i] and m.twin[i] < 0:
            h = any_head if kind[i] != CAS else pool_of.setdefault(arg[i], n + 1 + len(pool_of))
            members.setdefault(h, []).append(i)
    inx = [-1] * (n + 1 + len(pool_of))
    inp = [-1] * (n + 1 + len(pool_of))
    for h, ids in members.items():
        last = h
        for i in ids:
            inx[last] = i
            inp[i] = last
            last = i

    # On a key mixing appends with writes (or cas), the value grows between writes: see the
    # docstring's last reduction. ``setters`` are the ops that can replace the value.
    grows = APPEND in kind
    writes_only = not grows and APPEND_CODED not in kind  # the info pool of writes and appends has writes alone
    setters = [i for i in range(n) if kind[i] == WRITE or kind[i] == CAS] if grows else []
    # On a register, the same by the value set (values are mostly distinct, so the lists are short).
    # Each list is in call order (op ids are), with the calls' ranks alongside for a bisection.
    setting: dict[Any, tuple[list[int], list[int]]] = {}
    if not grows:
        for i in range(n):
            if kind[i] == WRITE or kind[i] == CAS:
                ids, calls = setting.setdefault(arg[i] if kind[i] == WRITE else arg2[i], ([], []))
                ids.append(i)
                calls.append(rank[2 * i])
    no_rivals: tuple[list[int], list[int]] = ([], [])

    memo: dict[Any, Any] = {}  # state -> packed placed-set (an int), or a set of them once several
    states = mem_bytes = steps = 0
    # The stack is a chain of tuples (parent, op, the search variables before the op), so the
    # deepest point reached is kept by reference instead of copied.
    top: Any = None
    depth = 0
    state: Any = m.initial
    base = rel = ibits = fresh = 0  # fresh: the last op placed was an info op that changed the state
    remaining = n_ok
    best: tuple[int, Any, int] | None = None  # depth, stack top, stuck op
    # Phases at a node: 0 ok ops that leave the state unchanged, 1 other ok ops, 2 the info pool of
    # writes and appends, 3 the info pool of cas from the current state.
    phase, e, j = 0, nxt[head], -1
    front, frontier = -1, never  # the first return entry and its rank (set at the end of phase 1)
    new: Any = None
    forced = False
    nfresh = 0
    while True:
        steps += 1
        if steps % SLICE_STEPS == 0:
            yield states, steps, mem_bytes
        i = -1
        if phase < 2:
            if e >= 0 and not e & 1:
                i = e >> 1
                k = kind[i]
                if phase == 0:
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
                    elif k < APPEND:  # reads and failed cas: none could go (phase 0 looked)
                        e = nxt[e]
                        continue
                    forced, nfresh = False, 0
            elif phase == 0:
                phase, e = 1, nxt[head]
                continue
            else:
                front, frontier = e, rank[e] if e >= 0 else never
                # Right after an info op changed the state no write may come (see above), and on
                # a key without appends the pool holds writes alone: nothing in it to try.
                phase, j = 2, (-1 if fresh and writes_only else inx[any_head])
                continue
        elif j >= 0:
            i = j
            if rank[2 * i] > frontier:  # not called yet
                # Pools are in call order, except that a twin takes the place of the earlier twin
                # placed (and is called later). So past a first-of-its-kind op not yet called,
                # nothing in the pool is called yet: the pool ends here.
                j = -1 if first_kind[i] else inx[j]
                continue
            k = kind[i]
            if k == WRITE:
                if fresh:
                    j = inx[j]
                    continue
                new = arg[i]
            elif k == CAS:
                new = arg2[i]
            forced, nfresh = False, 1
        elif phase == 2 and state in pool_of:
            phase, j = 3, inx[pool_of[state]]
            continue

        if i >= 0:
            if phase and k >= APPEND:
                t = arg[i]
                if k == APPEND:
                    if state is None:
                        new = t
                    elif type(state) is str:
                        new = state + t
                    else:
                        new = None  # only null or a string can be appended to
                        t = None
                else:  # APPEND_CODED, on a key whose value only grows
                    if type(state) is int:
                        q, length = divmod(state, width)
                        if values[q].startswith(t, length):  # still a prefix of the same value
                            new = state + len(t)
                        else:
                            new = recode(values[q][:length] + t)
                    else:
                        new = state + t
                    # The value only grows, so it must stay a prefix of every unplaced read's
                    # value: test the first such read found a bounded distance ahead.
                    x, hops = (nxt[e] if phase == 1 else front), 0
                    while x >= 0 and hops < 64 and not (x & 1 and kind[x >> 1] == READ_EQ):
                        x, hops = nxt[x], hops + 1
                    if x >= 0 and x & 1 and kind[x >> 1] == READ_EQ:
                        goal = arg[x >> 1]
                        if type(new) is not int or type(goal) is not int:
                            t = None
                        elif new != goal:
                            q, length = divmod(new, width)
                            qg, length_g = divmod(goal, width)
                            if length > length_g or (q != qg and values[qg][:length] != values[q][:length]):
                                t = None
                if t is None or (phase > 1 and new == state):
                    if phase == 1:
                        e = nxt[e]
                    else:
                        j = inx[j]
                    continue
            elif phase > 1 and new == state:  # an info op that changes nothing
                j = inx[j]
                continue
            if grows and (k == APPEND or k == WRITE) and type(new) is str:
                # Unless a write or cas can come first, the next unplaced ok read must see ``new``
                # grown by appends: ``new`` must be a prefix of its value.
                x, hops = (nxt[e] if phase == 1 else front), 0
                while x >= 0 and hops < 64 and not (x & 1 and kind[x >> 1] <= READ_NULL):
                    x, hops = nxt[x], hops + 1
                if x >= 0 and x & 1 and kind[x >> 1] <= READ_NULL:
                    null, goal = kind[x >> 1] == READ_NULL, arg[x >> 1]
                    if not (new == "" if null else type(goal) is str and goal.startswith(new)):
                        rx = rank[x]
                        for p in setters:
                            if p != i and rank[2 * p] < rx and (
                                    not ibits & bit[p] if info[p]
                                    else bit[p] >= base and not (rel >> (bit[p] - base)) & 1):
                                # p is unplaced and may take effect before the read: the read
                                # then sees p's value, maybe grown by appends.
                                v = arg[p] if kind[p] == WRITE else arg2[p]
                                # (a null written, then grown by appends, is any appended string)
                                if ((v is None or v == "") if null else v == goal or v is None or (
                                        type(v) is str and type(goal) is str and goal.startswith(v))):
                                    break
                        else:
                            if phase == 1:
                                e = nxt[e]
                            else:
                                j = inx[j]
                            continue
            elif not grows and (k == WRITE or k == CAS):
                # A register: the next unplaced ok read must see ``new``, unless an unplaced write or
                # cas of the value it read, called before it returned, may come in between.
                x, hops = (nxt[e] if phase == 1 else front), 0
                while x >= 0 and hops < 64 and not (x & 1 and kind[x >> 1] <= READ_NULL):
                    x, hops = nxt[x], hops + 1
                if x >= 0 and x & 1 and kind[x >> 1] <= READ_NULL:
                    null = kind[x >> 1] == READ_NULL
                    goal = arg[x >> 1]
                    if not ((new is None or new == "") if null else new == goal):
                        # The latest-called rivals first: the earlier ones are mostly placed. Past
                        # 64 of them, keep the branch (keeping one is always sound).
                        rx, found, looked = rank[x], False, 0
                        for v in ((None, "") if null else (goal,)):
                            ids, calls = setting.get(v, no_rivals)
                            h = bisect_left(calls, rx)
                            while h > 0 and looked < 64:
                                h, looked = h - 1, looked + 1
                                p = ids[h]
                                if p != i and (not ibits & bit[p] if info[p]
                                               else bit[p] >= base and not (rel >> (bit[p] - base)) & 1):
                                    found = True
                                    break
                            if found or h > 0:
                                found = True  # an unplaced rival, or too many to look at
                                break
                        if not found:
                            if phase == 1:
                                e = nxt[e]
                            else:
                                j = inx[j]
                            continue
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
                    return unknown(m, f"state budget of {max_states} explored states reached on key "
                                      f"{m.key!r}", states, steps)
                top = (top, i, state, base, rel, ibits, fresh, forced)
                depth += 1
                state, base, rel, ibits, fresh = new, nbase, nrel, nibits, nfresh
                if info[i]:
                    p, q, tw = inp[i], inx[i], next_twin[i]
                    if tw >= 0:
                        inx[p], inp[tw], inx[tw] = tw, p, q
                        if q >= 0:
                            inp[q] = tw
                    else:
                        inx[p] = q
                        if q >= 0:
                            inp[q] = p
                else:
                    c = 2 * i
                    p, q = prv[c], nxt[c]
                    nxt[p] = q
                    if q >= 0:
                        prv[q] = p
                    p, q = prv[c + 1], nxt[c + 1]
                    nxt[p] = q
                    if q >= 0:
                        prv[q] = p
                    remaining -= 1
                    if remaining == 0:
                        break
                # After an op placed as the only branch (it left the state as it was), the entries
                # before it were just found unable to go in this very state: resume after it.
                phase, e = 0, (nxt[prv[2 * i]] if forced else nxt[head])
                continue
            if not forced:
                if phase < 2:
                    e = nxt[e]
                else:
                    j = inx[j]
                continue
            # The one branch worth trying at this node was explored before: the node fails.

        # This node fails: record how deep the search got, then undo placements up to the last
        # node that still has other branches (an op placed as the only branch fails its node too).
        f = nxt[head]
        while f >= 0 and not f & 1:
            f = nxt[f]
        if best is None or depth > best[0]:
            best = (depth, top, f >> 1 if f >= 0 else top[1])
        while True:
            if top is None:
                _, chain, stuck = best
                prefix: list[int] = []
                while chain is not None:
                    prefix.append(chain[1])
                    chain = chain[0]
                return KeyResult(m.key, Validity.INVALID, n, m.pruned, states, steps,
                                 0.0, None, prefix[::-1], stuck)
            top, i, state, base, rel, ibits, fresh, forced = top
            depth -= 1
            if info[i]:
                p, q = inp[i], inx[i]
                inx[p] = i
                if q >= 0:
                    inp[q] = i
            else:
                c = 2 * i
                p, q = prv[c + 1], nxt[c + 1]
                nxt[p] = c + 1
                if q >= 0:
                    prv[q] = c + 1
                p, q = prv[c], nxt[c]
                nxt[p] = c
                if q >= 0:
                    prv[q] = c
                remaining += 1
            if not forced:
                break
        if info[i]:
            f = nxt[head]
            while f >= 0 and not f & 1:
                f = nxt[f]
            front, frontier = f, rank[f] if f >= 0 else never
            phase, j = (3 if kind[i] == CAS else 2), inx[i]
        else:
            phase, e = 1, nxt[2 * i]
    return KeyResult(m.key, Validity.VALID, n, m.pruned, states, steps)
