"""HTML report, JSON summary and `raftchaos report` on a hand-built run directory (no cluster)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from harness.entry.cli import main
from harness.history_views import client_ops, node_samples, peer_series
from reports.derive import REQUEST_KINDS, request_counts
from reports.html import render_for_pytest, render_run
from reports.summary import SCHEMA, validate_summary
from reports.terminal import render_text

SPEC = {"node_count": 3, "flags": {}, "node_flags": {}, "topology": {}, "backend": "local", "seed": 42,
        "run_dir": None, "test_name": "synthetic",
        "timing": {"heartbeat_interval_ms": 100, "missed_heartbeat_periods": 3.0, "rpc_timeout_ms": 500,
                   "backoff_max_delta_ms": 2000, "proxy_wait_time_ms": 100,
                   "proxy_failure_threshold_ms": 600, "kv_op_timeout_ms": 2000}}
FAULT_AT, HEAL_AT, NEW_LEADER_AT, END = 2.0, 3.45, 4.5, 6.0


def _peer(ops: int, status_only: int, heartbeats: int) -> dict[str, Any]:
    return {"failed_attempts": 0, "request_pending": False, "status": "OK", "health": "HEALTHY",
            "counters": {"requests_with_ops": ops, "status_only_requests": status_only,
                         "heartbeat_sends": heartbeats, "requests_sent": ops + status_only}}


def _status(node: str, role: str, term: int, leader: str, commit: int,
            peers: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"uuid": node, "role": role, "term": term, "leader": leader, "commit_index": commit,
            "last_index": commit, "applied_index": commit, "peers": peers or {}}


def _samples() -> list[dict[str, Any]]:
    """n1 leads term 1 (n2 cut off between FAULT_AT and HEAL_AT: only status-only heartbeats),
    then n2 leads term 2 with fresh (reset) counters."""
    out = []
    ops = {"n2": 0, "n3": 0}
    hb = {"n2": 0, "n3": 0}
    new = {"n1": 0, "n3": 0}
    for step in range(1, int(END * 10) + 1):
        t = step / 10
        commit = step * 2
        if t < NEW_LEADER_AT:
            cut = FAULT_AT <= t < HEAL_AT
            ops["n3"] += 4
            if cut:
                hb["n2"] += 1
            else:
                ops["n2"] += 4
            peers = {p: _peer(ops[p], hb[p], hb[p]) for p in ("n2", "n3")}
            out.append({"t": t, "kind": "sample", "process": "observer", "node": "n1",
                        "status": _status("n1", "LEADER", 1, "n1", commit, peers), "error": None})
            out.append({"t": t, "kind": "sample", "process": "observer", "node": "n2",
                        "status": _status("n2", "FOLLOWER", 1, "n1", 10 if cut else commit), "error": None})
            out.append({"t": t, "kind": "sample", "process": "observer", "node": "n3",
                        "status": _status("n3", "FOLLOWER", 1, "n1", commit), "error": None})
        else:
            new["n1"] += 3
            new["n3"] += 3
            peers = {p: _peer(new[p], 0, 0) for p in ("n1", "n3")}
            out.append({"t": t, "kind": "sample", "process": "observer", "node": "n2",
                        "status": _status("n2", "LEADER", 2, "n2", commit, peers), "error": None})
            out.append({"t": t, "kind": "sample", "process": "observer", "node": "n1",
                        "status": None, "error": "not running"})
            out.append({"t": t, "kind": "sample", "process": "observer", "node": "n3",
                        "status": _status("n3", "FOLLOWER", 2, "n2", commit), "error": None})
    return out


def _ops() -> list[dict[str, Any]]:
    """A healthy stream of writes and reads, plus one read of a value nobody wrote (not linearizable)."""
    out: list[dict[str, Any]] = []
    for i in range(40):
        t = 0.1 + i * 0.14
        f = "write" if i % 2 == 0 else "read"
        value = f"v{i}" if f == "write" else None
        out.append({"t": t, "kind": "invoke", "process": 0, "f": f, "key": "k0", "value": value, "node": "n1"})
        done_value = value if f == "write" else f"v{i - 1}"
        kind = "ok" if i not in (17, 18) else "info"
        out.append({"t": t + 0.01, "kind": kind, "process": 0 if kind == "ok" else 0, "f": f, "key": "k0",
                    "value": done_value if kind == "ok" else value, "node": "n1", "latency_s": 0.01,
                    "error": None if kind == "ok" else "timeout"})
    out.append({"t": 5.7, "kind": "invoke", "process": 9, "f": "read", "key": "k1", "value": None, "node": "n2"})
    out.append({"t": 5.72, "kind": "ok", "process": 9, "f": "read", "key": "k1", "value": "ghost", "node": "n2",
                "latency_s": 0.02, "error": None})
    return out


def make_run(root: Path) -> Path:
    run = root / "20240101T000000.000000Z-synthetic-42"
    (run / "nodes").mkdir(parents=True)
    events: list[dict[str, Any]] = [
        {"t": 0.0, "kind": "note", "process": "harness", "node": None, "text": "cluster starting", "spec": SPEC,
         "versions": {"python": "3.11.7", "raftchaos": "0.1.0", "toxiproxy": "2.5.0"}},
        *({"t": 0.01, "kind": "node", "process": "harness", "node": n, "event": "start", "code": None}
          for n in ("n1", "n2", "n3")),
        {"t": FAULT_AT, "kind": "fault", "process": "nemesis", "node": None, "fault": "link_down",
         "params": {"link": "n1->n2"}, "targets": ["n2"], "term": 1},
        {"t": HEAL_AT, "kind": "heal", "process": "nemesis", "node": None, "fault": "link_down",
         "params": {"link": "n1->n2"}, "targets": ["n2"], "term": 1},
        {"t": 4.4, "kind": "node", "process": "harness", "node": "n1", "event": "kill", "code": -9},
        *_samples(), *_ops(),
    ]
    events.sort(key=lambda e: e["t"])
    (run / "events.jsonl").write_text("".join(json.dumps(e) + "\n" for e in events))
    (run / "spec.json").write_text(json.dumps(SPEC))
    for node in ("n1", "n2", "n3"):
        (run / "nodes" / f"{node}.log").write_text(f"=== raftchaos: start {node}\nline two of {node}\n")
    (run / "schedule.jsonl").write_text(json.dumps({"at_s": FAULT_AT, "fault": "link_down"}) + "\n")
    return run


@pytest.fixture
def run_dir(tmp_path: Path) -> Path:
    return make_run(tmp_path)


def _external_refs(html: str) -> list[str]:
    return re.findall(r'(?:src|href)\s*=\s*["\']\s*(?:https?:)?//[^"\']*', html, flags=re.I)


def test_render_run_writes_a_self_contained_report(run_dir: Path) -> None:
    result = render_run(run_dir)
    html = result.report_path.read_text()
    assert result.report_path == run_dir / "report.html"
    assert result.overall == "invalid"
    assert _external_refs(html) == []
    assert "<script" not in html.lower() and "<link" not in html.lower()
    assert html.count("<svg") >= 5 and html.count('class="plot"') == 5
    assert 'class="plot-card" id="plot-peers"' in html
    for checker in ("durability", "recovery", "linearizable"):
        assert f"<b>{checker}</b>" in html
    assert 'class="badge big invalid"' in html
    assert "link_down" in html and "not linearizable" in html  # fault window + lin window on the plots
    assert 'class="stuck"' in html  # the failing op highlighted in the linearizability table
    assert 'href="nodes/n1.log"' in html and 'href="events.jsonl"' in html
    assert "toxiproxy 2.5.0" in html  # recorded versions win over the renderer's


def test_svg_ids_do_not_collide_between_plots(run_dir: Path) -> None:
    html = render_run(run_dir).report_path.read_text()
    ids = re.findall(r'\sid="([^"]+)"', html)
    assert len(ids) == len(set(ids))


def test_summary_follows_its_schema(run_dir: Path) -> None:
    result = render_run(run_dir)
    doc = json.loads(result.summary_path.read_text())
    assert validate_summary(doc) == []
    assert doc["schema"] == SCHEMA and doc["seed"] == 42 and doc["overall"] == "invalid"
    fault = doc["faults"][0]
    assert (fault["name"], fault["targets"], fault["t_inject"], fault["t_heal"]) == ("link_down", ["n2"], FAULT_AT, HEAL_AT)
    assert doc["ops"]["by_outcome"]["info"] == 2 and doc["ops"]["by_type"]["read"]["ok"] == 20
    assert set(doc["latency_ms"]["by_outcome"]["ok"]) == {"p50", "p90", "p99", "max"}
    assert doc["leader_changes"]["count"] == 1
    assert doc["recovery"][0]["leader_s"] is not None
    window = next(w for w in doc["peer_request_windows"] if w["link"] == "n1->n2")
    assert window["during"]["counts"]["requests_with_ops"] == 0
    assert window["during"]["counts"]["status_only_requests"] > 0
    assert window["before"]["counts"]["requests_with_ops"] > 0
    assert doc["linearizability_windows"][0]["key"] == "k1"


def test_validate_summary_names_what_is_wrong() -> None:
    problems = validate_summary({"schema": "other/9", "seed": True})
    assert any("schema" in p for p in problems) and any("'seed'" in p for p in problems)
    assert any("missing key 'faults'" in p for p in problems)


def test_peer_counters_are_carried_over_a_new_leadership() -> None:
    events = _samples()
    series, resets = peer_series(node_samples(events))
    assert set(series) == {"n1->n2", "n1->n3", "n2->n1", "n2->n3"}
    for points in series.values():
        for a, b in zip(points, points[1:], strict=False):
            assert all(b.counts[k] >= a.counts[k] for k in a.counts)
    during = request_counts(series["n1->n2"], FAULT_AT, HEAL_AT - 0.05)
    assert during["requests_with_ops"] == 0 and during["heartbeat_sends"] > 0
    assert set(during) == set(REQUEST_KINDS)


def test_a_reset_within_one_link_is_carried_over() -> None:
    def sample(t: float, term: int, ops: int) -> dict[str, Any]:
        return {"t": t, "kind": "sample", "node": "n1",
                "status": _status("n1", "LEADER", term, "n1", 1, {"n2": _peer(ops, 0, 0)})}
    events = [sample(1, 1, 5), sample(2, 1, 9), sample(3, 3, 2), sample(4, 3, 4)]
    series, resets = peer_series(node_samples(events))
    assert [p.counts["requests_with_ops"] for p in series["n1->n2"]] == [5, 9, 11, 13]
    assert resets["n1->n2"] == 1


def _cas(t: float, frm: Any, to: Any, **completion: Any) -> list[dict[str, Any]]:
    return [{"t": t, "kind": "invoke", "process": 5, "f": "cas", "key": "k0", "value": [frm, to], "node": "n1"},
            {"t": t + 0.01, "kind": "fail", "process": 5, "f": "cas", "key": "k0", "value": [frm, to],
             "node": "n1", "latency_s": 0.01, **completion}]


def test_a_failed_compare_says_what_it_found_and_a_refused_cas_its_error() -> None:
    compare, refused = client_ops(_cas(1.0, "a", "b", error=None, observed="z") + _cas(2.0, "a", "b", error="not_leader"))
    assert (compare.outcome, compare.remark) == ("fail", "compare failed: found 'z'")
    assert (refused.outcome, refused.remark) == ("fail", "not_leader")


def test_a_failed_compare_in_the_failing_window(run_dir: Path) -> None:
    path = run_dir / "events.jsonl"
    events = [e for e in map(json.loads, path.read_text().splitlines()) if e.get("key") != "k1"]
    # k0 holds v38 from 5.42 on: a compare with v38 after that cannot have failed.
    events += _cas(5.9, "v38", "w", error=None, observed="v0")
    path.write_text("".join(json.dumps(e) + "\n" for e in events))
    result = render_run(run_dir)
    lin = next(v for v in result.verdicts if v["checker"] == "linearizable")
    assert lin["validity"] == "invalid" and lin["details"]["anomaly"]["stuck_op"]["f"] == "cas"
    html = result.report_path.read_text()
    assert "compare failed: found &#39;v0&#39;" in html
    durability = next(v for v in result.verdicts if v["checker"] == "durability")
    assert durability["validity"] != "invalid"  # a failed compare wrote nothing


def test_a_run_without_client_ops_renders(run_dir: Path) -> None:
    path = run_dir / "events.jsonl"
    events = [e for e in map(json.loads, path.read_text().splitlines()) if e["kind"] not in ("invoke", "ok", "fail", "info")]
    path.write_text("".join(json.dumps(e) + "\n" for e in events))
    html = render_run(run_dir).report_path.read_text()
    assert "no client operations" in html and html.count('class="plot"') == 5


def test_render_without_recheck_uses_saved_verdicts(run_dir: Path) -> None:
    (run_dir / "verdicts.json").write_text(json.dumps({"schema": 1, "test": "t::x", "outcome": "passed",
        "verdicts": [{"checker": "durability", "validity": "valid", "summary": "fine", "details": {}}]}))
    path = render_for_pytest(run_dir)
    html = path.read_text()
    assert path == run_dir / "report.html"
    assert "has not been run on this run" in html  # no linearizability verdict was saved
    assert json.loads((run_dir / "summary.json").read_text())["overall"] == "valid"


def test_recheck_keeps_plugin_fields_and_suite_verdicts(run_dir: Path) -> None:
    (run_dir / "verdicts.json").write_text(json.dumps({"schema": 1, "test": "t::x", "outcome": "failed",
        "verdicts": [{"checker": "suite_bound", "validity": "valid", "summary": "ok", "details": {}}]}))
    render_run(run_dir)
    doc = json.loads((run_dir / "verdicts.json").read_text())
    assert doc["test"] == "t::x" and doc["outcome"] == "failed" and doc["verdict"] == "invalid"
    assert {v["checker"] for v in doc["verdicts"]} >= {"suite_bound", "linearizable", "durability"}


def test_cli_report_exit_codes(run_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["report", str(run_dir)]) == 1
    out = capsys.readouterr().out
    assert "invalid  linearizable" in out and str(run_dir / "report.html") in out
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["report", str(empty)]) == 254  # bad input, not an unknown verdict
    assert main(["report", str(tmp_path / "missing")]) == 254
    err = capsys.readouterr().err
    assert "not a run directory" in err and "is not a directory" in err and "Traceback" not in err


@pytest.mark.parametrize("argv", [["frob"], ["report"], ["report", "--bogus", "x"], ["check"]])
def test_cli_bad_arguments_are_one_line(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(argv) == 254
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and err.startswith("raftchaos: ")


def test_cli_check(run_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", str(run_dir / "events.jsonl")]) == 1
    assert main(["check", str(tmp_path / "nope.jsonl")]) == 254


def _section(html: str, start: str, end: str) -> str:
    return html[html.index(start):html.index(end)]


def test_fault_windows_table_is_rendered(run_dir: Path) -> None:
    result = render_run(run_dir)
    windows = next(v for v in result.verdicts if v["checker"] == "windows")
    assert windows["validity"] == "valid", windows["summary"]
    html = result.report_path.read_text()
    assert 'href="#windows"' in html
    section = _section(html, '<h2 id="windows">', '<h2 id="peers-table">')
    assert section.count('<table class="fault-windows">') == 1 and "Fault #0: link_down(n2)" in section
    assert '<span class="badge valid">valid</span>' in section
    assert [w for w in ("before", "during", "after") if f"<td>{w}</td>" in section] == ["before", "during", "after"]
    assert '<tr class="faulted">' in section
    for header in ("success", "p50", "p99", "leader changes", "<th>n2 (target)</th>", "<th>n3</th>"):
        assert header in section
    assert "<td class=\"num\">80%</td>" in section  # 2 of 10 ops timed out while n2 was cut off
    assert "0 / 14 / 14" in section  # n2 got status-only heartbeats and no ops during the fault
    doc = json.loads(result.summary_path.read_text())
    assert validate_summary(doc) == []
    during = doc["fault_windows"][0]["windows"]["during"]
    assert during["success_rate"] == 0.8 and during["ops"] == {"ok": 8, "fail": 0, "info": 2, "compare_failed": 0}
    assert during["peers"]["n2"] == {"requests_with_ops": 0, "status_only_requests": 14, "heartbeat_sends": 14}
    assert doc["fault_windows"][0]["windows"]["after"]["leader_changes"] == 1  # n1 killed, n2 took over


def test_a_run_judged_without_the_windows_checker_says_so(run_dir: Path) -> None:
    (run_dir / "verdicts.json").write_text(json.dumps({"schema": 1, "verdicts": [
        {"checker": "durability", "validity": "valid", "summary": "fine", "details": {}}]}))
    html = render_for_pytest(run_dir).read_text()
    assert "The windows checker has not been run on this run" in html
    assert '<table class="fault-windows">' not in html
    assert json.loads((run_dir / "summary.json").read_text())["fault_windows"] == []


def test_validate_summary_checks_fault_windows_only_when_present(run_dir: Path) -> None:
    doc = json.loads(render_run(run_dir).summary_path.read_text())
    doc["fault_windows"][0]["windows"].pop("after")
    assert any("fault_windows[0].windows" in p for p in validate_summary(doc))
    del doc["fault_windows"]  # an optional key added under the same schema: older summaries lack it
    assert validate_summary(doc) == []


def test_terminal_report_prints_a_line_per_fault_window(run_dir: Path) -> None:
    render_run(run_dir)
    text = render_text([run_dir], width=240)
    line = next(x for x in text.splitlines() if "synthetic link_down(n2): success" in x)
    assert "success 100%→80%→100%" in line and "leader changes 0→0→1" in line
    assert "to n2 ops/st-only/hb 56/1/1→0/14/14→40/0/0" in line
