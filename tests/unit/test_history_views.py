"""The one read model of a history (harness/history_views.py): the rules where the checkers' and the
reports' readers used to differ, pinned, and the two audiences reading the same numbers."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from harness.checkers.degradation import peer_windows
from harness.checkers.history_ops import parse_history
from harness.checkers.recovery import check_recovery, measure
from harness.checkers.registry import run_standard
from harness.checkers.verdict import Validity, compose
from harness.checkers.windows import check_windows, measure_windows
from harness.history_views import (
    CLIENT,
    MalformedHistory,
    client_ops,
    fault_windows,
    history_end,
    leader_changes,
    leader_timeline,
    leaderships,
    malformed,
    node_samples,
    peer_series,
    require_well_formed,
)
from harness.timing import TimingProfile
from reports.derive import derive, request_counts
from reports.html import render_for_pytest
from reports.run_data import load_run, overall_validity
from reports.terminal import count_leader_changes, run_row

TIMING = TimingProfile.fast()
SPEC = {"node_count": 3, "timing": TIMING.to_dict()}
NODES = ("n1", "n2", "n3")


class H:
    """A history builder; events keep the order they are added in (as the writer's lines do)."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = [
            {"t": 0.0, "kind": "note", "process": "harness", "text": "cluster starting", "spec": SPEC},
            *({"t": 0.0, "kind": "node", "process": "harness", "node": n, "event": "start", "code": None}
              for n in NODES)]

    def add(self, **event: Any) -> H:
        self.events.append(event)
        return self

    def invoke(self, t: float, p: int, f: str = "write", key: str = "k", value: Any = "v") -> H:
        return self.add(t=t, kind="invoke", process=p, f=f, key=key, value=value, node="n1")

    def done(self, t: float, p: int, kind: str = "ok", f: str = "write", key: str = "k", value: Any = "v",
             latency_s: float | None = None) -> H:
        extra = {} if latency_s is None else {"latency_s": latency_s}
        return self.add(t=t, kind=kind, process=p, f=f, key=key, value=value, node="n1", error=None, **extra)

    def op(self, t: float, p: int, value: Any = "v", kind: str = "ok") -> H:
        return self.invoke(t, p, value=value).done(t + 0.01, p, kind, value=value)

    def fault(self, t: float, targets: list[str], name: str = "kill") -> H:
        return self.add(t=t, kind="fault", process="nemesis", fault=name, params={}, targets=targets, term=1)

    def heal(self, t: float, targets: list[str], name: str = "kill", **extra: Any) -> H:
        return self.add(t=t, kind="heal", process="nemesis", fault=name, params={}, targets=targets, term=1,
                        **extra)

    def sample(self, t: float, node: str, role: str | None, term: int = 1, leader: str | None = None) -> H:
        status = None if role is None else {"role": role, "term": term, "leader": leader, "commit_index": 1}
        return self.add(t=t, kind="sample", process="observer", node=node, status=status,
                        error=None if status else "not running")

    def led(self, t: float, leader: str, term: int, down: tuple[str, ...] = ()) -> H:
        """One round of samples: every node up follows ``leader`` in ``term``."""
        for node in NODES:
            if node in down:
                self.sample(t, node, None)
            else:
                self.sample(t, node, "LEADER" if node == leader else "FOLLOWER", term, leader)
        return self


def test_an_op_that_never_completed_is_open_indeterminate_and_counted_as_info_by_the_windows() -> None:
    h = H().led(0.1, "n1", 1)
    for i in range(5):
        h.op(0.2 + i * 0.1, 0)
    h.fault(1.0, ["n3"]).invoke(1.1, 1).heal(1.5, ["n3"]).led(1.6, "n1", 1).op(1.7, 2)
    (never,) = [op for op in client_ops(h.events) if op.process == 1]
    assert (never.kind, never.outcome, never.indeterminate) == (None, "open", True)
    assert never.complete_t is None and never.latency_s is None
    during = measure_windows(h.events, TIMING)[0]["windows"]["during"]
    assert during["ops"]["info"] == 1 and during["success_rate"] == 0.0
    assert [op.outcome for op in derive(h.events, NODES).ops].count("open") == 1


def test_a_process_invoking_again_keeps_its_first_op_open_and_makes_the_history_malformed() -> None:
    h = H().invoke(1.0, 0, value="a").invoke(2.0, 0, value="b").done(2.1, 0, value="b")
    first, second = client_ops(h.events)
    assert (first.invoke_value, first.outcome) == ("a", "open")  # the reports used to drop it
    assert (second.invoke_value, second.outcome) == ("b", "ok")
    assert malformed(h.events) == [f"event {len(h.events) - 2}: process 0 invoked again before its op "
                                   f"(event {len(h.events) - 3}) completed"]
    with pytest.raises(MalformedHistory, match="invoked again"):
        require_well_formed(h.events, CLIENT)


def test_latency_is_what_the_client_recorded_else_the_history_times() -> None:
    h = H().invoke(1.0, 0).done(1.5, 0, latency_s=0.125).invoke(2.0, 1).done(2.25, 1)
    recorded, derived = client_ops(h.events)
    assert recorded.latency_s == 0.125 and derived.latency_s == 0.25


def test_op_index_is_the_event_position_the_linearizability_checker_names() -> None:
    h = H().led(0.1, "n1", 1).invoke(1.0, 0).invoke(1.1, 1, f="read", value=None).done(1.2, 0)
    h.done(1.3, 1, f="read", value="v").invoke(1.4, 2)
    ours = [(op.index, op.process, op.f) for op in client_ops(h.events)]
    theirs = [(op.index, op.process, op.f) for op in parse_history(h.events)]
    assert ours == theirs


def test_a_heal_closes_only_the_fault_of_its_targets() -> None:
    h = H().fault(1.0, ["n1"]).fault(2.0, ["n2"]).heal(2.5, ["n3"]).heal(3.0, ["n2"]).heal(4.0, ["n1"])
    one, two = fault_windows(h.events)
    assert (one.targets, one.t_fault, one.t_heal) == (("n1",), 1.0, 4.0)  # not closed by n3's heal
    assert (two.targets, two.t_fault, two.t_heal) == (("n2",), 2.0, 3.0)


def test_a_heal_says_whether_the_fault_bit_only_with_a_bool() -> None:
    h = H().fault(1.0, ["n1"]).heal(2.0, ["n1"], vacuous="yes", evidence=3).fault(3.0, ["n2"])
    h.heal(4.0, ["n2"], vacuous=True, evidence="no bytes crossed")
    told, vacuous = fault_windows(h.events)
    assert (told.vacuous, told.evidence) == (None, "3")
    assert (vacuous.vacuous, vacuous.evidence) == (True, "no bytes crossed")


def test_a_fault_never_healed_lasts_to_the_end_and_nothing_claims_it_recovered() -> None:
    h = H().led(0.1, "n1", 1)
    for i in range(5):
        h.op(0.2 + i * 0.1, 0)
    h.fault(1.0, ["n2"]).led(1.5, "n1", 1).op(2.0, 1)
    (window,) = fault_windows(h.events)
    assert window.t_heal is None and not window.healed
    assert window.end(history_end(h.events)) == pytest.approx(2.01)
    for verdict in (check_recovery(h.events), check_windows(h.events)):
        assert verdict.validity is Validity.UNKNOWN and "never healed" in verdict.summary
    timeline = derive(h.events, NODES)
    assert timeline.recoveries == [] and timeline.faults[0].end(timeline.duration_s) == pytest.approx(2.01)


def test_every_reader_counts_one_leader_change_per_new_term_with_a_leader() -> None:
    """n3 led term 2 unseen until n2's term 3 was sampled (it was cut off at once); n1 keeps
    claiming term 1 after losing it. Three terms had a leader: two changes, for the terminal, the
    summary and the checkers alike (the summary used to skip the late term 2: one change)."""
    h = H().led(0.1, "n1", 1)
    for i in range(5):
        h.op(0.2 + i * 0.1, 0)
    h.fault(1.0, ["n1", "n3"], name="isolate").led(1.5, "n2", 3, down=("n1", "n3"))
    h.sample(1.6, "n3", "LEADER", 2, "n3").sample(1.6, "n1", "LEADER", 1, "n1")
    h.heal(2.0, ["n1", "n3"], name="isolate").led(2.5, "n2", 3).op(2.6, 1)
    samples = node_samples(h.events)
    assert [(x.leader, x.term) for x in leaderships(samples)] == [("n1", 1), ("n3", 2), ("n2", 3)]
    assert leader_changes(leaderships(samples)) == 2
    assert count_leader_changes(h.events) == 2
    assert leader_changes(derive(h.events, NODES).leaders) == 2
    assert check_recovery(h.events).details["leader_changes"] == 2
    windows = measure_windows(h.events, TIMING)[0]["windows"]
    assert sum(w["leader_changes"] for w in windows.values()) == 2


def test_a_new_leader_after_a_leaderless_heal_is_a_change_in_the_after_window() -> None:
    """The paused leader is still gone at the heal, so no leader is agreed when the after window
    starts; n2 wins term 2 inside it. One change there (the agreed timeline, none -> n2, gave 0)."""
    h = H().led(0.1, "n1", 1)
    for i in range(5):
        h.op(0.2 + i * 0.1, 0)
    h.fault(1.0, ["n1"], name="pause").led(1.1, "n1", 1, down=("n1",))
    h.sample(1.9, "n2", "CANDIDATE", 2).sample(1.9, "n3", "FOLLOWER", 2)
    h.heal(2.0, ["n1"], name="pause").led(2.3, "n2", 2).op(2.4, 1)
    assert leader_timeline(h.events, NODES)[-2].leader is None
    windows = measure_windows(h.events, TIMING)[0]["windows"]
    assert (windows["during"]["leader_changes"], windows["after"]["leader_changes"]) == (0, 1)
    assert windows["after"]["leaders"] == ["n1", "n2"]


def _run_dir(tmp_path: Path, events: list[dict[str, Any]], verdicts: Any) -> Path:
    run = tmp_path / "run"
    run.mkdir()
    (run / "events.jsonl").write_text("".join(json.dumps(e) + "\n" for e in events))
    (run / "verdicts.json").write_text(json.dumps(verdicts))
    return run


def test_no_verdict_at_all_is_unknown_in_every_reader(tmp_path: Path) -> None:
    assert compose([]) is Validity.UNKNOWN
    assert overall_validity([]) == "unknown"
    run = _run_dir(tmp_path, H().led(0.1, "n1", 1).op(0.2, 0).events, {"schema": 1, "verdicts": []})
    render_for_pytest(run)
    assert json.loads((run / "summary.json").read_text())["overall"] == "unknown"
    assert run_row(run).verdict == "unknown"
    assert 'class="badge big unknown"' in (run / "report.html").read_text()


def test_a_malformed_event_makes_the_checkers_unknown_and_the_report_name_it(tmp_path: Path) -> None:
    events = H().led(0.1, "n1", 1).op(0.2, 0).events
    events.append({"kind": "ok", "process": 7, "f": "write", "key": "k", "value": "v"})  # no t, no invoke
    by_name = {v.checker: v for v in run_standard(events)}
    for name in ("durability", "linearizable"):
        assert by_name[name].validity is Validity.UNKNOWN, by_name[name]
    assert f"event {len(events) - 1}: ok event without a finite number t" in by_name["durability"].summary
    assert by_name["crashes"].validity is Validity.VALID  # it reads no client event
    run = _run_dir(tmp_path, events, {"schema": 1, "verdicts": []})
    (problem,) = load_run(run).problems
    assert problem.startswith("events.jsonl: left out of the report: event ") and "without a finite number t" in problem
    assert len(derive(events, NODES).ops) == 1


def test_checkers_and_reports_see_the_same_faults_and_ops() -> None:
    h = H().led(0.1, "n1", 1)
    for i in range(6):
        h.op(0.2 + i * 0.1, i % 2)
    h.fault(1.0, ["n2"], name="pause").invoke(1.1, 3).done(1.9, 3, "info").heal(2.0, ["n2"], name="pause")
    h.led(2.1, "n1", 1).op(2.2, 4)
    rows = measure(h.events)
    timeline = derive(h.events, NODES)
    assert [(r["fault"], r["targets"], r["t_fault"], r["t_heal"]) for r in rows] == [
        (w.fault, list(w.targets), w.t_fault, w.t_heal) for w in timeline.faults]
    windows = measure_windows(h.events, TIMING)[0]["windows"]
    ops_in = {name: sum(w["ops"].values()) - w["ops"]["compare_failed"] for name, w in windows.items()}
    for name, w in windows.items():
        assert ops_in[name] == sum(1 for op in timeline.ops if w["start_t"] <= op.invoke_t < w["end_t"] + 1e-9)


def test_a_leader_sample_missed_in_its_term_is_no_counter_reset_for_the_checker_or_the_report() -> None:
    """The leader's counters keep counting while one sample of it fails (the node did not answer in
    time): the window between gets the 2 requests sent, not the whole counter (the degradation
    checker used to count 12 here, as if the leader had rebuilt its peers)."""
    def leader(t: float, sent: int) -> dict[str, Any]:
        counters = {"requests_sent": sent, "requests_with_ops": 0, "status_only_requests": sent,
                    "heartbeat_sends": sent}
        return {"t": t, "kind": "sample", "process": "observer", "node": "n1",
                "status": {"role": "LEADER", "term": 1, "leader": "n1", "peers": {"n2": {"counters": counters}}}}
    h = H().fault(1.0, ["n2"], name="isolate")
    h.events += [leader(1.1, 10), {"t": 1.5, "kind": "sample", "process": "observer", "node": "n1",
                                   "status": None, "error": "timed out"}, leader(2.0, 12)]
    h.heal(2.5, ["n2"], name="isolate")
    rows, leaders = peer_windows(h.events, 0, bounds={"before": (0.0, 1.2), "during": (1.2, 2.5),
                                                      "after": (2.5, 3.0)})
    during = next(r for r in rows if r.window == "during")
    assert leaders == ["n1"] and during.counters["requests_sent"] == 2 and during.samples == 1
    series, resets = peer_series(node_samples(h.events))
    assert request_counts(series["n1->n2"], 1.2, 2.5)["heartbeat_sends"] == 2 and resets["n1->n2"] == 0
