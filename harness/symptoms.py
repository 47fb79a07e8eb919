"""Symptom predicates over a saved history: did a run show the behaviour an incident describes?

Each predicate is a pure function of the history (and its recorded timing profile) returning a
``SymptomResult``. Scenario files name them under ``[[expect]]``:

- ``leader_exits``: ``code`` (default 85), ``at_least`` (default 1): nodes exited with ``code``
  at least that often (an injected crash fraction fired, B21/B22).
- ``peer_pending``: ``peer`` (a node id or ``any``), ``min_s`` (seconds, or a timing bound name:
  ``rpc_timeout``, ``heartbeat``, ``failure_timeout``) times ``factor`` (default 0.9, the
  sampling resolution): some leader saw a request to that peer pending that long without a
  break (B20).
- ``failed_attempts``: ``peer``, ``at_least``: a leader counted that many failed attempts.
- ``leader_changes``: ``at_least``: leadership changed that often (a new term with a leader,
  ``harness.history_views.leaderships``).
- ``no_leader``: ``min_s`` (as above), ``factor`` (default 1.0): no agreed leader for that long.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from harness.errors import ConfigError
from harness.history import Event, EventKind, NodeEventType
from harness.history_views import (
    leader_changes,
    leader_timeline,
    leaderships,
    node_samples,
    run_nodes,
    run_timing,
)
from harness.timing import TimingProfile

BOUNDS: Mapping[str, Callable[[TimingProfile], float]] = {
    "rpc_timeout": lambda t: t.rpc_timeout_s,
    "heartbeat": lambda t: t.heartbeat_s,
    "failure_timeout": lambda t: t.failure_timeout_s,
}


@dataclass(frozen=True)
class SymptomResult:
    symptom: str
    held: bool
    detail: str

    def to_dict(self) -> dict[str, Any]:
        return {"symptom": self.symptom, "held": self.held, "detail": self.detail}


def _seconds(value: Any, timing: TimingProfile, what: str) -> float:
    if isinstance(value, str):
        if value not in BOUNDS:
            raise ConfigError(f"{what}: unknown bound {value!r} (known: {', '.join(BOUNDS)}, or seconds)")
        return BOUNDS[value](timing)
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise ConfigError(f"{what}: expected seconds or a bound name, got {value!r}")
    return float(value)


def _int(params: Mapping[str, Any], key: str, default: int) -> int:
    value = params.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ConfigError(f"{key} must be a non-negative int, got {value!r}")
    return value


def leader_exits(events: Sequence[Event], params: Mapping[str, Any]) -> SymptomResult:
    code, at_least = _int(params, "code", 85), _int(params, "at_least", 1)
    exits = [e.get("node") for e in events if e.get("kind") == EventKind.NODE.value
             and e.get("event") == NodeEventType.EXIT.value and e.get("code") == code]
    return SymptomResult("leader_exits", len(exits) >= at_least,
                         f"{len(exits)} exit(s) with code {code} (need {at_least}): {', '.join(map(str, exits))}")


def _peer_views(events: Sequence[Event], peer: str) -> dict[tuple[str, int, str], list[tuple[float, Mapping[str, Any]]]]:
    """(leader, term, peer) -> [(t, peer view)] from every sample of a leader."""
    out: dict[tuple[str, int, str], list[tuple[float, Mapping[str, Any]]]] = {}
    for e in events:
        st = e.get("status") if e.get("kind") == EventKind.SAMPLE.value else None
        if not st or st.get("role") != "LEADER":
            continue
        for uuid, view in (st.get("peers") or {}).items():
            if peer in ("any", uuid):
                out.setdefault((str(e.get("node")), int(st.get("term", 0)), uuid), []).append((float(e["t"]), view))
    return out


def peer_pending(events: Sequence[Event], params: Mapping[str, Any]) -> SymptomResult:
    timing = run_timing(events) or TimingProfile()
    peer = str(params.get("peer", "any"))
    need = _seconds(params.get("min_s", "rpc_timeout"), timing, "min_s") * float(params.get("factor", 0.9))
    best, where = 0.0, "-"
    for (leader, term, uuid), views in _peer_views(events, peer).items():
        start = None
        for t, view in views:
            if view.get("request_pending"):
                start = t if start is None else start
                if t - start > best:
                    best, where = t - start, f"{leader}->{uuid} in term {term}"
            else:
                start = None
    return SymptomResult("peer_pending", best >= need,
                         f"longest pending request {best:.2f} s ({where}); need {need:.2f} s")


def failed_attempts(events: Sequence[Event], params: Mapping[str, Any]) -> SymptomResult:
    peer, at_least = str(params.get("peer", "any")), _int(params, "at_least", 1)
    most = max((int(v.get("failed_attempts", 0)) for views in _peer_views(events, peer).values()
                for _, v in views), default=0)
    return SymptomResult("failed_attempts", most >= at_least,
                         f"most failed attempts seen for {peer}: {most} (need {at_least})")


def leader_changes_at_least(events: Sequence[Event], params: Mapping[str, Any]) -> SymptomResult:
    at_least = _int(params, "at_least", 1)
    changes = leader_changes(leaderships(node_samples(events)))
    return SymptomResult("leader_changes", changes >= at_least, f"{changes} leader change(s) (need {at_least})")


def no_leader(events: Sequence[Event], params: Mapping[str, Any]) -> SymptomResult:
    timing = run_timing(events) or TimingProfile()
    need = _seconds(params.get("min_s", "failure_timeout"), timing, "min_s") * float(params.get("factor", 1.0))
    timeline = leader_timeline(events, run_nodes(events))
    best = 0.0
    for i, change in enumerate(timeline):
        if change.leader is None and i + 1 < len(timeline):
            best = max(best, timeline[i + 1].t - change.t)
    return SymptomResult("no_leader", best >= need, f"longest time without a leader {best:.2f} s (need {need:.2f} s)")


SYMPTOMS: Mapping[str, tuple[Callable[[Sequence[Event], Mapping[str, Any]], SymptomResult], frozenset[str]]] = {
    "leader_exits": (leader_exits, frozenset({"code", "at_least"})),
    "peer_pending": (peer_pending, frozenset({"peer", "min_s", "factor"})),
    "failed_attempts": (failed_attempts, frozenset({"peer", "at_least"})),
    "leader_changes": (leader_changes_at_least, frozenset({"at_least"})),
    "no_leader": (no_leader, frozenset({"min_s", "factor"})),
}


def check_symptom(name: str, params: Mapping[str, Any]) -> None:
    """ConfigError for an unknown symptom or parameter (scenario parsing calls this)."""
    if name not in SYMPTOMS:
        raise ConfigError(f"unknown symptom {name!r} (known: {', '.join(SYMPTOMS)})")
    unknown = sorted(set(params) - SYMPTOMS[name][1])
    if unknown:
        raise ConfigError(f"symptom {name}: unknown parameter(s) {', '.join(unknown)} "
                          f"(takes {', '.join(sorted(SYMPTOMS[name][1]))})")
    if "min_s" in params:
        _seconds(params["min_s"], TimingProfile(), f"symptom {name} min_s")
    for key in ("at_least", "code"):
        if key in params:
            _int(params, key, 0)
    if "factor" in params and (isinstance(params["factor"], bool) or not isinstance(params["factor"], int | float)):
        raise ConfigError(f"symptom {name}: factor must be a number, got {params['factor']!r}")


def evaluate(events: Sequence[Event], name: str, params: Mapping[str, Any]) -> SymptomResult:
    check_symptom(name, params)
    return SYMPTOMS[name][0](events, params)
