"""Linearizability checker: classic anomalies, input handling, budgets, and agreement with a brute-force oracle."""

from __future__ import annotations

import functools
import json
import random
import time
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from harness.checkers import Validity, Verdict, compose, guarded
from harness.checkers.history_ops import HistoryError, OpStatus, parse_history
from harness.checkers.kv_model import compile_keys, find_stale_read
from harness.checkers.linearizable import check_linearizable, main_check
from harness.checkers.wgl import search_key

# ---- building histories by hand --------------------------------------------------------------------


class H:
    """A history under construction; each event's time is its position, so the order written is the
    real-time order."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []

    def _add(self, type_: str, p: int, f: str, value: Any, key: str | None, **extra: Any) -> H:
        ev = {"process": p, "type": type_, "f": f, "value": value, "time": len(self.events), **extra}
        if key is not None:
            ev["key"] = key
        self.events.append(ev)
        return self

    def invoke(self, p: int, f: str, value: Any = None, key: str | None = "x") -> H:
        return self._add("invoke", p, f, value, key)

    def ok(self, p: int, f: str, value: Any = None, key: str | None = "x") -> H:
        return self._add("ok", p, f, value, key)

    def info(self, p: int, f: str, value: Any = None, key: str | None = "x") -> H:
        return self._add("info", p, f, value, key)

    def fail(self, p: int, f: str, value: Any = None, key: str | None = "x", **extra: Any) -> H:
        return self._add("fail", p, f, value, key, **extra)

    def op(self, p: int, f: str, value: Any = None, result: Any = None, key: str | None = "x") -> H:
        """A complete ok op with nothing concurrent to it (for reads ``result`` is the value read)."""
        return self.invoke(p, f, value, key).ok(p, f, result if f == "read" else value, key)

    def check(self, **kwargs: Any) -> Verdict:
        return check_linearizable(self.events, **kwargs)


def valid(h: H) -> bool:
    verdict = h.check()
    assert verdict.validity is not Validity.UNKNOWN, verdict.summary
    return verdict.validity is Validity.VALID


# ---- classic anomalies ------------------------------------------------------------------------------


def test_sequential_register_ops() -> None:
    h = H().op(0, "read", result=None).op(0, "write", 1).op(1, "read", result=1).op(1, "cas", [1, 2])
    assert valid(h.op(0, "read", result=2))


def test_stale_read_is_invalid_and_the_window_names_the_read_and_the_overwrite() -> None:
    h = H().op(0, "write", 1).op(0, "write", 2).op(1, "read", result=1)
    verdict = h.check()
    assert verdict.validity is Validity.INVALID
    anomaly = verdict.details["anomaly"]
    assert anomaly["key"] == "x" and anomaly["kind"] == "stale read"
    assert anomaly["stuck_op"]["index"] == 4 and anomaly["stuck_op"]["f"] == "read"
    assert [op["index"] for op in anomaly["witness_ops"]] == [2, 0]
    assert anomaly["window_indexes"] == [0, 2, 4]
    assert verdict.details["keys"]["x"]["validity"] == "invalid"
    assert "event 2" in verdict.summary
    json.loads(verdict.to_json())


def test_anomaly_found_by_the_search_reports_prefix_and_concurrent_ops() -> None:
    # Two readers see the concurrent writes in opposite orders: no single read is provably stale.
    h = H().invoke(0, "write", 1).invoke(1, "write", 2)
    h.op(2, "read", result=1).op(2, "read", result=2).op(3, "read", result=2).op(3, "read", result=1)
    verdict = h.check()
    assert verdict.validity is Validity.INVALID
    anomaly = verdict.details["anomaly"]
    assert anomaly["kind"] == "no linearization" and anomaly["witness_ops"] == []
    assert anomaly["stuck_op"]["index"] == 8  # the last read: 1 cannot come back after 2
    assert anomaly["prefix_length"] == 5 and anomaly["state_after_prefix"] == 2
    assert {op["index"] for op in anomaly["concurrent_ops"]} == {0, 1}  # the writes never completed
    assert {0, 1, 8} <= set(anomaly["window_indexes"])
    json.loads(verdict.to_json())


def test_lost_write_is_invalid() -> None:
    # Both writes acknowledged, yet a later read sees neither.
    h = H().op(0, "write", 1).op(1, "write", 2).op(2, "read", result=None)
    assert not valid(h)


def test_read_of_a_never_written_value_is_invalid() -> None:
    verdict = H().op(0, "write", 1).op(1, "read", result=7).check()
    assert verdict.validity is Validity.INVALID
    assert "no op that began before the read ended could write" in verdict.details["anomaly"]["explanation"]


def test_cas_on_a_stale_value_is_invalid() -> None:
    assert not valid(H().op(0, "write", 1).op(1, "write", 2).op(0, "cas", [1, 3]))


def test_read_concurrent_with_a_write_may_see_either_value() -> None:
    for seen in (None, 1):
        h = H().invoke(0, "write", 1).invoke(1, "read").ok(1, "read", seen).ok(0, "write", 1)
        assert valid(h)


def test_info_write_that_took_effect() -> None:
    h = H().invoke(0, "write", 1).info(0, "write", 1).op(1, "read", result=1)
    assert valid(h)


def test_info_write_that_did_not_take_effect() -> None:
    h = H().invoke(0, "write", 1).info(0, "write", 1).op(1, "read", result=None)
    assert valid(h)


def test_info_write_may_take_effect_long_after_its_completion() -> None:
    h = (H().invoke(0, "write", 1).info(0, "write", 1).op(1, "read", result=None).op(1, "read", result=None)
         .op(2, "read", result=1))
    assert valid(h)


def test_never_completed_invoke_is_info() -> None:
    assert valid(H().invoke(0, "write", 1).op(1, "read", result=1))


def test_info_write_cannot_take_effect_before_its_invoke() -> None:
    h = H().op(1, "read", result=1).invoke(0, "write", 1).info(0, "write", 1)
    assert not valid(h)


def test_info_write_takes_effect_at_most_once() -> None:
    h = (H().invoke(0, "write", 1).info(0, "write", 1).op(1, "read", result=1).op(1, "write", 2)
         .op(1, "read", result=1))
    assert not valid(h)


def test_two_identical_info_writes_can_take_effect_once_each() -> None:
    h = (H().invoke(0, "write", 1).info(0, "write", 1).invoke(2, "write", 1).info(2, "write", 1)
         .op(1, "read", result=1).op(1, "write", 2).op(1, "read", result=1))
    assert valid(h)


def test_concurrent_writes_observed_in_either_order() -> None:
    def history(first: int, second: int) -> H:
        return (H().invoke(0, "write", 1).invoke(1, "write", 2).invoke(2, "read").ok(2, "read", first)
                .invoke(2, "read").ok(2, "read", second).ok(0, "write", 1).ok(1, "write", 2))

    assert valid(history(1, 2)) and valid(history(2, 1))


def test_once_concurrent_writes_complete_the_value_is_fixed() -> None:
    h = H().invoke(0, "write", 1).invoke(1, "write", 2).ok(0, "write", 1).ok(1, "write", 2)
    assert valid(_copy(h).op(2, "read", result=1).op(3, "read", result=1))
    assert not valid(h.op(2, "read", result=1).op(3, "read", result=2))


def test_append_ordering() -> None:
    h = (H().invoke(0, "append", "a").invoke(1, "append", "b").ok(0, "append", "a").ok(1, "append", "b"))
    assert valid(_copy(h).op(2, "read", result="ab"))
    assert valid(_copy(h).op(2, "read", result="ba"))
    assert not valid(_copy(h).op(2, "read", result="a"))  # a lost append
    assert not valid(_copy(h).op(2, "read", result="ba").op(3, "read", result="ab"))


def test_info_appends_on_an_append_only_key() -> None:
    h = H().invoke(0, "append", "a").info(0, "append", "a").invoke(1, "append", "b").info(1, "append", "b")
    h.invoke(2, "append", "z").info(2, "append", "z")  # no read ever contains it: pruned
    verdict = _copy(h).op(3, "read", result="ba").op(3, "read", result="bac").check()
    assert verdict.validity is Validity.INVALID  # "c" was never appended
    verdict = _copy(h).op(3, "read", result="b").op(4, "append", "c").op(3, "read", result="bac").check()
    assert verdict.validity is Validity.VALID and verdict.details["keys"]["x"]["pruned"] == 1
    assert not valid(_copy(h).op(3, "read", result="ab").op(3, "read", result="ba"))


def test_append_to_null_and_to_empty_string() -> None:
    assert valid(H().op(0, "append", "a").op(1, "read", result="a"))
    assert valid(H().op(0, "write", "").op(0, "append", "a").op(1, "read", result="a"))
    assert not valid(H().op(0, "write", 5).op(0, "append", "a").op(1, "read", result="a"))


def test_read_of_empty_string_equals_null() -> None:
    assert valid(H().op(0, "read", result=""))
    assert valid(H().op(0, "write", "").op(1, "read", result=None).op(1, "read", result=""))
    assert not valid(H().op(0, "write", "x").op(1, "read", result=""))


def test_cas_compares_exactly_like_the_store() -> None:
    # nodes/kv.py compares cas values exactly, so "" and null differ for cas (not for reads).
    assert valid(H().op(0, "cas", [None, 1]).op(1, "read", result=1))
    assert not valid(H().op(0, "write", "").op(0, "cas", [None, 1]))


def test_failed_cas_without_error_is_a_constraint() -> None:
    base = H().op(0, "write", 1)
    assert not valid(_copy(base).invoke(1, "cas", [1, 2]).fail(1, "cas", [1, 2]))
    assert valid(_copy(base).invoke(1, "cas", [3, 2]).fail(1, "cas", [3, 2]).op(1, "read", result=1))
    # with a null error (our run schema always writes the field) it is still a constraint
    assert not valid(_copy(base).invoke(1, "cas", [1, 2]).fail(1, "cas", [1, 2], error=None))


def test_failed_cas_concurrent_with_the_write_may_precede_it() -> None:
    h = H().invoke(0, "write", 1).invoke(1, "cas", [1, 2]).fail(1, "cas", [1, 2]).ok(0, "write", 1)
    assert valid(h)


def test_failed_op_with_error_had_no_effect() -> None:
    h = H().invoke(0, "write", 1).fail(0, "write", 1, error="not_leader").op(1, "read", result=None)
    assert valid(h)
    h = H().op(0, "write", 1).invoke(1, "cas", [1, 2]).fail(1, "cas", [1, 2], error="not_leader")
    verdict = h.op(1, "read", result=1).check()
    assert verdict.validity is Validity.VALID and verdict.details["failed_ops"] == 1
    h = H().invoke(0, "write", 1).fail(0, "write", 1, error="not_leader").op(1, "read", result=1)
    assert not valid(h)


def test_info_cas_may_or_may_not_swap() -> None:
    h = H().op(0, "write", 1).invoke(1, "cas", [1, 2]).info(1, "cas", [1, 2])
    assert valid(_copy(h).op(0, "read", result=2)) and valid(_copy(h).op(0, "read", result=1))
    assert not valid(_copy(h).op(0, "write", 3).op(0, "read", result=2))


def test_unobserved_info_writes_are_pruned_but_observed_ones_kept() -> None:
    h = H().invoke(0, "write", 9).info(0, "write", 9).invoke(1, "write", 1).info(1, "write", 1)
    verdict = h.op(2, "read", result=1).check()
    assert verdict.validity is Validity.VALID and verdict.details["keys"]["x"]["pruned"] == 1


def test_keyless_records_are_key_empty_string_and_keys_are_independent() -> None:
    h = H().op(0, "write", 1, key=None).op(1, "read", result=1, key=None)
    h.op(0, "write", 5, key="y").op(1, "read", result=4, key="y")
    verdict = h.check(explain_all=True)  # by default key "" is left unchecked once "y" settles it
    assert verdict.validity is Validity.INVALID
    assert verdict.details["keys"][""]["validity"] == "valid"
    assert verdict.details["keys"]["y"]["validity"] == "invalid"
    assert [a["key"] for a in verdict.details["anomalies"]] == ["y"]


def test_run_schema_with_kind_and_t_and_other_events() -> None:
    events = [
        {"t": 0.1, "kind": "node", "process": "harness", "node": "n1", "event": "start"},
        {"t": 0.2, "kind": "invoke", "process": 0, "f": "write", "key": "k", "value": 3, "node": "n1"},
        {"t": 0.3, "kind": "fault", "process": "nemesis", "fault": "pause", "params": {}, "targets": []},
        {"t": 0.4, "kind": "ok", "process": 0, "f": "write", "key": "k", "value": 3, "error": None,
         "latency_s": 0.2},
        {"t": 0.5, "kind": "invoke", "process": 1, "f": "read", "key": "k", "value": None},
        {"t": 0.6, "kind": "ok", "process": 1, "f": "read", "key": "k", "value": 3, "error": None},
        {"t": 0.7, "kind": "sample", "process": "observer", "node": "n1", "status": None},
    ]
    verdict = check_linearizable(events)
    assert verdict.validity is Validity.VALID and verdict.details["ops"] == 2
    events[5]["value"] = 4
    assert check_linearizable(events).validity is Validity.INVALID


def test_equal_timestamps_count_as_concurrent() -> None:
    events = [
        {"process": 0, "type": "invoke", "f": "write", "value": 1, "time": 0},
        {"process": 0, "type": "ok", "f": "write", "value": 1, "time": 5},
        {"process": 1, "type": "invoke", "f": "read", "value": None, "time": 5},
        {"process": 1, "type": "ok", "f": "read", "value": None, "time": 6},
    ]
    assert check_linearizable(events).validity is Validity.VALID
    # the same for an overwrite that ends exactly when a read of the old value begins
    events = [
        {"process": 0, "type": "invoke", "f": "write", "value": 1, "time": 0},
        {"process": 0, "type": "ok", "f": "write", "value": 1, "time": 1},
        {"process": 0, "type": "invoke", "f": "write", "value": 2, "time": 2},
        {"process": 0, "type": "ok", "f": "write", "value": 2, "time": 5},
        {"process": 1, "type": "invoke", "f": "read", "value": None, "time": 5},
        {"process": 1, "type": "ok", "f": "read", "value": 1, "time": 6},
    ]
    assert check_linearizable(events).validity is Validity.VALID
    events[4]["time"] = 6
    events[5]["time"] = 7
    assert check_linearizable(events).validity is Validity.INVALID


# ---- malformed input ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("events", "problem"), [
    ([{"process": 0, "type": "invoke", "f": "incr", "value": 1}], "unknown f 'incr'"),
    ([{"type": "invoke", "f": "read"}], "missing process"),
    ([{"process": 0, "type": "ok", "f": "read", "value": 1}], "without a preceding invoke"),
    ([{"process": 0, "type": "invoke", "f": "read"}, {"process": 0, "type": "invoke", "f": "read"}],
     "invoked again"),
    ([{"process": 0, "type": "invoke", "f": "cas", "value": 1}], "cas value must be [from, to]"),
    ([{"process": 0, "type": "invoke", "f": "append", "value": 1}], "append value must be a string"),
    ([{"process": 0, "type": "begin", "f": "read"}], "unknown type"),
    ([{"process": "p", "type": "invoke", "f": "read"}], "process must be an integer"),
    ([{"process": 0, "type": "invoke", "f": "read", "time": 1}, {"process": 0, "type": "ok", "f": "read"}],
     "time missing"),
    ([{"process": 0, "type": "invoke", "f": "read", "time": 5},
      {"process": 0, "type": "ok", "f": "read", "time": 4}], "before its invoke"),
    ([{"process": 0, "type": "invoke", "f": "read", "key": "a"},
      {"process": 0, "type": "ok", "f": "read", "key": "b"}], "does not match"),
])
def test_malformed_input_names_the_event_and_problem(events: list[dict[str, Any]], problem: str) -> None:
    with pytest.raises(HistoryError) as info:
        check_linearizable(events)
    assert problem in str(info.value)
    assert str(info.value).startswith(f"event {len(events)}:")
    assert info.value.line == len(events)


def test_file_errors_name_the_line(tmp_path: Path) -> None:
    path = tmp_path / "h.jsonl"
    path.write_text('{"process": 0, "type": "invoke", "f": "read"}\n\n{"process": 1, "type": "ok", "f": "read"}\n')
    with pytest.raises(HistoryError, match=r"^line 3: ok of process 1 without a preceding invoke"):
        check_linearizable(path)
    path.write_text('{"process": 0, "type": "invoke", "f": "read"}\nnot json\n{}\n')
    with pytest.raises(HistoryError, match=r"^line 2: not JSON"):
        check_linearizable(path)


def test_torn_last_line_is_dropped(tmp_path: Path) -> None:
    path = tmp_path / "h.jsonl"
    path.write_text('{"process": 0, "type": "invoke", "f": "write", "value": 1}\n{"process": 0, "ty')
    assert check_linearizable(path).validity is Validity.VALID


# ---- budgets -----------------------------------------------------------------------------------------


def _many_info_appends(n: int) -> H:
    """Info appends of distinct tokens, then a read no order of them produces: to prove that, the
    search must try every order of every subset, which no budget allows. (The info write keeps the
    key from being append-only, and may take effect any time before the read, so the read's value
    prunes no order.)"""
    h = H().invoke(98, "write", "").info(98, "write", "")
    for p in range(n):
        h.invoke(p, "append", chr(ord("a") + p)).info(p, "append", chr(ord("a") + p))
    return h.op(99, "read", result="impossible")


def test_state_budget_gives_unknown_with_the_reason() -> None:
    verdict = _many_info_appends(10).check(max_states=500)
    assert verdict.validity is Validity.UNKNOWN
    assert "state budget of 500" in verdict.details["reason"]
    assert verdict.details["keys"]["x"]["validity"] == "unknown"


def test_time_limit_gives_unknown_with_the_reason() -> None:
    verdict = _many_info_appends(12).check(time_limit_s=0.05)
    assert verdict.validity is Validity.UNKNOWN
    assert "time limit" in verdict.details["reason"]
    assert verdict.details["elapsed_s"] < 2.0


def test_small_exhaustive_search_still_decides() -> None:
    assert _many_info_appends(4).check().validity is Validity.INVALID


# ---- verdicts, guard, CLI entry ------------------------------------------------------------------------


def test_compose_invalid_beats_unknown_beats_valid() -> None:
    v, i, u = Validity.VALID, Validity.INVALID, Validity.UNKNOWN
    assert compose([]) is u and compose([v, v]) is v  # nothing checked: unknown (test_run_record.py)
    assert compose([v, u]) is u and compose([u, i, v]) is i
    assert compose([Verdict("a", u, "s", {}), Verdict("b", v, "s", {})]) is u


def test_guarded_turns_an_exception_into_unknown() -> None:
    def broken(_events: object) -> Verdict:
        raise ValueError("boom")

    verdict = guarded("broken", broken, [])
    assert verdict.validity is Validity.UNKNOWN and "boom" in verdict.summary
    assert "ValueError" in verdict.details["traceback"]
    json.loads(verdict.to_json())
    bad = guarded("linearizable", check_linearizable, [{"type": "invoke", "f": "read"}])
    assert bad.validity is Validity.UNKNOWN and "missing process" in bad.summary


def test_main_check_exit_codes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    def write(h: H) -> Path:
        path = tmp_path / f"h{len(list(tmp_path.iterdir()))}.jsonl"
        path.write_text("".join(json.dumps(ev) + "\n" for ev in h.events))
        return path

    assert main_check(write(H().op(0, "write", 1).op(1, "read", result=1))) == 0
    assert "VALID" in capsys.readouterr().out
    assert main_check(write(H().op(0, "write", 1).op(1, "read", result=2))) == 1
    assert "INVALID" in capsys.readouterr().out
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"process": 0, "type": "ok", "f": "read"}\n')
    assert main_check(bad) == 254
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "line 1" in err
    assert main_check(tmp_path / "missing.jsonl") == 254


def _copy(h: H) -> H:
    out = H()
    out.events = [dict(ev) for ev in h.events]
    return out


# ---- agreement with a brute-force oracle ---------------------------------------------------------------


def _norm(value: Any) -> Any:
    return None if value == "" else value


_BAD = object()


def _apply(f: str, arg: Any, state: Any) -> Any:
    """The KV model written independently of the checker; _BAD when the op cannot take effect."""
    if f == "read":
        return state if _norm(state) == _norm(arg) else _BAD
    if f == "write":
        return arg
    if f == "cas":
        return arg[1] if state == arg[0] else _BAD
    if f == "cas-failed":
        return state if state != arg[0] else _BAD
    if state is None:
        return arg
    return state + arg if isinstance(state, str) else _BAD


def brute_force(events: list[dict[str, Any]]) -> bool:
    """Try every order (of every subset of the indeterminate ops) consistent with real time."""
    open_: dict[int, dict[str, Any]] = {}
    pairs: list[tuple[dict[str, Any], dict[str, Any] | None]] = []
    for ev in events:
        if ev["type"] == "invoke":
            open_[ev["process"]] = ev
        else:
            pairs.append((open_.pop(ev["process"]), ev))
    pairs += [(inv, None) for inv in open_.values()]
    by_key: dict[str, list[tuple[str, Any, bool, float, float]]] = {}
    for inv, done in pairs:
        f, key = inv["f"], inv.get("key", "")
        arg = inv["value"]
        if done is None or done["type"] == "info":
            if f != "read":
                by_key.setdefault(key, []).append((f, arg, False, inv["time"], float("inf")))
        elif done["type"] == "ok":
            arg = done["value"] if f == "read" else arg
            by_key.setdefault(key, []).append((f, arg, True, inv["time"], done["time"]))
        elif f == "cas" and done.get("error") is None:
            by_key.setdefault(key, []).append(("cas-failed", arg, True, inv["time"], done["time"]))
    return all(_key_linearizable(tuple(ops)) for ops in by_key.values())


def _key_linearizable(ops: tuple[tuple[str, Any, bool, float, float], ...]) -> bool:
    @functools.cache
    def search(remaining: frozenset[int], state: Any) -> bool:
        if not any(ops[i][2] for i in remaining):
            return True
        for c in remaining:
            if any(o != c and ops[o][2] and ops[o][4] < ops[c][3] for o in remaining):
                continue  # a required op returned before c was called: it must come first
            arg = tuple(ops[c][1]) if isinstance(ops[c][1], list) else ops[c][1]
            new = _apply(ops[c][0], arg, state)
            if new is not _BAD and search(remaining - {c}, new):
                return True
        return False

    return search(frozenset(range(len(ops))), None)


VALUES = [None, "", 0, 1, "a"]


@st.composite
def executions(draw: st.DrawFn, max_ops: int = 7) -> list[dict[str, Any]]:
    """A history recorded from a real sequential store: each op takes effect at a point inside its
    interval (or, if info, maybe later or never); so it is linearizable by construction."""
    threads = draw(st.integers(2, 3))
    keys = draw(st.sampled_from([["x"], ["x", "y"], [""]]))
    clock = [0] * threads
    pid = list(range(threads))
    next_pid = threads
    planned: list[dict[str, Any]] = []
    for _ in range(draw(st.integers(1, max_ops))):
        th = draw(st.integers(0, threads - 1))
        start = clock[th] + draw(st.integers(1, 3))
        end = start + draw(st.integers(1, 6))
        clock[th] = end
        f = draw(st.sampled_from(["read", "write", "cas", "append"]))
        value = {"read": None, "write": draw(st.sampled_from(VALUES)),
                 "cas": [draw(st.sampled_from(VALUES)), draw(st.sampled_from(VALUES))],
                 "append": draw(st.sampled_from(["a", "b"]))}[f]
        outcome = draw(st.sampled_from(["ok", "ok", "ok", "info", "info-lost", "fail"]))
        stretch = 3 if outcome == "info" else 1
        at = start + draw(st.floats(0.01, 0.99)) * (end - start) * stretch
        planned.append({"p": pid[th], "f": f, "key": draw(st.sampled_from(keys)), "value": value,
                        "outcome": outcome, "start": start, "end": end, "at": at,
                        "empty_for_null": draw(st.booleans())})
        if outcome.startswith("info"):
            pid[th], next_pid = next_pid, next_pid + 1
    store: dict[str, Any] = {}
    for op in sorted(planned, key=lambda o: o["at"]):
        if op["outcome"] in ("info-lost", "fail"):
            continue
        current = store.get(op["key"])
        if op["f"] == "read":
            op["result"] = "" if current is None and op["empty_for_null"] else current
        elif op["f"] == "write":
            store[op["key"]] = op["value"]
        elif op["f"] == "cas":
            if current == op["value"][0]:
                store[op["key"]] = op["value"][1]
            elif op["outcome"] == "ok":
                op["outcome"] = "cas-mismatch"
        elif current is None or isinstance(current, str):
            store[op["key"]] = (current or "") + op["value"]
        else:
            op["outcome"] = "fail"  # the store rejects appending to a non-string
    events: list[tuple[float, int, dict[str, Any]]] = []
    for op in planned:
        base = {"process": op["p"], "f": op["f"], "key": op["key"]}
        events.append((op["start"], 1, {**base, "type": "invoke", "value": op["value"], "time": op["start"]}))
        kind = {"ok": "ok", "info": "info", "info-lost": "info", "fail": "fail", "cas-mismatch": "fail"}
        done = {**base, "type": kind[op["outcome"]], "value": op.get("result", op["value"]), "time": op["end"]}
        if op["outcome"] == "fail":
            done["error"] = "not_leader"
        events.append((op["end"], 0, done))
    events.sort(key=lambda e: (e[0], e[1]))
    return [ev for _, _, ev in events]


@st.composite
def perturbed(draw: st.DrawFn) -> list[dict[str, Any]]:
    """A recorded history with one or two things changed: a read's value, a completion's type, or
    when an op completed; such histories may or may not be linearizable."""
    events = [dict(ev) for ev in draw(executions())]
    completions = [i for i, ev in enumerate(events) if ev["type"] != "invoke"]
    for _ in range(draw(st.integers(1, 3))):
        i = draw(st.sampled_from(completions))
        ev = events[i]
        change = draw(st.sampled_from(["value", "value", "type", "time"]))
        if change == "value" and ev["f"] == "read":
            ev["type"] = "ok"
            ev["value"] = draw(st.sampled_from([*VALUES, "ab", "ba", "b"]))
        elif change in ("type", "value"):
            ev["type"] = draw(st.sampled_from(["ok", "info", "fail"]))
            ev.pop("error", None)
        else:
            invoke_time = next(e["time"] for e in reversed(events[:i]) if e["process"] == ev["process"])
            ev["time"] = max(invoke_time, ev["time"] + draw(st.integers(-4, 4)))
    return events


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(executions())
def test_histories_from_a_sequential_store_are_valid(events: list[dict[str, Any]]) -> None:
    assert brute_force(events)
    assert check_linearizable(events).validity is Validity.VALID


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(perturbed())
def test_checker_agrees_with_brute_force_on_perturbed_histories(events: list[dict[str, Any]]) -> None:
    expected = Validity.VALID if brute_force(events) else Validity.INVALID
    assert check_linearizable(events).validity is expected
    # The search alone (without the stale-read proof) and the proof alone must agree too.
    models = compile_keys(op for op in parse_history(events) if op.status is not OpStatus.FAILED)
    # no key to search is a linearizable history (the search's own answer, not "nothing checked")
    assert compose([Validity.VALID, *(search_key(m, time.monotonic() + 10).validity for m in models)]) is expected
    if any(find_stale_read(m) is not None for m in models):
        assert expected is Validity.INVALID


def _simulated(seed: int, n_ops: int, threads: int = 16, info_rate: float = 0.2) -> list[dict[str, Any]]:
    """A larger history from concurrent clients against a sequential store (valid by construction):
    two register keys with values 0..4 and one append key, ops with overlapping intervals, info ops
    that take effect late or never."""
    rng = random.Random(seed)
    planned = []
    clock = [0.0] * threads
    for n in range(n_ops):
        th = rng.randrange(threads)
        start = clock[th] + rng.random()
        end = start + rng.uniform(0.1, 8)
        clock[th] = end
        key = rng.choice(["r0", "r1", "s"])
        if key == "s":
            f, value = rng.choice([("read", None), ("append", f"{n},")])
        else:
            f, value = rng.choice([("read", None), ("write", rng.randrange(5)),
                                   ("cas", [rng.randrange(5), rng.randrange(5)])])
        info = rng.random() < info_rate
        at = start + rng.uniform(0, 1) * (end - start) * (4 if info else 1)
        planned.append([1000 * th + n, f, key, value, start, end, "info" if info else "ok",
                        None if info and rng.random() < 0.5 else at])
    store: dict[str, Any] = {}
    for op in sorted((op for op in planned if op[7] is not None), key=lambda op: op[7]):
        current = store.get(op[2])
        if op[1] == "read":
            op[3] = current
        elif op[1] == "write":
            store[op[2]] = op[3]
        elif op[1] == "append":
            store[op[2]] = (current or "") + op[3]
        elif current == op[3][0]:
            store[op[2]] = op[3][1]
        elif op[6] == "ok":
            op[6] = "fail"
    events = []
    for p, f, key, value, start, end, outcome, _at in planned:
        events.append({"process": p, "type": "invoke", "f": f, "key": key, "value": None if f == "read" else value,
                       "time": start})
        events.append({"process": p, "type": outcome, "f": f, "key": key, "value": value, "time": end})
    return sorted(events, key=lambda e: (e["time"], e["type"] == "invoke"))


@pytest.mark.parametrize("seed", range(6))
def test_larger_simulated_histories_are_valid_and_a_corrupted_read_is_caught(seed: int) -> None:
    events = _simulated(seed, 400)
    verdict = check_linearizable(events)
    assert verdict.validity is Validity.VALID, verdict.summary
    models = compile_keys(op for op in parse_history(events) if op.status is not OpStatus.FAILED)
    assert all(search_key(m, time.monotonic() + 30).validity is Validity.VALID for m in models)
    # A read that lost a token whose ok append finished before the read began is invalid.
    invoked = {e["process"]: e["time"] for e in events if e["type"] == "invoke"}
    acked = {e["value"]: e["time"] for e in events if e["type"] == "ok" and e["f"] == "append"}
    rng = random.Random(seed)
    reads = [e for e in events if e["type"] == "ok" and e["f"] == "read" and e["key"] == "s" and e["value"]]
    for read in rng.sample(reads, len(reads)):
        tokens = read["value"].split(",")[:-1]
        lost = [j for j, t in enumerate(tokens) if acked.get(t + ",", 1e9) < invoked[read["process"]]]
        if lost:
            read["value"] = "".join(t + "," for j, t in enumerate(tokens) if j != lost[0])
            break
    else:
        pytest.fail("no read to corrupt")
    assert check_linearizable(events).validity is Validity.INVALID
    models = compile_keys(op for op in parse_history(events) if op.status is not OpStatus.FAILED)
    assert compose(search_key(m, time.monotonic() + 30).validity for m in models) is Validity.INVALID


def test_parse_keeps_every_op_in_invoke_order() -> None:
    h = H().invoke(0, "write", 1).invoke(1, "read").ok(1, "read", 1).ok(0, "write", 1).invoke(2, "write", 2)
    ops = parse_history(h.events)
    assert [(op.index, op.complete_index, op.status.value) for op in ops] == [
        (0, 3, "ok"), (1, 2, "ok"), (4, None, "info")]


def test_a_read_of_null_keeps_writes_of_null_and_empty_concrete() -> None:
    """Abstraction to UNREAD spares every value some op compares with: a read of null compares
    with null and "" alike, also when a cas from null came first (a compile_key shortcut once
    dropped "" there: the write of "" became UNREAD and the read below could not see it)."""
    events: list[dict[str, Any]] = []
    for p, f, value, result in ((1, "cas", [None, 1], None), (2, "write", "", None), (3, "read", None, "")):
        events.append({"process": p, "type": "invoke", "f": f, "key": "k", "value": value, "time": len(events)})
        events.append({"process": p, "type": "ok", "f": f, "key": "k", "value": result if f == "read" else value,
                       "time": len(events)})
    (m,) = compile_keys(parse_history(events))
    assert m.arg[1] == ""  # the write of "", as written
    assert check_linearizable(events, workers=1).validity is Validity.VALID
