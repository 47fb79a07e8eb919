"""Client operations of a history: parsing and validation, and the per-key KV model the checker searches."""

from __future__ import annotations

import enum
import json
from bisect import bisect_left
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.errors import HarnessError

CLIENT_KINDS = frozenset({"invoke", "ok", "fail", "info"})
FUNCTIONS = frozenset({"read", "write", "cas", "append"})
# Records of our run schema that are not client operations (nemesis, node lifecycle, samples, notes).
_OTHER_KINDS = frozenset({"fault", "heal", "node", "sample", "note"})
# Non-client processes: Jepsen logs nemesis actions as `info` records of process "nemesis".
_OTHER_PROCESSES = frozenset({"nemesis", "observer", "harness"})


class HistoryError(HarnessError):
    """The history itself is malformed, so nothing can be concluded about the system.

    ``line`` is the 1-based line of a file (or position in an event list); ``problem`` says what.
    """

    def __init__(self, line: int, problem: str, unit: str = "line") -> None:
        self.line = line
        self.problem = problem
        super().__init__(f"{unit} {line}: {problem}")


class OpStatus(enum.Enum):
    """How an operation completed, which fixes what the model may assume about it."""

    OK = "ok"  # took effect exactly once between invoke and completion
    INFO = "info"  # indeterminate (or never completed): may take effect at any time after invoke
    FAILED_CAS = "failed_cas"  # a cas that executed, found current != from, changed nothing
    FAILED = "failed"  # definitely had no effect: not checked at all


@dataclass(frozen=True, slots=True)
class Op:
    """One client operation: an invoke paired with its completion.

    ``index``/``complete_index`` are 0-based positions of the two events in the input (the completion's
    is None when the op never completed); ``line`` is the invoke's line (1-based) in a file.
    ``value`` is the invoke's value, except for a read, where it is the value read. Times are the
    input's own numbers (seconds, nanoseconds or sequence numbers); ``return_time`` None = never.
    """

    index: int
    line: int
    complete_index: int | None
    process: int
    f: str
    key: str
    value: Any
    status: OpStatus
    call_time: float
    return_time: float | None
    error: Any = None

    def describe(self) -> dict[str, Any]:
        """A JSON-serialisable description for reports (which events to highlight)."""
        return {"index": self.index, "complete_index": self.complete_index, "line": self.line,
                "process": self.process, "f": self.f, "key": self.key, "value": self.value,
                "status": self.status.value, "call_time": self.call_time,
                "return_time": self.return_time}


# ---- parsing --------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Event:
    pos: int
    line: int
    kind: str
    process: int
    f: str
    key: str
    value: Any
    time: float | None
    error: Any


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def normalise_event(raw: Any, pos: int, line: int, unit: str = "line") -> _Event | None:
    """Read one record of either schema (``type``/``time`` or our run's ``kind``/``t``) into one shape.

    Returns None for records that are not client operations (nemesis, node, sample, note); raises
    HistoryError for a client record that cannot be understood. Extra fields are ignored.
    """
    if not isinstance(raw, Mapping):
        raise HistoryError(line, "not a JSON object", unit)
    if "type" in raw:
        kind = raw["type"]
        if kind not in CLIENT_KINDS:
            raise HistoryError(line, f"unknown type {kind!r}; expected invoke, ok, fail or info", unit)
    elif "kind" in raw:
        kind = raw["kind"]
        if kind in _OTHER_KINDS:
            return None
        if kind not in CLIENT_KINDS:
            raise HistoryError(line, f"unknown kind {kind!r}", unit)
    else:
        raise HistoryError(line, "missing 'type' (or 'kind')", unit)
    if "process" not in raw:
        raise HistoryError(line, "missing process", unit)
    process = raw["process"]
    if isinstance(process, str) and process in _OTHER_PROCESSES:
        return None
    if not isinstance(process, int) or isinstance(process, bool):
        raise HistoryError(line, f"process must be an integer, got {process!r}", unit)
    f = raw.get("f")
    if f not in FUNCTIONS:
        raise HistoryError(line, f"unknown f {f!r}; expected read, write, cas or append", unit)
    key = raw.get("key", "")
    if key is None:
        key = ""
    if isinstance(key, int) and not isinstance(key, bool):
        key = str(key)
    if not isinstance(key, str):
        raise HistoryError(line, f"key must be a string, got {key!r}", unit)
    time = raw.get("time", raw.get("t"))
    if time is not None and not _is_number(time):
        raise HistoryError(line, f"time must be a number, got {time!r}", unit)
    return _Event(pos, line, kind, process, f, key, raw.get("value"), time, raw.get("error"))


def _check_invoke_value(ev: _Event, unit: str) -> None:
    if ev.f == "cas" and not (isinstance(ev.value, list | tuple) and len(ev.value) == 2):
        raise HistoryError(ev.line, f"cas value must be [from, to], got {ev.value!r}", unit)
    if ev.f == "append" and not isinstance(ev.value, str):
        raise HistoryError(ev.line, f"append value must be a string, got {ev.value!r}", unit)


def parse_history(events: Iterable[Any], line_numbers: Sequence[int] | None = None) -> list[Op]:
    """Pair invokes with completions and validate; returns every operation in invoke order.

    Positions in ``events`` become ``Op.index``; ``line_numbers`` (one per event) names file lines in
    errors, otherwise errors name the 1-based event position. Raises HistoryError for malformed input:
    unknown f, missing process, a completion without invoke, a process invoking twice, times going
    backwards within an operation, or times given on some events but not others.
    """
    unit = "line" if line_numbers is not None else "event"
    open_: dict[int, _Event] = {}  # process -> its invoke still waiting for a completion
    invokes: list[_Event] = []
    completions: dict[int, _Event] = {}  # invoke position -> completion
    timed: bool | None = None
    for pos, raw in enumerate(events):
        line = line_numbers[pos] if line_numbers is not None else pos + 1
        ev = normalise_event(raw, pos, line, unit)
        if ev is None:
            continue
        if timed is None:
            timed = ev.time is not None
        elif timed != (ev.time is not None):
            raise HistoryError(line, "time missing here but present on other events (or vice versa)", unit)
        if ev.kind == "invoke":
            if ev.process in open_:
                first = open_[ev.process]
                raise HistoryError(line, f"process {ev.process} invoked again while its {first.f} from "
                                         f"{unit} {first.line} has not completed", unit)
            _check_invoke_value(ev, unit)
            open_[ev.process] = ev
            invokes.append(ev)
            continue
        inv = open_.pop(ev.process, None)
        if inv is None:
            raise HistoryError(line, f"{ev.kind} of process {ev.process} without a preceding invoke", unit)
        if inv.f != ev.f or inv.key != ev.key:
            raise HistoryError(line, f"completion ({ev.f} {ev.key!r}) does not match the invoke "
                                     f"({inv.f} {inv.key!r}) on {unit} {inv.line}", unit)
        if ev.time is not None and inv.time is not None and ev.time < inv.time:
            raise HistoryError(line, f"completes at {ev.time}, before its invoke at {inv.time}", unit)
        completions[inv.pos] = ev
    return [_make_op(inv, completions.get(inv.pos), bool(timed)) for inv in invokes]


def _make_op(inv: _Event, done: _Event | None, timed: bool) -> Op:
    """Build one operation; without timestamps the event positions order everything."""
    call_time = inv.time if timed else inv.pos
    if done is None:
        return Op(inv.pos, inv.line, None, inv.process, inv.f, inv.key, inv.value, OpStatus.INFO,
                  call_time, None)
    return_time = done.time if timed else done.pos
    value = done.value if inv.f == "read" else inv.value
    if done.kind == "ok":
        status = OpStatus.OK
    elif done.kind == "info":
        status, return_time = OpStatus.INFO, None
    elif inv.f == "cas" and done.error is None:
        status = OpStatus.FAILED_CAS
    else:
        status = OpStatus.FAILED
    return Op(inv.pos, inv.line, done.pos, inv.process, inv.f, inv.key, value, status, call_time,
              return_time, done.error)


def read_history(path: Path | str) -> tuple[list[dict[str, Any]], list[Op]]:
    """Load a JSONL history file: the raw events and the parsed operations.

    A torn (unparseable) last line is dropped, as a crashed run leaves one; any other line that is
    not JSON raises HistoryError naming it.
    """
    text = Path(path).read_text(encoding="utf-8", errors="replace")
    lines = text.split("\n")
    last = max((i for i, line in enumerate(lines) if line.strip()), default=-1)
    events: list[dict[str, Any]] = []
    numbers: list[int] = []
    for i, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            event = json.loads(line)
        except json.JSONDecodeError:
            if i == last:
                break
            raise HistoryError(i + 1, f"not JSON: {line[:80]!r}") from None
        events.append(event)
        numbers.append(i + 1)
    return events, parse_history(events, numbers)


# ---- the KV model -----------------------------------------------------------------------------------
#
# One register per key, starting at null. A search step asks "can op i take effect in state s, and
# what state follows?"; the answer is coded as small ints and flat lists so the search's inner loop
# touches no per-op objects.

READ_EQ, READ_NULL, WRITE, CAS, CAS_FAILED, APPEND, APPEND_CODED = range(7)


class _Json:
    """A JSON literal that must not compare equal to a number (Python has True == 1)."""

    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return self.name


_TRUE, _FALSE, _LIST, _DICT = _Json("true"), _Json("false"), _Json("list"), _Json("dict")
_NEVER = _Json("never")  # what a read on an append-only key that returned a non-string compares to
UNREAD = _Json("unread")  # any written value that no op of its key compares with


def freeze(value: Any) -> Any:
    """A hashable stand-in for a JSON value, equal exactly when the JSON values are equal."""
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
    ``initial`` (the code of "", as null and "" behave alike there).
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


def _code(op: Op) -> tuple[int, Any, Any]:
    if op.f == "read":
        return (READ_NULL, None, None) if op.value is None or op.value == "" else (READ_EQ, freeze(op.value), None)
    if op.f == "write":
        return WRITE, freeze(op.value), None
    if op.f == "append":
        return APPEND, op.value, None
    frm, to = freeze(op.value[0]), freeze(op.value[1])
    return (CAS_FAILED, frm, None) if op.status is OpStatus.FAILED_CAS else (CAS, frm, to)


def _matters(op: Op, code: tuple[int, Any, Any], observed: set[Any] | None) -> bool:
    """False for operations that can be dropped without changing the answer.

    - a failed op (error or not a cas) had no effect, and an info read neither changed the state nor
      returned anything;
    - an info cas with from == to leaves the state as it was whenever it can apply, so leaving it out
      is always at least as good;
    - an info write whose value nothing ever observes, on a key without appends and failed cas
      (``observed`` is None otherwise). In any linearization, the op right after such a write w cannot
      be a read (it would read w's value), nor a cas (its from would be w's value); so it is a write,
      which overwrites w's value, or w is last. Removing w therefore keeps every linearization valid,
      and the converse is trivial because w may be left out anyway. Appends (which extend w's value)
      and failed cas (which only need current != from) could depend on w, hence the restriction.
    """
    if op.status is OpStatus.FAILED or (op.status is OpStatus.INFO and op.f == "read"):
        return False
    if op.status is not OpStatus.INFO:
        return True
    kind, a, b = code
    if kind == CAS and a == b:
        return False
    if kind == WRITE and observed is not None:
        return a in observed  # a read of null or "" puts both in observed
    return True


def compile_key(key: str, ops: Sequence[Op]) -> KeyModel:
    """Code one key's operations for the search, after sound pruning (see ``_matters``) and
    abstraction (see ``_abstract_unread``); append-only keys are coded over ``Prefixes``."""
    codes = [_code(op) for op in ops]
    observed: set[Any] | None = set()
    for op, (kind, a, _b) in zip(ops, codes, strict=True):
        if op.status is OpStatus.FAILED:
            continue
        if kind in (APPEND, CAS_FAILED):
            observed = None
            break
        if kind == READ_NULL:
            observed.update((None, ""))
        elif kind in (READ_EQ, CAS):
            observed.add(a)
    kept = [i for i, op in enumerate(ops) if _matters(op, codes[i], observed)]
    prefixes = None
    kinds = {codes[i][0] for i in kept}
    if kinds <= {READ_EQ, READ_NULL, APPEND}:
        prefixes, coded = _code_prefixes([codes[i] for i in kept])
        codes = dict(zip(kept, coded, strict=True))
        # An info append whose token no read value contains can only be placed after the last read
        # (the value only grows, so every later read would contain the token), where nothing can
        # tell whether it happened: leave it out.
        maximal = [v for j, v in enumerate(prefixes.values)
                   if j + 1 == len(prefixes.values) or not prefixes.values[j + 1].startswith(v)]
        kept = [i for i in kept if not (ops[i].status is OpStatus.INFO and codes[i][1]
                                        and not any(codes[i][1] in v for v in maximal))]
    elif APPEND not in kinds:
        codes = _abstract_unread(codes, kept)
    kept.sort(key=lambda i: (ops[i].call_time, ops[i].index))
    checked = [ops[i] for i in kept]
    final = [codes[i] for i in kept]
    info = [op.status is OpStatus.INFO for op in checked]
    twin: list[int] = []
    last_of_class: dict[tuple[int, Any, Any], int] = {}
    for i, code in enumerate(final):
        if info[i]:
            twin.append(last_of_class.get(code, -1))
            last_of_class[code] = i
        else:
            twin.append(-1)
    timed = [(op.call_time, 0, 2 * i) for i, op in enumerate(checked)]
    timed += [(op.return_time, 1, 2 * i + 1) for i, op in enumerate(checked) if op.return_time is not None]
    # At equal times calls sort before returns: touching intervals count as concurrent, the reading
    # that never reports a violation the timestamps cannot prove.
    timed.sort()
    return KeyModel(key, checked, [c[0] for c in final], [c[1] for c in final], [c[2] for c in final],
                    info, twin, [e for _, _, e in timed], len(ops) - len(checked), prefixes,
                    None if prefixes is None else 0)


def _abstract_unread(codes: Any, kept: list[int]) -> dict[int, tuple[int, Any, Any]]:
    """Replace every written value that no op of the key ever compares with (no read returned it, no
    cas names it as ``from``) by one symbol, UNREAD. On a key without appends the model then
    behaves identically: every comparison with such a value comes out as with UNREAD. But states
    merge in the memo, and info ops writing different unread values become interchangeable."""
    compared: set[Any] = set()
    for i in kept:
        kind, a, _b = codes[i]
        if kind == READ_NULL:
            compared.update((None, ""))
        elif kind in (READ_EQ, CAS, CAS_FAILED):
            compared.add(a)
    out: dict[int, tuple[int, Any, Any]] = {}
    for i in kept:
        kind, a, b = codes[i]
        if kind == WRITE and a not in compared:
            a = UNREAD
        elif kind == CAS and b not in compared:
            b = UNREAD
        out[i] = (kind, a, b)
    return out


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


def compile_keys(ops: Iterable[Op]) -> list[KeyModel]:
    """Split a history by key (each key is an independent register, so linearizability of the whole
    is linearizability of every key) and compile each."""
    by_key: dict[str, list[Op]] = {}
    for op in ops:
        by_key.setdefault(op.key, []).append(op)
    return [compile_key(key, key_ops) for key, key_ops in by_key.items()]
