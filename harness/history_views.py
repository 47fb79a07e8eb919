"""The one read model of a saved history: typed views that checkers and reports both read.

``events.jsonl`` (``harness.history``) is written once and read by two audiences: the checkers
(``harness.checkers``), which judge a run, and the reports (``reports``), which show it. Each view
is defined here once, so a checker's verdict and the report beside it count the same ops, the same
fault windows and the same leader changes. The rules where readers used to differ:

* A client op is an ``invoke`` paired with the next completion of the same ``(process, final)``;
  one with no completion (the history ended first) is ``open``: as indeterminate as ``info``, no
  completion time, no latency. A process that invokes again before completing breaks the schema
  (``malformed``): its first op is still shown, as open, never dropped.
* An op's latency is the ``latency_s`` its client recorded on the completion (measured around the
  request itself), else completion ``t`` minus invoke ``t``.
* A ``heal`` closes the earliest open fault with the same name and the same targets (a heal
  event repeats its fault's record: ``harness.fault.record_heal``); it never closes a fault of
  other targets. A fault never healed has ``t_heal`` None and lasts until the history's last
  event; the checkers that need a heal say unknown for it.
* A leadership is a term in which the observer saw some node report ``LEADER`` (at most one
  leader per term, Raft's Election Safety, so a term names a leadership); leader changes are the
  leaderships after the first. A deposed leader still claiming its old term adds nothing; a
  leader of a term sampled only after a later term's still counts. The agreed-leader timeline (``leader_timeline``) answers a different question, who a
  majority followed at a time, and is used for that only.
* A malformed event (``malformed``: no finite number ``t``, a client event whose ``process`` is
  not an int, a sample or node event without its node) is left out of every view, and never
  silently: a checker first calls ``require_well_formed`` for the kinds it reads, which raises
  (``guarded`` turns that into unknown naming the event), and a report lists ``malformed`` among
  its problems and shows the rest.

The linearizability checker's own fast reader (``op_reader``/``history_ops``) stays apart: it is
the 100k-op performance path and reads the file, not these objects; ``Op.index`` here is the same
0-based event position its anomalies name.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from harness.errors import HarnessError
from harness.history import Event, EventKind
from harness.timing import TimingProfile
from harness.waits import agreed_leader

WRITE_FNS = frozenset({"write", "cas", "append"})
OUTCOMES = ("ok", "fail", "info", "open")
OPEN = "open"
DOWN = "DOWN"
_NON_CLIENT_PROCESSES = frozenset({"nemesis", "observer", "harness"})  # Jepsen logs nemesis ops as info
# Event kinds by what they tell (``require_well_formed``'s argument).
CLIENT = frozenset({"invoke", "ok", "fail", "info"})
FAULTS = frozenset({EventKind.FAULT.value, EventKind.HEAL.value})
SAMPLES = frozenset({EventKind.SAMPLE.value})
NODES = frozenset({EventKind.NODE.value})


def number(value: Any) -> float | None:
    """``value`` as a float when it is a finite int or float (not a bool), else None."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return None
    return float(value)


def history_end(events: Iterable[Event]) -> float:
    """The history's last ``t`` (0.0 when empty): where an unhealed fault and the plots end."""
    return max((t for t in (number(e.get("t")) for e in events) if t is not None), default=0.0)


class MalformedHistory(HarnessError):
    """An event a view needs cannot be read: nothing can be concluded from the history."""


def _problem(e: Event) -> str | None:
    kind = e.get("kind")
    if number(e.get("t")) is None:
        return f"{kind} event without a finite number t ({e.get('t')!r})"
    if kind in CLIENT and type(e.get("process")) is not int and e.get("process") not in _NON_CLIENT_PROCESSES:
        return f"{kind} event whose process is not an int ({e.get('process')!r})"
    if kind in ("sample", "node") and not isinstance(e.get("node"), str):
        return f"{kind} event without a node"
    return None


def malformed(events: Sequence[Event], kinds: Iterable[str] | None = None) -> list[str]:
    """``event N: problem`` (N: 0-based position) for each event of ``kinds`` (None: the kinds these
    views read) that the views leave out or cannot pair: also, for client events, a process that
    invokes again before its op completed (the first op stays open) and a completion without an
    invoke, as the linearizability checker's strict reader (``history_ops.parse_history``) has it."""
    wanted = frozenset(kinds) if kinds is not None else CLIENT | FAULTS | SAMPLES | NODES
    out = []
    pending: dict[tuple[int, bool], int] = {}
    for i, e in enumerate(events):
        kind = e.get("kind")
        if kind not in wanted:
            continue
        problem = _problem(e)
        if problem is None and kind in CLIENT and type(e.get("process")) is int:
            pkey = (e["process"], bool(e.get("final")))
            if kind == "invoke":
                if pkey in pending:
                    problem = f"process {pkey[0]} invoked again before its op (event {pending[pkey]}) completed"
                pending[pkey] = i
            elif pending.pop(pkey, None) is None:
                problem = f"{kind} of process {pkey[0]} without an invoke"
        if problem is not None:
            out.append(f"event {i}: {problem}")
    return out


def require_well_formed(events: Sequence[Event], kinds: Iterable[str]) -> None:
    """MalformedHistory naming the first (and counting the) malformed events of ``kinds``: a
    checker calls this first, so a verdict never rests on a history it read only in part."""
    problems = malformed(events, kinds)
    if problems:
        more = f" (+{len(problems) - 1} more)" if len(problems) > 1 else ""
        raise MalformedHistory(f"malformed history: {problems[0]}{more}")


# ---- client operations ---------------------------------------------------------------------------


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


# ---- faults --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FaultWindow:
    """One injected fault (the ``index``-th ``fault`` event) and its heal. ``vacuous`` is the heal's
    finding: True = in place but did not bite, None = not told (or not healed)."""

    index: int
    fault: str
    t_fault: float
    t_heal: float | None
    targets: tuple[str, ...]
    term: int | None
    params: Mapping[str, Any] = field(default_factory=dict)
    vacuous: bool | None = None
    evidence: str | None = None

    @property
    def healed(self) -> bool:
        return self.t_heal is not None

    @property
    def injected(self) -> bool:
        """The fault really hit something (no error while injecting, at least one target)."""
        return bool(self.targets) and "error" not in self.params

    def end(self, last_t: float) -> float:
        """When the fault stopped: its heal, else the history's last event (``history_end``)."""
        return self.t_heal if self.t_heal is not None else max(last_t, self.t_fault)

    def label(self) -> str:
        return f"{self.fault}({', '.join(self.targets)})"


def fault_windows(events: Sequence[Event]) -> list[FaultWindow]:
    """Every ``fault`` event in order, each closed by the first later ``heal`` of the same fault and
    targets (module docstring)."""
    opened: list[dict[str, Any]] = []
    for e in events:
        kind, t = e.get("kind"), number(e.get("t"))
        if kind not in (EventKind.FAULT.value, EventKind.HEAL.value) or t is None:
            continue
        name, targets = str(e.get("fault")), tuple(str(x) for x in e.get("targets") or ())
        if kind == EventKind.FAULT.value:
            term = e.get("term")
            params = e.get("params")
            opened.append({"index": len(opened), "fault": name, "t_fault": t, "t_heal": None,
                           "targets": targets, "term": term if type(term) is int else None,
                           "params": dict(params) if isinstance(params, Mapping) else {}})
            continue
        match = next((w for w in opened if w["t_heal"] is None and w["fault"] == name
                      and w["targets"] == targets), None)
        if match is not None:
            vacuous, evidence = e.get("vacuous"), e.get("evidence")
            match.update(t_heal=t, vacuous=vacuous if isinstance(vacuous, bool) else None,
                         evidence=str(evidence) if evidence is not None else None)
    return [FaultWindow(**w) for w in opened]


# ---- node samples, leadership --------------------------------------------------------------------


@dataclass(frozen=True)
class NodeSample:
    """One observer sample of one node; ``role`` is ``DOWN`` when the node did not answer."""

    t: float
    node: str
    role: str
    term: int | None
    commit_index: int | None
    leader: str | None
    status: Mapping[str, Any] | None
    error: str | None = None


def node_samples(events: Sequence[Event]) -> dict[str, list[NodeSample]]:
    """Each node's samples in time order."""
    out: dict[str, list[NodeSample]] = {}
    for e in events:
        t, node = number(e.get("t")), e.get("node")
        if e.get("kind") != EventKind.SAMPLE.value or t is None or not isinstance(node, str):
            continue
        st = e.get("status") if isinstance(e.get("status"), dict) else None
        if st is None:
            sample = NodeSample(t, node, DOWN, None, None, None, None, str(e.get("error") or ""))
        else:
            term, commit = st.get("term"), st.get("commit_index")
            sample = NodeSample(t, node, str(st.get("role", "?")), term if type(term) is int else None,
                                commit if type(commit) is int else None, st.get("leader"), st)
        out.setdefault(node, []).append(sample)
    for series in out.values():
        series.sort(key=lambda s: s.t)
    return out


@dataclass(frozen=True)
class Leadership:
    """The leader of one term, as the observer first saw it (at ``t``)."""

    t: float
    leader: str
    term: int


def leaderships(samples: Mapping[str, Sequence[NodeSample]]) -> list[Leadership]:
    """One per term in which some node reported itself ``LEADER``, in term order (module docstring).
    A leader sampled late (after a later term's) still counts; a deposed leader still claiming its
    term adds nothing."""
    first: dict[int, Leadership] = {}
    for series in samples.values():
        for s in series:
            if s.role == "LEADER" and s.term is not None:
                seen = first.get(s.term)
                if seen is None or (s.t, s.node) < (seen.t, seen.leader):
                    first[s.term] = Leadership(s.t, s.node, s.term)
    return [first[term] for term in sorted(first)]


def leader_changes(leaders: Sequence[Leadership], start: float | None = None, end: float | None = None) -> int:
    """Leader changes: leaderships after the first (by term), or with ``start``/``end`` those of them
    first seen in (start, end]."""
    if start is None and end is None:
        return max(0, len(leaders) - 1)
    low = -math.inf if start is None else start
    high = math.inf if end is None else end
    return sum(1 for x in leaders[1:] if low < x.t <= high)


def leaders_during(leaders: Sequence[Leadership], start: float, end: float) -> list[Leadership]:
    """The leadership in force at ``start`` (the latest term first seen by then) and every one first
    seen in (start, end]."""
    before = [x for x in leaders if x.t <= start]
    current = [max(before, key=lambda x: x.term)] if before else []
    return current + [x for x in leaders if start < x.t <= end]


@dataclass(frozen=True)
class LeaderChange:
    """From ``t`` on, a majority agreed on ``leader`` in ``term`` (None: no agreed leader)."""

    t: float
    leader: str | None
    term: int | None


def leader_timeline(events: Sequence[Event], nodes: Sequence[str] | None = None) -> list[LeaderChange]:
    """The agreed leader over time (``harness.waits.agreed_leader`` over the latest sample of each
    node): who a majority followed, not how often leadership changed (``leaderships``)."""
    latest: dict[str, Mapping[str, Any] | None] = {n: None for n in (nodes or ())}
    timeline: list[LeaderChange] = []
    for e in events:
        t = number(e.get("t"))
        if e.get("kind") != EventKind.SAMPLE.value or not isinstance(e.get("node"), str) or t is None:
            continue
        status = e.get("status")
        latest[e["node"]] = status if isinstance(status, dict) else None
        leader = agreed_leader(latest, len(nodes) if nodes else len(latest))
        own = latest.get(leader) if leader else None
        term = own.get("term") if own else None
        term = term if type(term) is int else None
        if not timeline or (timeline[-1].leader, timeline[-1].term) != (leader, term):
            timeline.append(LeaderChange(t, leader, term))
    return timeline


def leader_at(timeline: Sequence[LeaderChange], t: float) -> LeaderChange | None:
    """The timeline entry in force at ``t`` (None before the first sample)."""
    current = None
    for change in timeline:
        if change.t > t:
            break
        current = change
    return current


def agreed_after(timeline: Sequence[LeaderChange], t: float) -> float | None:
    """Seconds from ``t`` until a majority agreed on a leader: 0 when one was agreed at ``t``, None
    when none was agreed afterwards within the history."""
    current = leader_at(timeline, t)
    if current is not None and current.leader is not None:
        return 0.0
    return next((c.t - t for c in timeline if c.t > t and c.leader is not None), None)


# ---- node process events -------------------------------------------------------------------------


@dataclass(frozen=True)
class NodeEvent:
    """One ``node`` event: a process start, exit, kill, pause, flag change... (``harness.history``).
    ``code`` is the exit status (None when not an int); ``fatal`` the node's fatal record."""

    t: float
    node: str
    event: str
    code: int | None = None
    cause: str | None = None
    fatal: Mapping[str, Any] | None = None


def node_events(events: Sequence[Event]) -> list[NodeEvent]:
    out = []
    for e in events:
        t, node = number(e.get("t")), e.get("node")
        if e.get("kind") != EventKind.NODE.value or t is None or not isinstance(node, str):
            continue
        code, cause, fatal = e.get("code"), e.get("cause"), e.get("fatal")
        out.append(NodeEvent(t, node, str(e.get("event")), code if type(code) is int else None,
                             str(cause) if cause is not None else None,
                             fatal if isinstance(fatal, Mapping) else None))
    return out


# ---- the run's own description -------------------------------------------------------------------


def run_spec(events: Iterable[Event]) -> Mapping[str, Any] | None:
    """The cluster spec the run recorded in its ``cluster starting`` note (None if absent)."""
    for event in events:
        if event.get("kind") == EventKind.NOTE.value and isinstance(event.get("spec"), Mapping):
            return event["spec"]
    return None


def run_nodes(events: Iterable[Event]) -> tuple[str, ...] | None:
    """``n1..nN`` from the recorded spec's ``node_count`` (None when the history has no spec)."""
    spec = run_spec(events)
    count = spec.get("node_count") if spec is not None else None
    if type(count) is not int:
        return None
    return tuple(f"n{i}" for i in range(1, count + 1))


def run_timing(events: Iterable[Event]) -> TimingProfile | None:
    """The run's timing profile (every checker bound derives from it), if the history has it."""
    spec = run_spec(events)
    timing = spec.get("timing") if spec else None
    return TimingProfile(**timing) if isinstance(timing, Mapping) else None
