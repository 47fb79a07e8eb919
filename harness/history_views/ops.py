"""Client operations: each invoke paired with its completion (rules: ``harness.history_views``)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from harness.history import Event
from harness.history_views.wellformed import CLIENT, number

WRITE_FNS = frozenset({"write", "cas", "append"})
OUTCOMES = ("ok", "fail", "info", "open")
OPEN = "open"


@dataclass(frozen=True, slots=True)
class Op:
    """One client operation. ``index`` is the invoke's 0-based position in the history (the index the
    linearizability checker's anomalies name). ``kind`` is ``ok``/``fail``/``info``, or None when the
    op never completed (``outcome`` ``open``). ``value`` is the completion's value (a read's result),
    ``invoke_value`` what was asked (write: the value; cas: [from, to]; append: the token).
    ``observed`` is what a cas whose compare failed found. ``final`` marks the harness's own reads
    after the final heal."""

    index: int
    process: int
    f: str
    key: str
    invoke_value: Any
    invoke_t: float
    node: str | None
    kind: str | None = None
    value: Any = None
    complete_t: float | None = None
    error: Any = None
    final: bool = False
    latency_s: float | None = None
    observed: Any = None

    @property
    def ok(self) -> bool:
        return self.kind == "ok"

    @property
    def indeterminate(self) -> bool:
        """``info`` or never completed: it may have taken effect at any time after its invoke."""
        return self.kind in ("info", None)

    @property
    def is_write(self) -> bool:
        return self.f in WRITE_FNS

    @property
    def outcome(self) -> str:
        return self.kind if self.kind is not None else OPEN

    @property
    def shown_value(self) -> Any:
        """What a table shows: a read's result, any other op's argument."""
        return self.value if self.f == "read" else self.invoke_value

    @property
    def remark(self) -> str:
        """The error, or for a failed compare the value it found."""
        if self.error:
            return str(self.error)
        if self.f == "cas" and self.kind == "fail":
            return f"compare failed: found {self.observed!r}"
        return ""


def _op(index: int, inv: Event, comp: Event | None) -> Op:
    t0 = float(inv["t"])
    if comp is None:
        return Op(index, inv["process"], str(inv.get("f")), str(inv.get("key")), inv.get("value"), t0,
                  inv.get("node"), final=bool(inv.get("final")))
    t1 = float(comp["t"])
    recorded = number(comp.get("latency_s"))
    latency = recorded if recorded is not None and recorded >= 0 else max(0.0, t1 - t0)
    return Op(index, inv["process"], str(inv.get("f")), str(inv.get("key")), inv.get("value"), t0,
              inv.get("node"), str(comp["kind"]), comp.get("value"), t1, comp.get("error"),
              bool(inv.get("final")), latency, comp.get("observed"))


def client_ops(events: Sequence[Event]) -> list[Op]:
    """Every client op of the history in invoke order (see the module docstring for the rules)."""
    open_ops: dict[tuple[int, bool], tuple[int, Event]] = {}
    ops: list[Op] = []
    for i, e in enumerate(events):
        kind, process = e.get("kind"), e.get("process")
        if kind not in CLIENT or type(process) is not int or number(e.get("t")) is None:
            continue
        pkey = (process, bool(e.get("final")))
        if kind == "invoke":
            previous = open_ops.pop(pkey, None)
            if previous is not None:  # invoked again: the first never completed
                ops.append(_op(previous[0], previous[1], None))
            open_ops[pkey] = (i, e)
            continue
        start = open_ops.pop(pkey, None)
        if start is not None:  # a completion without an invoke is the strict reader's to reject
            ops.append(_op(start[0], start[1], e))
    ops.extend(_op(i, inv, None) for i, inv in open_ops.values())
    ops.sort(key=lambda op: op.index)
    return ops
