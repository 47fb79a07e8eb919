"""The durability, recovery and degradation checkers on hand-built histories: valid, invalid, unknown."""

from __future__ import annotations

from typing import Any

from harness.checkers.degradation import check_degradation, peer_windows
from harness.checkers.durability import check_durability, check_key
from harness.checkers.recovery import check_recovery
from harness.checkers.verdict import Validity
from harness.finish import standard_verdicts
from harness.history_views import Op, client_ops
from harness.timing import TimingProfile

SPEC = {"node_count": 3, "timing": TimingProfile.fast().to_dict()}


class H:
    """A tiny history builder (times in seconds; one event per call)."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = [{"t": 0.0, "kind": "note", "text": "cluster starting", "spec": SPEC}]

    def op(self, p: int, f: str, key: str, value: Any, t0: float, t1: float, kind: str = "ok",
           result: Any = None, final: bool = False) -> H:
        extra = {"final": True} if final else {}
        self.events.append({"t": t0, "kind": "invoke", "process": p, "f": f, "key": key, "value": value,
                            "node": "n1", **extra})
        self.events.append({"t": t1, "kind": kind, "process": p, "f": f, "key": key,
                            "value": result if f == "read" else value, "node": "n1", **extra})
        return self

    def failed_cas(self, p: int, key: str, frm: Any, to: Any, t0: float, t1: float, observed: Any = None,
                   error: str | None = None) -> H:
        """A cas completing ``fail`` as the workload records it: a failed compare has ``error`` null
        and the value found as ``observed``; a refused cas names its error."""
        self.events.append({"t": t0, "kind": "invoke", "process": p, "f": "cas", "key": key,
                            "value": [frm, to], "node": "n1"})
        extra = {"observed": observed} if error is None else {}
        self.events.append({"t": t1, "kind": "fail", "process": p, "f": "cas", "key": key,
                            "value": [frm, to], "node": "n1", "latency_s": t1 - t0, "error": error, **extra})
        return self

    def final(self, key: str, value: Any, t: float = 100.0) -> H:
        return self.op(-1, "read", key, None, t, t + 0.01, result=value, final=True)

    def fault(self, t: float, targets: list[str], heal_t: float | None, name: str = "isolate") -> H:
        self.events.append({"t": t, "kind": "fault", "process": "nemesis", "fault": name, "params": {},
                            "targets": targets, "term": 1})
        if heal_t is not None:
            self.events.append({"t": heal_t, "kind": "heal", "process": "nemesis", "fault": name,
                                "params": {}, "targets": targets, "term": 1})
        return self

    def sample(self, t: float, node: str, role: str, term: int, leader: str | None,
               peers: dict[str, Any] | None = None) -> H:
        status = {"role": role, "term": term, "leader": leader, "peers": peers or {}}
        self.events.append({"t": t, "kind": "sample", "process": "observer", "node": node, "status": status})
        return self

    def sorted(self) -> list[dict[str, Any]]:
        return sorted(self.events, key=lambda e: e["t"])


# ---- durability ---------------------------------------------------------------------------------

def test_client_ops_pairs_invokes_with_completions() -> None:
    ops = client_ops(H().op(1, "write", "k", "a", 1, 2).op(2, "write", "k", "b", 1.5, 3, "info").sorted())
    assert [(o.f, o.kind, o.invoke_t, o.complete_t) for o in ops] == [("write", "ok", 1, 2), ("write", "info", 1.5, 3)]


def test_durability_valid_when_final_is_last_ack_or_later_indeterminate() -> None:
    def h() -> H:
        return H().op(1, "write", "k", "a", 1, 2).op(1, "write", "k", "b", 3, 4).op(2, "write", "k", "c", 5, 9, "info")
    assert check_durability(h().final("k", "b").sorted()).validity is Validity.VALID
    assert check_durability(h().final("k", "c").sorted()).validity is Validity.VALID


def test_durability_invalid_for_older_acked_value_or_never_written() -> None:
    h = H().op(1, "write", "k", "a", 1, 2).op(1, "write", "k", "b", 3, 4)
    older = check_durability(H().op(1, "write", "k", "a", 1, 2).op(1, "write", "k", "b", 3, 4)
                             .final("k", "a").sorted())
    assert older.validity is Validity.INVALID and "older acknowledged" in older.details["lost"]["k"]
    never = check_durability(h.final("k", "zzz").sorted())
    assert never.validity is Validity.INVALID and "never written" in never.details["lost"]["k"]
    empty = check_durability(H().op(1, "write", "k", "a", 1, 2).final("k", None).sorted())
    assert empty.validity is Validity.INVALID


def test_durability_concurrent_acks_and_failed_ops() -> None:
    # a and b overlap, so either may be last; a failed write never took effect.
    h = H().op(1, "write", "k", "a", 1, 3).op(2, "write", "k", "b", 2, 4).op(3, "write", "k", "x", 5, 6, "fail")
    assert check_durability(h.final("k", "a").sorted()).validity is Validity.VALID
    h2 = H().op(1, "write", "k", "a", 1, 3).op(3, "write", "k", "x", 5, 6, "fail")
    assert check_durability(h2.final("k", "x").sorted()).validity is Validity.INVALID


def test_durability_cas_and_append() -> None:
    h = H().op(1, "write", "k", "a", 1, 2).op(1, "cas", "k", ["a", "b"], 3, 4)
    assert check_durability(h.final("k", "b").sorted()).validity is Validity.VALID
    assert check_durability(h.final("k", "a", t=200).sorted()).validity is Validity.INVALID
    appends = [Op(i, i + 1, "append", "k", token, t, "n1", kind, token, t + 1)
               for i, (token, t, kind) in enumerate([("x1", 1, "ok"), ("y2", 3, "ok"), ("z3", 5, "info")])]
    assert check_key("k", appends, "x1y2") is None
    assert check_key("k", appends, "x1y2z3") is None
    assert "missing" in (check_key("k", appends, "x1z3") or "")
    assert "not a written value" in (check_key("k", appends, "x1q9") or "")


def test_failed_compare_changes_nothing_for_durability() -> None:
    h = H().op(1, "write", "k", "a", 1, 2).failed_cas(2, "k", "b", "c", 3, 4, observed="a")
    assert check_durability(h.final("k", "a").sorted()).validity is Validity.VALID
    lost = check_durability(H().op(1, "write", "k", "a", 1, 2).failed_cas(2, "k", "b", "c", 3, 4, observed="a")
                            .final("k", "c").sorted())
    assert lost.validity is Validity.INVALID and "never written" in lost.details["lost"]["k"]


def test_failed_compare_is_a_constraint_but_a_refused_cas_is_not() -> None:
    def lin(h: H) -> Validity:
        verdicts = {v.checker: v for v in standard_verdicts(h.final("k", "a").sorted())}
        return verdicts["linearizable"].validity

    base = H().op(1, "write", "k", "a", 1, 2)
    assert lin(base.failed_cas(2, "k", "b", "c", 3, 4, observed="a")) is Validity.VALID
    # Nothing but "a" was ever there, so a compare with "a" cannot have failed...
    assert lin(H().op(1, "write", "k", "a", 1, 2).failed_cas(2, "k", "a", "c", 3, 4, observed="zz")) \
        is Validity.INVALID
    # ...whereas a cas the node refused had no effect and says nothing about the value.
    assert lin(H().op(1, "write", "k", "a", 1, 2).failed_cas(2, "k", "a", "c", 3, 4, error="not_leader")) \
        is Validity.VALID


def test_standard_verdicts_bound_the_linearizability_search() -> None:
    # Info appends of distinct tokens, then a read no order of them produces: proving that means
    # trying every order of every subset, far beyond any budget. (The info write may take effect
    # any time before the read, so the read's value prunes no order.)
    h = H().op(98, "write", "k", "", 0.1, 0.2, "info")
    for p in range(14):
        h.op(p, "append", "k", chr(ord("a") + p), 1 + p, 1.5 + p, "info")
    h.op(99, "read", "k", None, 50, 51, result="impossible").final("k", "impossible")
    verdicts = {v.checker: v for v in standard_verdicts(h.sorted(), linearizable_budget_s=0.2)}
    lin = verdicts["linearizable"]
    assert lin.validity is Validity.UNKNOWN and "time limit" in lin.details["reason"]
    assert lin.details["elapsed_s"] < 2.0
    assert list(verdicts) == ["durability", "crashes", "invariants", "linearizable"]  # no fault: no recovery


def test_standard_verdicts_turn_a_malformed_history_into_unknown() -> None:
    h = H().op(1, "write", "k", "a", 1, 2).final("k", "a")
    h.events.append({"t": 200.0, "kind": "ok", "process": 7, "f": "write", "key": "k", "value": "x"})
    lin = {v.checker: v for v in standard_verdicts(h.sorted())}["linearizable"]
    assert lin.validity is Validity.UNKNOWN and "without a preceding invoke" in lin.summary


def test_durability_unknown_without_acks_or_final_reads() -> None:
    no_ack = check_durability(H().op(1, "write", "k", "a", 1, 2, "info").final("k", "a").sorted())
    assert no_ack.validity is Validity.UNKNOWN and "could not exercise" in no_ack.summary
    unread = check_durability(H().op(1, "write", "k", "a", 1, 2).sorted())
    assert unread.validity is Validity.UNKNOWN and unread.details["unread"] == ["k"]


# ---- recovery -----------------------------------------------------------------------------------

def _writes(h: H, start: float, end: float, step: float = 0.5, p: int = 1) -> H:
    t = start
    while t < end:
        h.op(p, "write", "k", f"v{t}", t, t + 0.05)
        t += step
    return h


def _leaders(h: H, leader: str, term: int, start: float, end: float) -> H:
    t = start
    while t < end:
        for n in ("n1", "n2", "n3"):
            h.sample(t, n, "LEADER" if n == leader else "FOLLOWER", term, leader)
        t += 0.5
    return h


def test_recovery_measures_new_leader_and_writes() -> None:
    h = _writes(H(), 1, 5)
    h.fault(5.0, ["n1"], heal_t=8.0, name="kill")
    _writes(h, 6.5, 12, p=2)
    _leaders(_leaders(h, "n1", 1, 0.5, 5.0), "n2", 2, 6.0, 12)
    verdict = check_recovery(h.sorted(), max_after_heal_s=2.0)
    assert verdict.validity is Validity.VALID
    (row,) = verdict.details["faults"]
    assert row["new_leader"] == "n2" and row["new_leader_s"] == 1.0
    assert row["write_s"] == 1.55 and row["write_after_heal_s"] == 0.05
    assert verdict.details["leader_changes"] == 1


def test_recovery_invalid_when_writes_come_back_too_late() -> None:
    h = _writes(H(), 1, 5).fault(5.0, ["n1"], heal_t=6.0)
    h.op(3, "write", "k", 99, 6.2, 8.7, kind="fail")  # tried after the heal, not taken
    _writes(h, 10, 12, p=2)
    verdict = check_recovery(h.sorted(), max_after_heal_s=2.0)
    assert verdict.validity is Validity.INVALID and "3.85 s" in verdict.summary  # from the attempt at 6.2


def test_recovery_counts_from_the_first_attempt_when_nobody_wrote_after_the_heal() -> None:
    """A suite that checks its invariants for a while after healing, then writes: the write is
    taken at once, so the system recovered; the suite's own pause is not a slow recovery."""
    h = _writes(H(), 1, 5).fault(5.0, ["n1"], heal_t=6.0)
    _writes(h, 10, 12, p=2)
    verdict = check_recovery(h.sorted(), max_after_heal_s=2.0)
    assert verdict.validity is Validity.VALID, verdict.summary
    assert verdict.details["faults"][0]["write_after_heal_s"] == 0.05


def test_recovery_unknown_when_assumptions_fail() -> None:
    too_few = _writes(H(), 4, 5).fault(5.0, ["n1"], 6.0)
    _writes(too_few, 7, 9)
    assert "before the first fault" in check_recovery(too_few.sorted()).summary
    no_fault = _writes(H(), 1, 5)
    assert check_recovery(no_fault.sorted()).validity is Validity.UNKNOWN
    not_injected = _writes(H(), 1, 5).fault(5.0, [], 6.0)
    _writes(not_injected, 7, 9)
    assert "not really injected" in check_recovery(not_injected.sorted()).summary
    nothing_after = _writes(H(), 1, 5).fault(5.0, ["n1"], 6.0)
    verdict = check_recovery(nothing_after.sorted())
    assert verdict.validity is Validity.UNKNOWN and "after the last heal" in verdict.summary


# ---- degradation --------------------------------------------------------------------------------

def _peer(requests: int, ops: int, status_only: int, hb: int, failed: int = 0) -> dict[str, Any]:
    return {"failed_attempts": failed, "counters": {
        "requests_sent": requests, "requests_with_ops": ops, "status_only_requests": status_only,
        "heartbeat_sends": hb, "signals_dropped_pending": 0, "signals_suppressed_failed": 0, "ops_read": ops}}


def _degradation_history(during_requests_per_s: int, new_term_at: float | None = None,
                         ops_during: bool = False) -> H:
    """n1 leads; n2 is cut from 2 s to 4 s. n3 gets 10 requests/s with ops throughout."""
    h = H()
    req2 = ops2 = hb2 = st2 = 0
    req3 = 0
    term = 1
    for i in range(1, 61):
        t = i * 0.1
        if new_term_at is not None and abs(t - new_term_at) < 1e-9:
            term, req2, ops2, hb2, st2, req3 = 2, 0, 0, 0, 0, 0
        req3 += 1
        if 2.0 < t <= 4.0:
            if i % max(1, 10 // during_requests_per_s) == 0:
                req2, hb2, st2 = req2 + 1, hb2 + 1, st2 + 1
                ops2 += 1 if ops_during else 0
        else:
            req2, ops2 = req2 + 1, ops2 + 1
        failed = 1 if 2.0 < t <= 4.0 else 0
        h.sample(t, "n1", "LEADER", term, "n1", {"n2": _peer(req2, ops2, st2, hb2, failed),
                                                  "n3": _peer(req3, req3, 0, 0)})
    h.fault(2.0, ["n2"], heal_t=4.0)
    for i in range(10):
        h.op(1, "write", "k", f"v{i}", 4.1 + i * 0.1, 4.15 + i * 0.1)
    return h


def test_degradation_windows_and_valid_verdict() -> None:
    events = _degradation_history(during_requests_per_s=5).sorted()
    rows, leaders = peer_windows(events)
    assert leaders == ["n1"]
    table = {(r.peer, r.window): r for r in rows}
    assert table[("n2", "during")].counters["requests_with_ops"] == 0
    assert table[("n2", "during")].counters["heartbeat_sends"] == 10
    assert table[("n2", "before")].counters["requests_with_ops"] == 20
    assert table[("n2", "during")].failed_attempts_max == 1
    verdict = check_degradation(events)
    assert verdict.validity is Validity.VALID, verdict.summary
    assert verdict.details["faulted_peers"] == ["n2"]


def test_degradation_invalid_when_writes_drive_rpcs_to_a_failed_peer() -> None:
    with_ops = check_degradation(_degradation_history(5, ops_during=True).sorted())
    assert with_ops.validity is Validity.INVALID and "requests with ops during" in with_ops.summary
    # 20 requests in 2 s is within one per 0.75 P (P = 100 ms) + slack; a tighter slack trips it.
    strict = check_degradation(_degradation_history(10).sorted(), slack_requests=-10)
    assert strict.validity is Validity.INVALID and "requests during" in strict.summary


def test_degradation_counters_reset_on_a_new_term() -> None:
    rows, _ = peer_windows(_degradation_history(5, new_term_at=5.0).sorted())
    after = {r.peer: r for r in rows if r.window == "after"}
    assert after["n3"].counters["requests_sent"] == 20  # no negative jump at the new term


def test_degradation_unknown_when_the_leader_was_the_target_or_samples_missing() -> None:
    h = _degradation_history(5)
    h.events = [e for e in h.events if e["kind"] != "fault" and e["kind"] != "heal"]
    h.fault(2.0, ["n1"], heal_t=4.0)
    assert "did not cut any peer" in check_degradation(h.sorted()).summary
    assert check_degradation(H().sorted()).validity is Validity.UNKNOWN
