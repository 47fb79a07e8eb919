"""The run's machine-readable summary (``summary.json``, schema ``raftchaos.summary/1``) beside report.html.

Schema ``raftchaos.summary/1`` (one JSON object; times are seconds since the run started, on the
history's clock; a field that could not be measured is ``null``, never omitted):

- ``schema``: ``"raftchaos.summary/1"``. A reader must check it; new optional keys may be added under
  the same schema, a removed or re-typed key bumps the number.
- ``run_id`` (str), ``test_name`` (str), ``seed`` (int or null), ``duration_s`` (float: last event).
- ``spec``: ``spec.json`` as saved (object; empty when missing).
- ``versions``: {name: version} (``python``, ``raftchaos``, ``toxiproxy`` ...); ``versions_recorded``:
  true when the run recorded them, false when they are the renderer's own.
- ``overall``: ``valid`` | ``invalid`` | ``unknown`` (invalid beats unknown beats valid; no verdict
  at all is unknown).
- ``verdicts``: list of {``checker``, ``validity``, ``summary``} (details stay in verdicts.json).
- ``faults``: list of {``name``, ``targets`` [str], ``params`` {}, ``term`` (int|null), ``t_inject``,
  ``t_heal`` (null: not healed), ``duration_s`` (until heal or run end), ``vacuous`` (true: in place
  but did not bite; null: not verified) and ``evidence``}.
- ``ops``: {``total``, ``by_outcome`` {ok, fail, info, open}, ``by_type`` {f: {ok, fail, info, open}}}.
- ``latency_ms``: {``by_outcome`` {outcome: pct}, ``ok_by_type`` {f: pct}} where pct is
  {``p50``, ``p90``, ``p99``, ``max``} in milliseconds (nearest rank; {} when no ops).
- ``leader_changes``: {``count`` (leaderships after the first), ``leaderships``: list of {``t``,
  ``leader``, ``term``}, one per term in which a node reported itself leader, in term order, ``t``
  when the observer first saw it (``harness.history_views.leaderships``)}.
- ``recovery``: list (one per healed fault) of {``fault``, ``targets``, ``t_heal``, ``first_ok_s``,
  ``leader_s``, ``caught_up_s``} — seconds after the heal until the first ok client op completed,
  a majority agreed on a leader, every node committed what was committed at the heal.
- ``peer_request_windows``: list (one per fault x leader->peer link seen) of {``fault_index``,
  ``fault``, ``link`` ("n1->n2"), ``before``, ``during``, ``after``}, each window being {``start_s``,
  ``end_s``, ``counts`` {kind: n}, ``rates_per_s`` {kind: r}} for the kinds ``requests_with_ops``,
  ``status_only_requests``, ``heartbeat_sends``. Before = since the previous fault ended (or the run
  started), after = until the next fault (or the run end). Counts come from observer samples of the
  leader's per-peer counters, reset-corrected across leaderships (so resolution = sample interval).
  Links with no request in any of the three windows (that node was not leader then) are left out.
- ``peer_counter_resets``: {link: how many times that leader's counters restarted}.
- ``linearizability_windows``: list of {``key``, ``t_start``, ``t_end``, ``stuck_index``,
  ``op_indexes``} (invoke positions in events.jsonl) for each key the checker found invalid.
- ``fault_windows`` (added under ``/1``, so older summaries lack it): list (one per fault) as the
  ``windows`` verdict measured it, of {``index``, ``fault`` (label), ``name``, ``targets``,
  ``t_fault``, ``t_heal``, ``vacuous``, ``evidence``, ``windows`` {``before``, ``during``,
  ``after``}}, each window being {``start_t``, ``end_t``, ``seconds``, ``ops`` {ok, fail, info,
  compare_failed} (client ops invoked in [start, end), final reads left out, never-completed ops
  counted as info; compare_failed: the fails that were a cas which executed and found another
  value), ``success_rate`` ((ok + compare_failed) / (ok + fail + info), a failed compare being
  served; null: no op), ``latency_ms`` {``p50``, ``p90``,
  ``p99``} of the ok ops ({} when none), ``leader_changes`` (int), ``leaders`` [str], ``peers``
  {peer: {``requests_with_ops``, ``status_only_requests``, ``heartbeat_sends``}}}. Before and after
  are as long as the fault, at least 4 heartbeat periods, cut at neighbouring faults. Empty when
  no ``windows`` verdict was recorded (no fault, or a run judged before that checker existed).
- ``problems``: list of str (files present but unreadable).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from harness.history_views import OUTCOMES, leader_changes
from reports.derive import REQUEST_KINDS, Timeline, percentiles_ms, request_counts
from reports.run_data import RunData, overall_validity

SCHEMA = "raftchaos.summary/1"
# Top-level key -> JSON type(s) it must have; the contract ``validate_summary`` checks.
SUMMARY_KEYS: dict[str, tuple[type, ...]] = {
    "schema": (str,), "run_id": (str,), "test_name": (str,), "seed": (int, type(None)),
    "duration_s": (float, int), "spec": (dict,), "versions": (dict,), "versions_recorded": (bool,),
    "overall": (str,), "verdicts": (list,), "faults": (list,), "ops": (dict,), "latency_ms": (dict,),
    "leader_changes": (dict,), "recovery": (list,), "peer_request_windows": (list,),
    "peer_counter_resets": (dict,), "linearizability_windows": (list,), "problems": (list,),
}
FAULT_KEYS = ("name", "targets", "params", "term", "t_inject", "t_heal", "duration_s")
RECOVERY_KEYS = ("fault", "targets", "t_heal", "first_ok_s", "leader_s", "caught_up_s")
WINDOW_KEYS = ("fault_index", "fault", "link", "before", "during", "after")
FAULT_WINDOW_KEYS = ("index", "fault", "targets", "t_fault", "t_heal", "windows")
PHASES = ("before", "during", "after")


def _r(value: float | None, digits: int = 6) -> float | None:
    return None if value is None else round(value, digits)


def _ops(tl: Timeline) -> dict[str, Any]:
    by_type: dict[str, dict[str, int]] = {}
    by_outcome = dict.fromkeys(OUTCOMES, 0)
    for op in tl.ops:
        by_type.setdefault(op.f, dict.fromkeys(OUTCOMES, 0))[op.outcome] += 1
        by_outcome[op.outcome] += 1
    return {"total": len(tl.ops), "by_outcome": by_outcome, "by_type": dict(sorted(by_type.items()))}


def _latency(tl: Timeline) -> dict[str, Any]:
    by_outcome = {o: percentiles_ms(op.latency_s for op in tl.ops if op.outcome == o and op.latency_s is not None)
                  for o in ("ok", "fail", "info")}
    types = sorted({op.f for op in tl.ops})
    ok_by_type = {f: percentiles_ms(op.latency_s for op in tl.ops
                                    if op.f == f and op.outcome == "ok" and op.latency_s is not None)
                  for f in types}
    return {"by_outcome": by_outcome, "ok_by_type": ok_by_type}


def _window(tl: Timeline, link: str, start: float, end: float) -> dict[str, Any]:
    counts = request_counts(tl.peers[link], start, end)
    span = max(end - start, 0.0)
    return {"start_s": _r(start), "end_s": _r(end), "counts": counts,
            "rates_per_s": {k: (round(v / span, 3) if span > 0 else None) for k, v in counts.items()}}


def peer_request_windows(tl: Timeline) -> list[dict[str, Any]]:
    """Before/during/after counts of each request kind, for each fault and each leader->peer link."""
    out = []
    faults = sorted(tl.faults, key=lambda w: w.t_fault)
    for i, w in enumerate(faults):
        prev_end = faults[i - 1].end(tl.duration_s) if i > 0 else 0.0
        next_start = faults[i + 1].t_fault if i + 1 < len(faults) else tl.duration_s
        end = w.end(tl.duration_s)
        for link in sorted(tl.peers):
            row: dict[str, Any] = {"fault_index": i, "fault": w.label(), "link": link,
                   "before": _window(tl, link, min(prev_end, w.t_fault), w.t_fault),
                   "during": _window(tl, link, w.t_fault, end),
                   "after": _window(tl, link, end, max(end, next_start))}
            if any(sum(row[part]["counts"].values()) for part in ("before", "during", "after")):
                out.append(row)
    return out


def fault_windows(data: RunData) -> list[dict[str, Any]]:
    """The before / during / after measurements the ``windows`` verdict saved ([] when none)."""
    for verdict in data.verdicts:
        faults = verdict["details"].get("faults") if verdict["checker"] == "windows" else None
        if isinstance(faults, list):
            return [f for f in faults if isinstance(f, dict) and isinstance(f.get("windows"), dict)]
    return []


def build_summary(data: RunData, tl: Timeline) -> dict[str, Any]:
    """The summary document (see the module docstring for the schema)."""
    return {
        "schema": SCHEMA,
        "run_id": data.run_id,
        "test_name": data.test_name,
        "seed": data.seed,
        "duration_s": _r(tl.duration_s),
        "spec": data.spec,
        "versions": data.versions,
        "versions_recorded": data.versions_recorded,
        "overall": overall_validity(data.verdicts),
        "verdicts": [{"checker": v["checker"], "validity": v["validity"], "summary": v["summary"]}
                     for v in data.verdicts],
        "faults": [{"name": w.fault, "targets": list(w.targets), "params": dict(w.params), "term": w.term,
                    "t_inject": _r(w.t_fault), "t_heal": _r(w.t_heal),
                    "duration_s": _r(w.end(tl.duration_s) - w.t_fault), "vacuous": w.vacuous,
                    "evidence": w.evidence} for w in tl.faults],
        "ops": _ops(tl),
        "latency_ms": _latency(tl),
        "leader_changes": {"count": leader_changes(tl.leaders),
                           "leaderships": [{"t": _r(x.t), "leader": x.leader, "term": x.term}
                                           for x in tl.leaders]},
        "recovery": [{"fault": r.fault, "targets": list(r.targets), "t_heal": _r(r.t_heal),
                      "first_ok_s": _r(r.first_ok_s), "leader_s": _r(r.leader_s),
                      "caught_up_s": _r(r.caught_up_s)} for r in tl.recoveries],
        "peer_request_windows": peer_request_windows(tl),
        "peer_counter_resets": dict(sorted(tl.peer_resets.items())),
        "linearizability_windows": [{"key": w.key, "t_start": _r(w.t_start), "t_end": _r(w.t_end),
                                     "stuck_index": w.stuck_index,
                                     "op_indexes": [op.index for op in w.ops]} for w in tl.lin],
        "fault_windows": fault_windows(data),
        "problems": list(data.problems),
    }


def validate_summary(doc: Any) -> list[str]:
    """Problems with a summary document against schema ``raftchaos.summary/1`` (empty: valid)."""
    if not isinstance(doc, dict):
        return ["summary is not a JSON object"]
    problems = []
    if doc.get("schema") != SCHEMA:
        problems.append(f"schema is {doc.get('schema')!r}, expected {SCHEMA!r}")
    for key, types in SUMMARY_KEYS.items():
        if key not in doc:
            problems.append(f"missing key {key!r}")
        elif not isinstance(doc[key], types) or (isinstance(doc[key], bool) and bool not in types):
            problems.append(f"{key!r} has type {type(doc[key]).__name__}")
    for name, keys in (("faults", FAULT_KEYS), ("recovery", RECOVERY_KEYS),
                       ("peer_request_windows", WINDOW_KEYS)):
        for i, item in enumerate(doc.get(name) or []):
            missing = [k for k in keys if not isinstance(item, dict) or k not in item]
            if missing:
                problems.append(f"{name}[{i}] misses {', '.join(missing)}")
    for i, item in enumerate(doc.get("peer_request_windows") or []):
        for part in ("before", "during", "after"):
            counts = (item.get(part) or {}).get("counts") if isinstance(item, dict) else None
            if not isinstance(counts, dict) or set(counts) != set(REQUEST_KINDS):
                problems.append(f"peer_request_windows[{i}].{part}.counts must have {REQUEST_KINDS}")
    problems += _fault_window_problems(doc.get("fault_windows", []))
    if doc.get("overall") not in ("valid", "invalid", "unknown"):
        problems.append(f"overall is {doc.get('overall')!r}")
    return problems


def _fault_window_problems(items: Any) -> list[str]:
    """``fault_windows`` is optional (added under the same schema) but typed when present."""
    if not isinstance(items, list):
        return ["'fault_windows' must be a list"]
    problems = []
    for i, item in enumerate(items):
        missing = [k for k in FAULT_WINDOW_KEYS if not isinstance(item, dict) or k not in item]
        if missing:
            problems.append(f"fault_windows[{i}] misses {', '.join(missing)}")
        elif not isinstance(item["windows"], dict) or set(item["windows"]) != set(PHASES):
            problems.append(f"fault_windows[{i}].windows must have {PHASES}")
    return problems


def write_summary(data: RunData, tl: Timeline, doc: dict[str, Any] | None = None) -> Path:
    """Write ``summary.json`` (``doc``, default: built now) into the run directory, atomically so a
    reader never sees half a file."""
    path = data.path / "summary.json"
    tmp = path.with_suffix(".json.tmp")
    doc = doc if doc is not None else build_summary(data, tl)
    tmp.write_text(json.dumps(doc, indent=2, sort_keys=False, default=str) + "\n",
                   encoding="utf-8")
    tmp.replace(path)
    return path
