"""The KV model the checker searches: ops coded per key, sound pruning, and the stale-read pre-check.

One register per key, starting at null. A search step asks "can op i take effect in state s, and
what state follows?"; the answer is coded as small ints and flat lists so the search's inner loop
touches no per-op objects.
"""

from __future__ import annotations

import time
from bisect import bisect_left, bisect_right
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from itertools import islice
from operator import itemgetter, le, lt
from typing import Any

from harness.checkers.history_ops import Op, OpStatus

READ_EQ, READ_NULL, WRITE, CAS, CAS_FAILED, APPEND, APPEND_CODED = range(7)
_INDEX, _CALL_TIME = itemgetter(0), itemgetter(8)  # Op fields, read at C speed over a whole key
_SCAN_LIMIT = 200_000_000  # characters scanned (at C speed) to prune info appends: ~0.1 s


class _Json:
    """A JSON literal that must not compare equal to a number (Python has True == 1)."""

    __slots__ = ("name", "ref")

    def __init__(self, name: str, ref: str) -> None:
        self.name = name
        self.ref = ref  # its module-level name: unpickled, it is the same object (worker processes)

    def __repr__(self) -> str:
        return self.name

    def __reduce__(self) -> str:
        return self.ref


_TRUE, _FALSE = _Json("true", "_TRUE"), _Json("false", "_FALSE")
_LIST, _DICT = _Json("list", "_LIST"), _Json("dict", "_DICT")
_NEVER = _Json("never", "_NEVER")  # what a read on an append-only key that returned a non-string compares to
UNREAD = _Json("unread", "UNREAD")  # any written value that no op of its key compares with


def freeze(value: Any) -> Any:
    """A hashable stand-in for a JSON value, equal exactly when the JSON values are equal."""
    t = type(value)
    if t is int or t is str or value is None:  # most values (exact types: bool is not int here)
        return value
    if value is True or value is False:
        return _TRUE if value else _FALSE
    if isinstance(value, list | tuple):
        return (_LIST, *(freeze(v) for v in value))
    if isinstance(value, dict):
        return (_DICT, frozenset((k, freeze(v)) for k, v in value.items()))
    return value


def thaw(value: Any) -> Any:
    """The JSON value behind a frozen one (for reports)."""
    if value is _TRUE or value is _FALSE:
        return value is _TRUE
    if isinstance(value, tuple) and value and value[0] is _LIST:
        return [thaw(v) for v in value[1:]]
    if isinstance(value, tuple) and value and value[0] is _DICT:
        return {k: thaw(v) for k, v in value[1]}
    return value


@dataclass(frozen=True)
class Prefixes:
    """Exact one-int codes for the values of an append-only key.

    Such a key's value only grows, so the search only keeps states that are prefixes of a value some
    read returned. A prefix is coded as (index of the smallest read value having it) * ``width`` +
    its length: equal strings get equal codes, and neither the memo nor the stack keeps a copy of a
    long string per state (which costs memory quadratic in the number of appends).
    """

    values: list[str]  # sorted, distinct, starting with ""
    width: int

    def code(self, text: str) -> int | str:
        """The code of ``text``, or ``text`` itself when it is a prefix of no read value."""
        j = bisect_left(self.values, text)
        if j < len(self.values) and self.values[j].startswith(text):
            return j * self.width + len(text)
        return text


@dataclass(frozen=True)
class KeyModel:
    """One key's operations ready for the search. Op ids are positions in ``ops`` (call order).

    ``kind``/``arg``/``arg2`` code each op's transition; ``info[i]`` says op i never returns (it may be
    linearized at any time after its call, or not at all); ``twin[i]`` is the previous info op with
    the identical transition (or -1); ``entries`` lists call (2i) and return (2i+1) entries in time
    order; ``pruned`` counts info ops dropped before the search because they cannot matter;
    ``prefixes`` is set on a key whose value only grows (appends and reads only): its states and
    read values are then coded by it, appends use APPEND_CODED, and the search starts at
    ``initial`` (the code of "", as null and "" behave alike there). ``compiled`` False: the time
    limit passed before this key was compiled; ``ops`` alone is set (see ``compile_keys``).
    """

    key: str
    ops: list[Op]
    kind: list[int]
    arg: list[Any]
    arg2: list[Any]
    info: list[bool]
    twin: list[int]
    entries: list[int]
    pruned: int
    prefixes: Prefixes | None = None
    initial: Any = None
    compiled: bool = True


def compile_key(key: str, ops: Sequence[Op]) -> KeyModel:
    """Code one key's operations for the search, after sound pruning and abstraction (below);
    append-only keys are coded over ``Prefixes``.

    Pruning: an op is dropped when leaving it out cannot change the answer.

    - a failed op (error or not a cas) had no effect, and an info read neither changed the state nor
      returned anything;
    - an info cas with from == to leaves the state as it was whenever it can apply, so leaving it out
      is always at least as good;
    - an info write whose value nothing ever observes, on a key without appends and failed cas. In
      any linearization, the op right after such a write w cannot be a read (it would read w's
      value), nor a cas (its from would be w's value); so it is a write, which overwrites w's value,
      or w is last. Removing w therefore keeps every linearization valid, and the converse is
      trivial because w may be left out anyway. Appends (which extend w's value) and failed cas
      (which only need current != from) could depend on w, hence the restriction.

    Abstraction, on a key without appends: every written value that no kept op compares with (no
    read returned it, no cas names it as ``from``) becomes one symbol, UNREAD. The model then
    behaves identically: every comparison with such a value comes out as with UNREAD. But states
    merge in the memo, and info ops writing different unread values become interchangeable.

    One pass codes every op into flat lists (this runs once per op of histories of a million ops:
    no call or tuple per op), a second keeps the ops that matter.
    """
    n = len(ops)
    kinds = [0] * n
    args: list[Any] = [None] * n
    args2: list[Any] = [None] * n
    seen: set[Any] = set()  # values some read or cas observes (over every op with an effect)
    blind = True  # no appends and no failed cas: unobserved info writes can be dropped
    null_seen = False  # a read of null (or "") observes both
    failed, failed_cas, info_status = OpStatus.FAILED, OpStatus.FAILED_CAS, OpStatus.INFO
    for i, op in enumerate(ops):
        f, v = op.f, op.value
        if f == "read":
            if v is None or v == "":
                kinds[i] = READ_NULL
                if op.status is not failed:
                    null_seen = True
                continue
            a = v if type(v) is int or type(v) is str else freeze(v)
            kinds[i], args[i] = READ_EQ, a
            if op.status is not failed:
                seen.add(a)
        elif f == "write":
            kinds[i], args[i] = WRITE, v if type(v) is int or type(v) is str or v is None else freeze(v)
        elif f == "append":
            kinds[i], args[i] = APPEND, v
            if op.status is not failed:
                blind = False
        else:
            frm, to = freeze(v[0]), freeze(v[1])
            if op.status is failed_cas:
                kinds[i], args[i] = CAS_FAILED, frm
                blind = False
            else:
                kinds[i], args[i], args2[i] = CAS, frm, to
                if op.status is not failed:
                    seen.add(frm)
    if null_seen:
        seen.update((None, ""))
    kept: list[int] = []
    for i, op in enumerate(ops):
        status = op.status
        if status is failed:
            continue
        if status is info_status:
            k = kinds[i]
            if k <= READ_NULL or (k == CAS and args[i] == args2[i]) or (k == WRITE and blind and args[i] not in seen):
                continue
        kept.append(i)
    prefixes = None
    used = {kinds[i] for i in kept}
    if used <= {READ_EQ, READ_NULL, APPEND}:
        prefixes, coded = _code_prefixes([(kinds[i], args[i], args2[i]) for i in kept])
        for i, (k, a, b) in zip(kept, coded, strict=True):
            kinds[i], args[i], args2[i] = k, a, b
        # An info append whose token no read value contains can only be placed after the last read
        # (the value only grows, so every later read would contain the token), where nothing can
        # tell whether it happened: leave it out. Every read value is a prefix of a maximal one;
        # joined, a token may also match across a separator, which only keeps an op (sound). The
        # scan is skipped when it would be long (many diverging reads): keeping ops is sound.
        maximal = "\x00".join(v for j, v in enumerate(prefixes.values)
                               if j + 1 == len(prefixes.values) or not prefixes.values[j + 1].startswith(v))
        infos = [i for i in kept if ops[i].status is info_status and args[i]]
        if len(infos) * len(maximal) <= _SCAN_LIMIT:
            unseen = {i for i in infos if args[i] not in maximal}
            kept = [i for i in kept if i not in unseen]
    elif APPEND not in used:
        _abstract_unread(kinds, args, args2, kept)
    all_calls, indexes = list(map(_CALL_TIME, ops)), list(map(_INDEX, ops))
    in_order = (all(map(le, all_calls, islice(all_calls, 1, None)))
                and all(map(lt, indexes, islice(indexes, 1, None))))  # then so is any subsequence
    if not in_order:  # ops not given in call order
        kept.sort(key=lambda i: (ops[i].call_time, ops[i].index))
    calls = all_calls if in_order and len(kept) == n else [all_calls[i] for i in kept]
    if in_order and len(kept) == n:  # nothing pruned nor moved: the lists are final as they are
        checked, kind, arg, arg2 = list(ops), kinds, args, args2
    else:
        checked = [ops[i] for i in kept]
        kind, arg, arg2 = [kinds[i] for i in kept], [args[i] for i in kept], [args2[i] for i in kept]
    m = len(checked)
    info = [op.status is info_status for op in checked]
    twin = [-1] * m
    last_of_class: dict[tuple[int, Any, Any], int] = {}
    for i in range(m):
        if info[i]:
            code = (kind[i], arg[i], arg2[i])
            twin[i] = last_of_class.get(code, -1)
            last_of_class[code] = i
    # Entries in time order; at equal times calls before returns (touching intervals count as
    # concurrent, the reading that never reports a violation the timestamps cannot prove), calls
    # and returns each in op order: a stable sort by time of all calls, then all returns.
    times: list[Any] = [None] * (2 * m)
    times[0::2] = calls
    times[1::2] = [op.return_time for op in checked]
    entries = [*range(0, 2 * m, 2), *(e for e in range(1, 2 * m, 2) if times[e] is not None)]
    entries.sort(key=times.__getitem__)
    return KeyModel(key, checked, kind, arg, arg2, info, twin, entries, n - m, prefixes,
                    None if prefixes is None else 0)


def _abstract_unread(kinds: list[int], args: list[Any], args2: list[Any], kept: list[int]) -> None:
    """Replace, in place over ``kept``, every written value that no kept op compares with by UNREAD
    (see ``compile_key``)."""
    compared: set[Any] = set()
    null_read = False
    for i in kept:
        k = kinds[i]
        if k == READ_EQ or k == CAS or k == CAS_FAILED:
            compared.add(args[i])
        elif k == READ_NULL:
            null_read = True
    if null_read:
        compared.update((None, ""))
    for i in kept:
        k = kinds[i]
        if k == WRITE:
            if args[i] not in compared:
                args[i] = UNREAD
        elif k == CAS and args2[i] not in compared:
            args2[i] = UNREAD


def replay(ops: Iterable[Op]) -> Any:
    """The value a key holds after ``ops`` take effect in this order (each assumed legal)."""
    value: Any = None
    for op in ops:
        if op.f == "write":
            value = op.value
        elif op.f == "cas" and op.status is not OpStatus.FAILED_CAS:
            value = op.value[1]
        elif op.f == "append":
            value = (value or "") + op.value
    return value


def _code_prefixes(codes: list[tuple[int, Any, Any]]) -> tuple[Prefixes, list[tuple[int, Any, Any]]]:
    """Recode an append-only key's ops over the prefixes of its read values (see Prefixes)."""
    values = sorted({""} | {a for kind, a, _b in codes if kind == READ_EQ and type(a) is str})
    prefixes = Prefixes(values, max(len(v) for v in values) + 1)
    out: list[tuple[int, Any, Any]] = []
    for kind, a, b in codes:
        if kind == READ_NULL:
            out.append((READ_EQ, 0, None))
        elif kind == READ_EQ:
            out.append((READ_EQ, prefixes.code(a) if type(a) is str else _NEVER, None))
        else:
            out.append((APPEND_CODED, a, b))
    return prefixes, out


def group_keys(ops: Iterable[Op]) -> list[tuple[str, list[Op]]]:
    """Split a history by key, keys in order of first appearance: each key is an independent
    register, so linearizability of the whole is linearizability of every key."""
    by_key: dict[str, list[Op]] = {}
    for op in ops:
        key_ops = by_key.get(op.key)
        if key_ops is None:
            by_key[op.key] = [op]
        else:
            key_ops.append(op)
    return list(by_key.items())


def compile_keys(ops: Iterable[Op], deadline: float | None = None) -> list[KeyModel]:
    """Split a history by key (see ``group_keys``) and compile each. Past ``deadline`` (a
    ``time.monotonic`` value) the keys left are not compiled: their models hold the ops alone
    (``compiled`` False), for a verdict that reports them unknown."""
    models: list[KeyModel] = []
    for key, key_ops in group_keys(ops):
        if deadline is not None and time.monotonic() > deadline:
            models.append(KeyModel(key, key_ops, [], [], [], [], [], [], 0, compiled=False))
        else:
            models.append(compile_key(key, key_ops))
    return models


@dataclass(frozen=True)
class StaleRead:
    """Proof that an ok read returned a value no linearization allows (op ids of the KeyModel).

    ``overwrite`` is an ok op that wrote another value and returned before the read was invoked;
    ``last_write`` is the op that could write the read value and returned last, yet before
    ``overwrite`` began (None when nothing could ever write it: a value never written).
    """

    read: int
    overwrite: int | None
    last_write: int | None


def find_stale_read(m: KeyModel) -> StaleRead | None:
    """A read whose value is provably overwritten (or never written), found in O(n log n).

    Sound, not complete: on a key without appends, if some ok write W of another value returned
    before read R began, and every op that could write R's value (ok or info, any that began
    before R ended) returned before W began, then every order puts W after the last such write and
    before R, so R cannot see its value. This catches the common anomalies (stale reads, lost
    writes, values never written) at once; everything else is left to the search.

    It reads the model's codes (a read of "" is a read of null, and a write of "" writes null).
    Values abstracted to UNREAD are no read's value, so merging them changes no answer: a setter
    of UNREAD is of another value than any read's, as each of the values it stands for was.
    """
    kind, arg, arg2, info, ops = m.kind, m.arg, m.arg2, m.info, m.ops
    if m.prefixes is not None:  # reads and appends only, values coded (0 is null or "")
        if APPEND_CODED in kind:
            return None
        never = next((r for r, a in enumerate(arg) if a != 0), None)  # nothing writes: only null is read
        return None if never is None else StaleRead(never, None, None)
    if APPEND in kind:
        return None
    inf = float("inf")
    n = len(ops)
    calls = [op.call_time for op in ops]
    rets: list[Any] = [inf if info[i] else op.return_time for i, op in enumerate(ops)]
    value_of: list[Any] = [None] * n
    by_value: dict[Any, Any] = {}  # value -> its setter (an id), or a list of them (in call order)
    ok_ids: list[int] = []
    for i in range(n):
        k = kind[i]
        if k == WRITE:
            v = arg[i]
        elif k == CAS:
            v = arg2[i]
        else:
            continue
        if v == "":
            v = None
        value_of[i] = v
        held = by_value.get(v)
        if held is None:
            by_value[v] = i
        elif type(held) is int:
            by_value[v] = [held, i]
        else:
            held.append(i)
        if not info[i]:
            ok_ids.append(i)
    # Ok setters by return time (op order among equal returns), with the running two
    # latest-starting ones of different values.
    ok_ids.sort(key=rets.__getitem__)
    ok_rets = [rets[i] for i in ok_ids]
    top2: list[tuple[int, int]] = []  # (first, second): op ids, -1 for none
    first = second = -1
    for i in ok_ids:
        call, value = calls[i], value_of[i]
        if first < 0 or call > calls[first]:
            if first >= 0 and value != value_of[first]:
                second = first
            first = i
        elif value != value_of[first] and (second < 0 or call > calls[second]):
            second = i
        top2.append((first, second))
    running: dict[Any, tuple[list[Any], list[tuple[Any, int]]]] = {}  # built for values set several times
    for r in range(n):
        k = kind[r]
        if k == READ_EQ:
            value = arg[r]
        elif k == READ_NULL:
            value = None
        else:
            continue
        held = by_value.get(value)
        end = ops[r].return_time  # reads left in a model are ok reads: they returned
        assert end is not None
        # The setters of the value that began before the read ended: the latest return among them.
        if held is None:
            last_ret, last_i = -inf, -1
        elif type(held) is int:
            last_ret, last_i = (rets[held], held) if calls[held] <= end else (-inf, -1)
        else:
            lists = running.get(value)
            if lists is None:
                best: tuple[Any, int] = (-inf, -1)
                maxima = []
                for i in held:
                    if rets[i] >= best[0]:  # ids only grow: a tie keeps the later one
                        best = (rets[i], i)
                    maxima.append(best)
                lists = running[value] = ([calls[i] for i in held], maxima)
            h = bisect_right(lists[0], end)
            last_ret, last_i = lists[1][h - 1] if h else (-inf, -1)
        if last_i < 0 and value is not None:
            return StaleRead(r, None, None)
        j = bisect_left(ok_rets, calls[r]) - 1  # ok setters that returned before the read began
        if j < 0:
            continue
        for cand in top2[j]:
            if cand >= 0 and value_of[cand] != value and calls[cand] > last_ret:
                return StaleRead(r, cand, last_i if last_i >= 0 else None)
    return None
