"""The windowed checker on hand-built histories: measurements, assumptions, guard and composition."""

from __future__ import annotations

from typing import Any

import pytest

from harness.checkers.verdict import Validity, Verdict, compose, guarded
from harness.checkers.windows import check_windows, percentiles_ms
from harness.finish import standard_verdicts
from harness.timing import TimingProfile

SPEC = {"node_count": 3, "timing": TimingProfile.fast().to_dict()}  # P = 100 ms: windows >= 0.4 s
FAULT_AT, HEAL_AT, END = 2.0, 3.0, 4.5


class History:
    """A builder of small histories: a 3-node cluster led by n1 (term 1), one client op stream."""

    def __init__(self, spec: dict[str, Any] | None = SPEC) -> None:
        note: dict[str, Any] = {"t": 0.0, "kind": "note", "process": "harness", "text": "cluster starting"}
        if spec is not None:
            note["spec"] = spec
        self.events: list[dict[str, Any]] = [note]
        self.process = 0

    def op(self, t: float, kind: str = "ok", latency_s: float = 0.01, f: str = "write",
           final: bool = False, error: str | None = "timeout") -> History:
        self.process += 1
        extra = {"final": True} if final else {}
        value = None if f == "read" else f"v{self.process}"
        self.events.append({"t": t, "kind": "invoke", "process": self.process, "f": f, "key": "k",
                            "value": value, "node": "n1", **extra})
        if kind != "open":
            self.events.append({"t": t + latency_s, "kind": kind, "process": self.process, "f": f, "key": "k",
                                "value": value, "node": "n1", "latency_s": latency_s,
                                "error": None if kind == "ok" else error, **extra})
        return self

    def fault(self, t: float, heal_t: float | None, targets: tuple[str, ...] = ("n2",),
              params: dict[str, Any] | None = None, **heal_extra: Any) -> History:
        common = {"process": "nemesis", "node": None, "fault": "isolate", "params": params or {},
                  "targets": list(targets), "term": 1}
        self.events.append({"t": t, "kind": "fault", **common})
        if heal_t is not None:
            self.events.append({"t": heal_t, "kind": "heal", **common, **heal_extra})
        return self

    def sample(self, t: float, leader: str, term: int, peers: dict[str, dict[str, int]]) -> History:
        for node in ("n1", "n2", "n3"):
            status: dict[str, Any] = {"role": "LEADER" if node == leader else "FOLLOWER", "term": term,
                                      "leader": leader, "peers": {}}
            if node == leader:
                status["peers"] = {p: {"counters": dict(c), "failed_attempts": 0} for p, c in peers.items()}
            self.events.append({"t": t, "kind": "sample", "process": "observer", "node": node,
                                "status": status})
        return self

    def sorted(self) -> list[dict[str, Any]]:
        return sorted(self.events, key=lambda e: e["t"])


def _counters(with_ops: int, status_only: int, heartbeats: int) -> dict[str, int]:
    return {"requests_with_ops": with_ops, "status_only_requests": status_only,
            "heartbeat_sends": heartbeats, "requests_sent": with_ops + status_only}


def healthy(new_leader_during: bool = False) -> History:
    """Ops every 0.1 s; n2 cut off from 2.0 to 3.0 s: ops to n2 stop, status-only heartbeats go on.
    During the fault 2 of 10 ops time out (info) and 1 fails; with ``new_leader_during`` n3 takes
    over in term 2 at 2.5 s."""
    h = History()
    for i in range(1, int(END * 10)):
        t = i / 10
        during = FAULT_AT <= t < HEAL_AT
        kind = "info" if during and i in (21, 22) else "fail" if during and i == 23 else "ok"
        h.op(t, kind, latency_s=0.2 if during else 0.01)
    h.fault(FAULT_AT, HEAL_AT)
    to_n2 = {"ops": 0, "st": 0}
    to_n3 = 0
    for step in range(1, int(END * 10) + 1):
        t = step / 10 + 0.05
        if FAULT_AT <= t < HEAL_AT:
            to_n2["st"] += 1
        else:
            to_n2["ops"] += 2
        to_n3 += 2
        if new_leader_during and t >= 2.5:
            h.sample(t, "n3", 2, {"n1": _counters(step, 0, 0), "n2": _counters(0, step, step)})
        else:
            h.sample(t, "n1", 1, {"n2": _counters(to_n2["ops"], to_n2["st"], to_n2["st"]),
                                  "n3": _counters(to_n3, 0, 0)})
    return h


def test_windows_measure_success_latency_leaders_and_peer_kinds() -> None:
    verdict = check_windows(healthy().sorted())
    assert verdict.validity is Validity.VALID, verdict.summary
    (fault,) = verdict.details["faults"]
    assert (fault["fault"], fault["t_fault"], fault["t_heal"]) == ("isolate(n2)", FAULT_AT, HEAL_AT)
    before, during, after = (fault["windows"][w] for w in ("before", "during", "after"))
    # Before and after are as long as the fault (1 s, more than 4 P = 0.4 s).
    assert (before["start_t"], before["end_t"], after["start_t"], after["end_t"]) == (1.0, 2.0, 3.0, 4.0)
    assert before["ops"] == {"ok": 10, "fail": 0, "info": 0, "compare_failed": 0} and before["success_rate"] == 1.0
    assert during["ops"] == {"ok": 7, "fail": 1, "info": 2, "compare_failed": 0} and during["success_rate"] == 0.7
    assert before["latency_ms"]["p50"] == pytest.approx(10.0) and during["latency_ms"]["p99"] == pytest.approx(200.0)
    assert set(during["latency_ms"]) == {"p50", "p90", "p99"}
    assert [w["leader_changes"] for w in (before, during, after)] == [0, 0, 0]
    assert during["leaders"] == ["n1"]
    assert during["peers"]["n2"]["requests_with_ops"] == 0 and during["peers"]["n2"]["status_only_requests"] == 10
    assert before["peers"]["n2"]["requests_with_ops"] == 20 and after["peers"]["n2"]["requests_with_ops"] == 20
    assert "success 100% → 70% → 100%" in verdict.summary and "leader changes 0/0/0" in verdict.summary
    verdict.to_json()  # details are JSON-serialisable


def test_a_leader_change_is_counted_in_its_window() -> None:
    verdict = check_windows(healthy(new_leader_during=True).sorted())
    windows = verdict.details["faults"][0]["windows"]
    assert [windows[w]["leader_changes"] for w in ("before", "during", "after")] == [0, 1, 0]
    assert windows["during"]["leaders"] == ["n1", "n3"] and windows["after"]["leaders"] == ["n3"]
    # Per-peer counts follow the new leader (its counters start at 0 in its term, no negative jump).
    assert windows["after"]["peers"]["n1"]["requests_with_ops"] == 10


def test_short_faults_get_windows_of_four_heartbeats_cut_at_neighbouring_faults() -> None:
    h = History()
    for i in range(1, 60):
        h.op(i / 10)
    h.fault(2.0, 2.1).fault(2.3, 2.35, targets=("n3",))
    faults = check_windows(h.sorted()).details["faults"]
    first, second = (f["windows"] for f in faults)
    assert (first["before"]["start_t"], first["after"]["end_t"]) == (1.6, 2.3)  # cut at the next fault
    assert (second["before"]["start_t"], second["after"]["end_t"]) == (2.1, 2.75)  # 4 P = 0.4 s
    assert first["during"]["peers"] == {}  # no samples: nothing measured, nothing invented


def test_a_failed_compare_counts_as_served_a_refused_op_does_not() -> None:
    h = History()
    for i in range(1, 40):
        h.op(i / 10)
    h.fault(FAULT_AT, HEAL_AT)
    h.op(2.2, "fail", f="cas", error=None)  # executed, found another value
    h.op(2.3, "fail", f="cas", error="not_leader")  # refused: no effect
    during = check_windows(h.sorted()).details["faults"][0]["windows"]["during"]
    assert during["ops"] == {"ok": 10, "fail": 2, "info": 0, "compare_failed": 1}
    assert during["success_rate"] == pytest.approx(11 / 12, abs=1e-4)  # (10 ok + 1 compare) / 12
    assert set(during["latency_ms"]) == {"p50", "p90", "p99"}  # of the ok ops only


def test_percentiles_are_nearest_rank() -> None:
    assert percentiles_ms([]) == {}
    assert percentiles_ms([i / 1000 for i in range(1, 101)]) == {"p50": 50.0, "p90": 90.0, "p99": 99.0}


def _unknown(events: list[dict[str, Any]], reason: str) -> Verdict:
    verdict = check_windows(events)
    assert verdict.validity is Validity.UNKNOWN, verdict.summary
    assert verdict.summary.startswith("the harness could not exercise the system: ")
    assert reason in verdict.details["reason"], verdict.details["reason"]
    return verdict


def test_unknown_without_enough_successful_ops_before_the_first_fault() -> None:
    h = healthy()
    invoked_before = {(e["process"], e["t"]) for e in h.events if e["kind"] == "invoke" and e["t"] <= FAULT_AT}
    kept, dropped = [], set()
    for e in h.sorted():  # drop the ops invoked before the fault, each with its completion
        if e["kind"] == "invoke" and (e["process"], e["t"]) in invoked_before:
            dropped.add(e["process"])
        elif e["kind"] in ("ok", "fail", "info") and e["process"] in dropped:
            dropped.discard(e["process"])
        else:
            kept.append(e)
    h.events = kept
    h.op(1.0).op(1.5)
    verdict = _unknown(h.sorted(), "only 2 successful op(s) before the first fault (need 3)")
    assert verdict.details["faults"][0]["windows"]["before"]["ops"]["ok"] == 2  # measured all the same


@pytest.mark.parametrize("targets, params", [((), {}), (("n2",), {"error": "toxiproxy unreachable"})])
def test_unknown_when_the_fault_was_not_really_injected(targets: tuple[str, ...], params: dict[str, Any]) -> None:
    h = healthy()
    h.events = [e for e in h.events if e["kind"] not in ("fault", "heal")]
    h.fault(FAULT_AT, HEAL_AT, targets=targets, params=params)
    _unknown(h.sorted(), "not really injected")


def test_unknown_when_the_heal_records_the_fault_as_vacuous() -> None:
    h = healthy()
    h.events = [e for e in h.events if e["kind"] not in ("fault", "heal")]
    h.fault(FAULT_AT, HEAL_AT, vacuous=True, evidence="no request crossed n1->n2")
    verdict = _unknown(h.sorted(), "did not bite: isolate(n2) (no request crossed n1->n2)")
    assert verdict.details["faults"][0]["vacuous"] is True
    h.events = [e for e in h.events if e["kind"] not in ("fault", "heal")]
    h.fault(FAULT_AT, HEAL_AT, vacuous=None)  # could not tell: not held against the run
    assert check_windows(h.sorted()).validity is Validity.VALID


def test_a_schedule_is_exercised_when_any_one_fault_bit() -> None:
    """Two faults, the first shown not to bite (a bridge whose bridge node leads), the second bit:
    the run exercised the system; the vacuous one is a note, not an unknown verdict."""
    h = healthy()
    h.events = [e for e in h.events if e["kind"] not in ("fault", "heal")]
    h.fault(1.6, 1.8, vacuous=True, evidence="no node sent across the cut")
    h.fault(FAULT_AT, HEAL_AT, vacuous=False)
    verdict = check_windows(h.sorted())
    assert verdict.validity is Validity.VALID, verdict.summary
    assert verdict.details["not_bitten"] == ["isolate(n2)"]
    assert "did not bite (the others did): isolate(n2)" in verdict.summary


def test_unknown_without_a_successful_op_after_healing() -> None:
    h = healthy()
    h.events = [e for e in h.events if e.get("process") in (None, "nemesis", "observer", "harness")
                or e["t"] < HEAL_AT]
    h.op(3.5, "info").op(3.6, "ok", final=True)  # the harness's own final reads do not count
    _unknown(h.sorted(), "no successful operation after the last heal")


def test_unknown_when_never_healed_without_fault_or_without_timing() -> None:
    h = healthy()
    h.events = [e for e in h.events if e["kind"] != "heal"]
    verdict = _unknown(h.sorted(), "never healed")
    assert verdict.details["faults"][0]["windows"]["during"]["end_t"] > FAULT_AT
    no_fault = [e for e in healthy().events if e["kind"] not in ("fault", "heal")]
    _unknown(no_fault, "no fault was injected")
    untimed = [e for e in healthy().sorted() if e["kind"] != "note"]
    _unknown(untimed, "timing flags")


def test_a_checker_that_raises_yields_unknown_with_the_traceback() -> None:
    events = healthy().sorted()
    events.append({"kind": "fault", "process": "nemesis", "fault": "isolate", "targets": ["n3"]})  # no "t"
    verdict = guarded("windows", check_windows, events)
    assert verdict.validity is Validity.UNKNOWN and verdict.checker == "windows"
    assert "raised MalformedHistory" in verdict.summary
    assert f"event {len(events) - 1}: fault event without a finite number t" in verdict.summary
    assert "Traceback" in verdict.details["traceback"] and "check_windows" in verdict.details["traceback"]


def test_windows_compose_with_the_other_verdicts() -> None:
    valid = check_windows(healthy().sorted())
    h = healthy()
    h.events = [e for e in h.events if e["kind"] != "heal"]
    unknown = check_windows(h.sorted())
    invalid = Verdict("durability", Validity.INVALID, "lost write")
    assert compose([valid, unknown]) is Validity.UNKNOWN
    assert compose([unknown, invalid, valid]) is Validity.INVALID
    assert compose([valid, Verdict("recovery", Validity.VALID, "fine")]) is Validity.VALID


def test_standard_verdicts_run_the_windows_checker_only_when_a_fault_was_injected() -> None:
    events = healthy().sorted()
    names = [v.checker for v in standard_verdicts(events, linearizable_budget_s=1.0)]
    assert names.count("windows") == 1
    no_fault = [e for e in events if e["kind"] not in ("fault", "heal")]
    assert "windows" not in [v.checker for v in standard_verdicts(no_fault, linearizable_budget_s=1.0)]
    broken = [*events, {"kind": "fault", "process": "nemesis", "fault": "isolate", "targets": ["n3"]}]
    windows = next(v for v in standard_verdicts(broken, linearizable_budget_s=1.0) if v.checker == "windows")
    assert windows.validity is Validity.UNKNOWN and "traceback" in windows.details
