"""Client operations of a history: reading either event schema, validating it, pairing invokes with completions."""

from __future__ import annotations

import enum
import gc
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NamedTuple

from harness.errors import HarnessError
from harness.history import read_json_lines

CLIENT_KINDS = frozenset({"invoke", "ok", "fail", "info"})
FUNCTIONS = frozenset({"read", "write", "cas", "append"})
# Records of our run schema that are not client operations (nemesis, node lifecycle, samples, notes).
_OTHER_KINDS = frozenset({"fault", "heal", "node", "sample", "trace", "note"})
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


class Op(NamedTuple):
    """One client operation: an invoke paired with its completion.

    ``index``/``complete_index`` are 0-based positions of the two events in the input (the completion's
    is None when the op never completed); ``line`` is the invoke's line (1-based) in a file.
    ``value`` is the invoke's value, except for a read, where it is the value read. Times are the
    input's own numbers (seconds, nanoseconds or sequence numbers); ``return_time`` None = never.
    A tuple rather than a frozen dataclass: a long history builds 100k of them, and a tuple is built
    four times faster (``index`` shadows ``tuple.index``, which nothing here uses).
    """

    index: int  # type: ignore[assignment]
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


class _Event(NamedTuple):  # a tuple: built once per record, several times cheaper than a dataclass
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
    HistoryError for a client record that cannot be understood. Extra fields are ignored. (Exact
    type tests come first: this runs once per record of histories of a million lines.)
    """
    if type(raw) is not dict and not isinstance(raw, Mapping):
        raise HistoryError(line, "not a JSON object", unit)
    if "type" in raw:
        kind = raw["type"]
        if not isinstance(kind, str) or kind not in CLIENT_KINDS:
            raise HistoryError(line, f"unknown type {kind!r}; expected invoke, ok, fail or info", unit)
    elif "kind" in raw:
        kind = raw["kind"]
        if isinstance(kind, str) and kind in _OTHER_KINDS:
            return None
        if not isinstance(kind, str) or kind not in CLIENT_KINDS:
            raise HistoryError(line, f"unknown kind {kind!r}", unit)
    else:
        raise HistoryError(line, "missing 'type' (or 'kind')", unit)
    if "process" not in raw:
        raise HistoryError(line, "missing process", unit)
    process = raw["process"]
    if type(process) is not int:
        if isinstance(process, str) and process in _OTHER_PROCESSES:
            return None
        if not isinstance(process, int) or isinstance(process, bool):
            raise HistoryError(line, f"process must be an integer, got {process!r}", unit)
    f = raw.get("f")
    if not isinstance(f, str) or f not in FUNCTIONS:
        raise HistoryError(line, f"unknown f {f!r}; expected read, write, cas or append", unit)
    key = raw.get("key", "")
    if type(key) is not str:
        if key is None:
            key = ""
        elif isinstance(key, int) and not isinstance(key, bool):
            key = str(key)
        if not isinstance(key, str):
            raise HistoryError(line, f"key must be a string, got {key!r}", unit)
    time = raw["time"] if "time" in raw else raw.get("t")
    if time is not None and type(time) is not float and type(time) is not int and not _is_number(time):
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

    Runs once per record of histories of a million lines, so a well-formed client record is read
    inline (exact type tests that accept exactly what ``normalise_event`` accepts); anything else
    goes through ``normalise_event``, which explains what is wrong.
    """
    unit = "line" if line_numbers is not None else "event"
    open_: dict[int, tuple[_Event, int]] = {}  # process -> its invoke waiting for a completion, its slot
    ops: list[Any] = []  # one slot per invoke, in invoke order: the Op once it completed
    timed: bool | None = None
    new = tuple.__new__
    ok_status = OpStatus.OK
    for pos, raw in enumerate(events):
        line = line_numbers[pos] if line_numbers is not None else pos + 1
        ev: _Event | None = None
        if type(raw) is dict:
            kind = raw.get("type")
            if kind is None and "type" not in raw:
                kind = raw.get("kind")
            if type(kind) is str and kind in CLIENT_KINDS:
                process, f, key = raw.get("process"), raw.get("f"), raw.get("key", "")
                t = raw["time"] if "time" in raw else raw.get("t")
                if (type(process) is int and type(f) is str and f in FUNCTIONS and type(key) is str
                        and (t is None or type(t) is float or type(t) is int)):
                    ev = new(_Event, (pos, line, kind, process, f, key, raw.get("value"), t, raw.get("error")))
        if ev is None:
            ev = normalise_event(raw, pos, line, unit)
            if ev is None:
                continue
        if timed is None:
            timed = ev.time is not None
        elif timed != (ev.time is not None):
            raise HistoryError(line, "time missing here but present on other events (or vice versa)", unit)
        if ev.kind == "invoke":
            if ev.process in open_:
                first = open_[ev.process][0]
                raise HistoryError(line, f"process {ev.process} invoked again while its {first.f} from "
                                         f"{unit} {first.line} has not completed", unit)
            if ev.f == "cas" or ev.f == "append":
                _check_invoke_value(ev, unit)
            open_[ev.process] = (ev, len(ops))
            ops.append(ev)
            continue
        waiting = open_.pop(ev.process, None)
        if waiting is None:
            raise HistoryError(line, f"{ev.kind} of process {ev.process} without a preceding invoke", unit)
        inv, slot = waiting
        if inv.f != ev.f or inv.key != ev.key:
            raise HistoryError(line, f"completion ({ev.f} {ev.key!r}) does not match the invoke "
                                     f"({inv.f} {inv.key!r}) on {unit} {inv.line}", unit)
        call_time: float
        return_time: float
        if timed:
            call_time, return_time = inv.time, ev.time  # type: ignore[assignment]  # timed: both set
            if return_time < call_time:
                raise HistoryError(line, f"completes at {ev.time}, before its invoke at {inv.time}", unit)
        else:
            call_time, return_time = inv.pos, ev.pos
        if ev.kind == "ok":
            ops[slot] = new(Op, (inv.pos, inv.line, ev.pos, inv.process, inv.f, inv.key,
                                 ev.value if inv.f == "read" else inv.value, ok_status, call_time,
                                 return_time, ev.error))
        else:
            ops[slot] = _make_op(inv, ev, bool(timed))
    return [op if type(op) is Op else _make_op(op, None, bool(timed)) for op in ops]


def _make_op(inv: _Event, done: _Event | None, timed: bool) -> Op:
    """Build one operation; without timestamps the event positions order everything."""
    call_time: float = inv.time if timed and inv.time is not None else inv.pos
    if done is None:
        return Op(inv.pos, inv.line, None, inv.process, inv.f, inv.key, inv.value, OpStatus.INFO,
                  call_time, None)
    return_time: float | None = done.time if timed and done.time is not None else done.pos
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


@contextmanager
def gc_paused() -> Iterator[None]:
    """No cyclic garbage collection inside: reading builds millions of small objects and no
    cycles, and the collector would rescan them all again and again (a third of the time)."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


def read_history(path: Path | str) -> tuple[list[dict[str, Any]], list[Op]]:
    """Load a JSONL history file: the raw events and the parsed operations.

    A torn (unparseable) last line is dropped, as a crashed run leaves one; any other line that is
    not JSON raises HistoryError naming it.
    """
    with gc_paused():
        events, numbers = read_json_lines(path, lambda n, line: HistoryError(n, f"not JSON: {line[:80]!r}"))
        return events, parse_history(events, numbers)
