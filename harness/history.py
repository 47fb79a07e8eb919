"""The run's one append-only history (events.jsonl): event schema, thread-safe writer, reader.

Every line is one JSON object. Common fields:

- ``t``: float seconds since the run started (one monotonic clock for the whole run).
- ``kind``: one of ``invoke``, ``ok``, ``fail``, ``info`` (client operations), ``fault``, ``heal``
  (nemesis), ``node`` (process lifecycle and flag changes), ``sample`` (observer), ``trace``
  (an event the node recorded itself, fetched by the observer), ``note``.
- ``process``: an int for a client (a client that saw an indeterminate result continues under a
  new int), ``"nemesis"`` for faults, ``"observer"`` for samples, ``"harness"`` for node events
  and notes.
- ``node``: the node id the event concerns or the client talked to (may be null).

Kind-specific fields:

- client operations (``invoke`` then exactly one of ``ok``/``fail``/``info`` with the same
  ``process``): ``f`` (``read``, ``write``, ``cas``, ``append``), ``key``, ``value`` (write: the
  value written; read: null on invoke, the value read on ok; cas: ``[from, to]``; append: the
  token appended), and on completions ``latency_s`` and ``error`` (null on ok). ``ok`` = took
  effect, ``fail`` = definitely did not, ``info`` = indeterminate (timeout, reset, 503). A ``fail``
  with an ``error`` (``not_leader``, ``bad_request``) was refused and had no effect; a cas ``fail``
  with ``error`` null executed and found a value other than ``from`` (given as ``observed``): the
  linearizability checker keeps it as that constraint.
- ``fault``/``heal``: ``fault`` (name), ``params`` (object), ``targets`` (resolved node ids or
  link names), ``term`` (the leader's term at injection, null if unknown). A ``heal`` may also
  carry ``vacuous`` (true: the fault was in place but did not bite, e.g. no traffic crossed the
  cut; null: could not tell) and ``evidence`` (one line saying what was measured).
- ``node``: ``event`` (``start``, ``exit``, ``restart``, ``pause``, ``resume``, ``kill``,
  ``terminate``, ``flag``), ``code`` (exit code for ``exit``/``kill``/``terminate``), for
  ``exit``: ``cause`` (``harness.supervisor.ExitCause``) and, for statuses 70/74, ``fatal`` (the
  node's fatal record or null), and for ``flag``: ``flag`` and ``value``.
- ``sample``: ``status`` (the node's ``/status`` document without ``flags``; null when the node
  did not answer) and ``error`` (why, when it did not).
- ``trace``: one event of the node's own trace (``GET /events``, docs/node-api.md), recorded by
  the observer in the node's sequence order. ``t`` is when the harness recorded it (history
  clock); ``node_t`` is when the node recorded it, in seconds of *that node's* monotonic clock,
  which has nothing to do with the history's: subtract only two ``node_t`` of the same ``node``
  and ``boot`` (a restarted process starts a new ``boot`` and a new ``seq``). Fields: ``seq``,
  ``boot``, ``event`` (``request``, ``reply``, ``request_error``, ``became_leader``,
  ``stepped_down``, ``pre_election_started``, ``election_started``, ``pre_election_decided``,
  ``election_decided``), ``term``, and per event: requests ``peer``, ``req`` (per-Peer request
  number), ``request_kind``, ``ops``, ``trigger`` (``signal``/``heartbeat``/``send_more``),
  ``first``, ``hop``, ``proxied``; replies ``peer``, ``req``, ``outcome`` (``ok``,
  ``preceding_entry_didnt_match``, ``invalid_term``, ``cannot_prepare``, ``server_error``,
  ``remote_error``, ``rpc_error``, ``timeout``, ``malformed``), optionally ``ignored`` (late reply
  to a closed Peer), ``error``, ``responder_term``; elections ``ask_term``, ``backoff_s``,
  ``forced``, and when decided ``won``, ``stale``, ``yes``, ``no``. A ``note`` with ``gap: true``
  and ``node`` says the observer fell behind the node's ring and some trace events were lost.
- ``note``: ``text`` and any extra fields.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from enum import StrEnum
from pathlib import Path
from typing import Any, TextIO

from harness.errors import HarnessError

_fast_loads: Callable[[bytes], Any] | None
try:  # a compiled parser, several times faster on long histories; the stdlib one otherwise
    from orjson import loads as _fast_loads
except ImportError:  # pragma: no cover - orjson is a declared dependency
    _fast_loads = None

Event = dict[str, Any]


class EventKind(StrEnum):
    INVOKE = "invoke"
    OK = "ok"
    FAIL = "fail"
    INFO = "info"
    FAULT = "fault"
    HEAL = "heal"
    NODE = "node"
    SAMPLE = "sample"
    TRACE = "trace"
    NOTE = "note"


COMPLETIONS = frozenset({EventKind.OK, EventKind.FAIL, EventKind.INFO})


class OpFn(StrEnum):
    READ = "read"
    WRITE = "write"
    CAS = "cas"
    APPEND = "append"


class NodeEventType(StrEnum):
    START = "start"
    EXIT = "exit"
    RESTART = "restart"
    PAUSE = "pause"
    RESUME = "resume"
    KILL = "kill"
    TERMINATE = "terminate"
    FLAG = "flag"


NEMESIS = "nemesis"
OBSERVER = "observer"
HARNESS = "harness"


class History:
    """Append-only writer of one run's events; safe to call from several threads.

    Each event is written as one line and flushed at once, so a crashed run leaves every event
    but possibly a torn last line (which ``load_history`` drops). ``clock`` is monotonic seconds;
    ``t`` is measured from the moment the history is created.
    """

    def __init__(self, path: Path, clock: Callable[[], float] = time.monotonic) -> None:
        self.path = Path(path)
        self._clock = clock
        self._t0 = clock()
        self._lock = threading.Lock()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file: TextIO | None = self.path.open("a", encoding="utf-8")

    def now(self) -> float:
        """Seconds since the run started, on the history's clock."""
        return self._clock() - self._t0

    def append(self, kind: EventKind | str, **fields: Any) -> Event:
        """Write one event (``t`` and ``kind`` are filled in) and return it."""
        kind = EventKind(kind)
        with self._lock:
            if self._file is None:
                raise HarnessError(f"history {self.path} is closed")
            event: Event = {"t": round(self.now(), 6), "kind": kind.value}
            event.update(fields)
            self._file.write(json.dumps(event, default=_jsonable, separators=(",", ":")) + "\n")
            self._file.flush()
        return event

    # ---- typed constructors -----------------------------------------------------------------

    def invoke(self, process: int, f: OpFn, key: str, value: Any, node: str | None) -> Event:
        return self.append(EventKind.INVOKE, process=process, f=OpFn(f).value, key=key, value=value,
                           node=node)

    def complete(self, kind: EventKind, process: int, f: OpFn, key: str, value: Any,
                 node: str | None, latency_s: float, error: str | None = None, **extra: Any) -> Event:
        """A client op's completion; ``extra`` adds fields (e.g. a failed cas's ``observed``)."""
        kind = EventKind(kind)
        if kind not in COMPLETIONS:
            raise HarnessError(f"{kind} is not a completion kind")
        return self.append(kind, process=process, f=OpFn(f).value, key=key, value=value, node=node,
                           latency_s=round(latency_s, 6), error=error, **extra)

    def fault(self, fault: str, params: Mapping[str, Any], targets: Sequence[str],
              term: int | None) -> Event:
        return self.append(EventKind.FAULT, process=NEMESIS, node=None, fault=fault,
                           params=dict(params), targets=list(targets), term=term)

    def heal(self, fault: str, params: Mapping[str, Any], targets: Sequence[str],
             term: int | None = None, **extra: Any) -> Event:
        return self.append(EventKind.HEAL, process=NEMESIS, node=None, fault=fault,
                           params=dict(params), targets=list(targets), term=term, **extra)

    def node_event(self, node: str, event: NodeEventType, code: int | None = None,
                   **extra: Any) -> Event:
        return self.append(EventKind.NODE, process=HARNESS, node=node,
                           event=NodeEventType(event).value, code=code, **extra)

    def sample(self, node: str, status: Mapping[str, Any] | None, error: str | None = None) -> Event:
        return self.append(EventKind.SAMPLE, process=OBSERVER, node=node,
                           status=dict(status) if status is not None else None, error=error)

    def trace(self, node: str, boot: str, event: Mapping[str, Any]) -> Event:
        """One event of ``node``'s own trace; its ``t`` becomes ``node_t`` (the node's clock)."""
        fields = {k: v for k, v in event.items() if k not in ("t", "kind", "node", "process")}
        return self.append(EventKind.TRACE, process=OBSERVER, node=node, boot=boot,
                           node_t=event.get("t"), **fields)

    def note(self, text: str, **extra: Any) -> Event:
        return self.append(EventKind.NOTE, process=HARNESS, node=extra.pop("node", None), text=text,
                           **extra)

    def events(self) -> list[Event]:
        """Everything written so far (re-read from the file)."""
        with self._lock:
            if self._file is not None:
                self._file.flush()
        return load_history(self.path)

    def close(self) -> None:
        with self._lock:
            if self._file is not None:
                self._file.close()
                self._file = None

    def __enter__(self) -> History:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _jsonable(value: Any) -> Any:
    if isinstance(value, set | frozenset | tuple):
        return list(value)
    return str(value)


def iter_json_lines(path: Path | str, bad_line: Callable[[int, str], Exception]) -> Iterator[tuple[int, Any]]:
    """Each non-blank line of a JSONL file, parsed, with its 1-based number, in order.

    A torn (unparseable) last line is dropped, as a crashed run leaves one; any other line that is
    not JSON raises ``bad_line(number, line)`` when the iteration reaches it. Invalid UTF-8 is
    replaced, as before, so it reaches the line's own JSON check.
    """
    data = Path(path).read_bytes()
    if _fast_loads is not None:
        yield from _iter_fast(data, bad_line)
        return
    lines = data.decode("utf-8", errors="replace").split("\n")
    last = max((i for i, line in enumerate(lines) if line.strip()), default=-1)
    for i, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except json.JSONDecodeError:
            if i == last:
                return  # torn write of a crashed run
            raise bad_line(i + 1, line) from None
        yield i + 1, value


def _iter_fast(data: bytes, bad_line: Callable[[int, str], Exception]) -> Iterator[tuple[int, Any]]:
    """``iter_json_lines`` with orjson: bytes lines parsed without decoding the whole file first.
    orjson rejects what the stdlib rejects here (and also NaN/Infinity, which our writer never
    emits); a line it cannot read is retried with the stdlib so the answer never differs."""
    lines = data.split(b"\n")
    last = max((i for i, line in enumerate(lines) if line.strip()), default=-1)
    loads = _fast_loads
    assert loads is not None
    for i, raw in enumerate(lines):
        try:
            value = loads(raw)
        except ValueError:  # orjson.JSONDecodeError is one
            if not raw.strip():
                continue
            line = raw.decode("utf-8", errors="replace")
            try:
                value = json.loads(line)
            except json.JSONDecodeError:
                if i == last:
                    return  # torn write of a crashed run
                raise bad_line(i + 1, line) from None
        yield i + 1, value


def read_json_lines(path: Path | str, bad_line: Callable[[int, str], Exception]) -> tuple[list[Any], list[int]]:
    """``iter_json_lines`` as two lists, the values and their 1-based line numbers: for long
    histories, where a generator's step per line costs as much as parsing the line."""
    data = Path(path).read_bytes()
    loads = _fast_loads
    if loads is None:
        pairs = list(iter_json_lines(path, bad_line))
        return [v for _, v in pairs], [n for n, _ in pairs]
    lines = data.split(b"\n")
    if lines and not lines[-1]:
        lines.pop()  # the newline ending the last line
    values: list[Any] = []
    try:
        values = [loads(raw) for raw in lines]  # the common case: no blank, torn or bad line
    except ValueError:
        values = []
    else:
        return values, list(range(1, len(lines) + 1))
    del lines
    numbers: list[int] = []
    for number, value in _iter_fast(data, bad_line):
        values.append(value)
        numbers.append(number)
    return values, numbers


def load_history(path: Path | str) -> list[Event]:
    """Read a history back. A torn (unparseable) last line is dropped; a bad line elsewhere raises."""
    events: list[Event] = []
    for number, event in iter_json_lines(
            path, lambda n, line: HarnessError(f"{path}:{n}: not a JSON event: {line[:80]!r}")):
        if not isinstance(event, dict):
            raise HarnessError(f"{path}:{number}: not a JSON object")
        events.append(event)
    return events
