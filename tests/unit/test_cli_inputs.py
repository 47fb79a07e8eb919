"""Every file the CLI reads is checked before anything starts (issue #10 item 6): a run directory's
spec.json, run.json, schedule.jsonl, events.jsonl and verdicts.json for ``replay``/``report``, a
history for ``check``, a scenario for ``run``. Bad input is one line naming the file, exit 254;
verdicts exit 0/1/2; a bug exits 255 with the traceback saved, not printed."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from harness.entry.cli import main
from harness.spec import ClusterSpec

SCHEDULE = [
    {"step": 0, "op": "inject", "slot": 1, "offset_s": 0.5, "at_s": 0.5, "t": 1.5, "fault": "pause",
     "params": {"target": "n2"}, "targets": ["n2"], "term": 1, "resolved": {}},
    {"step": 1, "op": "heal", "slot": 1, "offset_s": 1.5, "at_s": 1.5, "t": 2.5, "fault": "pause",
     "params": {"target": "n2"}},
    {"step": 2, "op": "heal-all", "slot": 2, "offset_s": 2.0, "at_s": 2.0, "t": 3.0},
]
RUN_INFO = {"name": "t", "duration_s": 3.0, "supervisor": False, "expect": [],
            "workload": {"enabled": True, "clients": 2, "rate_hz": 20.0, "keys": 4}}


@pytest.fixture(autouse=True)
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("RAFTCHAOS_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


def _run_dir(root: Path, verdict: str = "valid") -> Path:
    """A recorded run as ``raftchaos run`` leaves it (no cluster needed to read it back)."""
    run = root / "run"
    (run / "nodes").mkdir(parents=True)
    spec = ClusterSpec(node_count=3, seed=7, test_name="t")
    (run / "spec.json").write_text(spec.to_json())
    (run / "run.json").write_text(json.dumps(RUN_INFO))
    (run / "schedule.jsonl").write_text("".join(json.dumps(x) + "\n" for x in SCHEDULE))
    events = [{"t": 0.0, "kind": "note", "text": "cluster starting", "spec": spec.to_dict()},
              {"t": 0.1, "kind": "invoke", "process": 0, "f": "write", "key": "k", "value": 1, "node": "n1"},
              {"t": 0.2, "kind": "ok", "process": 0, "f": "write", "key": "k", "value": 1, "node": "n1"},
              {"t": 0.3, "kind": "invoke", "process": -1, "f": "read", "key": "k", "value": None, "node": "n1",
               "final": True},
              {"t": 0.4, "kind": "ok", "process": -1, "f": "read", "key": "k", "value": 1, "node": "n1",
               "final": True}]
    (run / "events.jsonl").write_text("".join(json.dumps(e) + "\n" for e in events))
    (run / "verdicts.json").write_text(json.dumps({
        "schema": 1, "verdict": verdict, "schedule_steps": len(SCHEDULE),
        "verdicts": [{"checker": "durability", "validity": verdict, "summary": "s", "details": {}}]}))
    return run


def _one_line_254(argv: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> str:
    assert main(argv) == 254
    err = capsys.readouterr().err.strip()
    assert message in err, err
    assert len(err.splitlines()) == 1 and "Traceback" not in err and err.startswith("raftchaos: ")
    return err


def _no_cluster(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any attempt to start a cluster fails the test: input errors must stop everything first."""
    import harness.entry.cli.runs

    def boom(*_args: Any, **_kwargs: Any) -> None:
        raise AssertionError("a cluster was started for bad input")
    monkeypatch.setattr(harness.entry.cli.runs, "execute", boom)


# ---- replay: the recorded run's files ----------------------------------------------------------

def _break(run: Path, name: str, content: bytes | None) -> None:
    if content is None:
        (run / name).unlink()
    else:
        (run / name).write_bytes(content)


@pytest.mark.parametrize("name,content,message", [
    ("schedule.jsonl", b'{"step": 0, "op": "inject", "slot": 1, "fault": "p\xe9"}\n', "schedule.jsonl: not UTF-8 text"),
    ("schedule.jsonl", "".join(json.dumps(x) + "\n" for x in SCHEDULE).encode()[:-40],
     "schedule.jsonl: torn: the last line is cut short"),
    ("schedule.jsonl", "".join(json.dumps(x) + "\n" for x in SCHEDULE[:2]).encode(),
     "holds 2 steps but the run recorded 3"),
    ("schedule.jsonl", "".join(json.dumps(x) + "\n" for x in SCHEDULE[1:]).encode(), "step numbers are not 0..1"),
    ("schedule.jsonl", b'{"step": 0, "op": "explode", "slot": 1}\n', "op must be one of"),
    ("schedule.jsonl", b'{"step": 0, "op": "inject", "slot": "one", "fault": "pause"}\n', "'slot' must be int"),
    ("schedule.jsonl", b'[1, 2]\n', "not a JSON object"),
    ("schedule.jsonl", None, "schedule.jsonl: missing"),
    ("run.json", b'{"duration_s": ', "run.json: not valid JSON"),
    ("run.json", b'{"duration_s": "long"}', "run.json: duration_s must be"),
    ("run.json", b'{"duration_s": 1e308}', "run.json: duration_s must be at most"),
    ("run.json", b'{"workload": {"clients": "two"}}', "run.json: workload.clients must be int"),
    ("run.json", b'{"supervisor": 1}', "run.json: supervisor must be bool"),
    ("run.json", b'{"workloads": 2}', "run.json: the run used 2 workloads"),
    ("run.json", b'{"expect": [["sneezes", {}]]}', "unknown symptom"),
    ("run.json", b'[]', "run.json: must be a JSON object"),
    ("run.json", b'\xff\xfe', "run.json: not UTF-8 text"),
    ("run.json", None, "run.json: missing"),
    ("spec.json", b'{"node_count": "three"}', "spec.json"),
    ("spec.json", b'\x80', "spec.json: not UTF-8 text"),
    ("events.jsonl", b'{"t": 0}\nnot json\n{"t": 1}\n', "events.jsonl:2: not a JSON event"),
    ("events.jsonl", b'{"t": 0, "text": "\xe9"}\n', "events.jsonl: not UTF-8 text"),
])
def test_replay_refuses_a_bad_recorded_file(tmp_path: Path, name: str, content: bytes | None, message: str,
                                            monkeypatch: pytest.MonkeyPatch,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    run = _run_dir(tmp_path)
    _break(run, name, content)
    _no_cluster(monkeypatch)
    _one_line_254(["replay", str(run)], message, capsys)


def test_a_whole_schedule_is_replayable(tmp_path: Path) -> None:
    from faults.replay import check_replayable

    recorded = check_replayable(_run_dir(tmp_path))
    assert [s["step"] for s in recorded.executed] == [0, 1, 2] and len(recorded.steps) == 3


# ---- report and check ----------------------------------------------------------------------------

@pytest.mark.parametrize("name,content,message", [
    ("verdicts.json", b'{"verdicts": [', "verdicts.json: not valid JSON"),
    ("verdicts.json", b'{"verdicts": [{"checker": "x", "validity": "great"}]}', "verdicts.json: verdicts must be"),
    ("events.jsonl", b'{"t": 0}\n{oops\n{"t": 1}\n', "events.jsonl:2"),
    ("events.jsonl", b'\xc3\x28\n', "events.jsonl: not UTF-8 text"),
    ("spec.json", b'{"node_count": 3, "colour": 1}', "spec.json: cluster spec: unknown field(s) colour"),
    ("schedule.jsonl", b'{"step": 0, "op": "heal", "slot": 1}', "schedule.jsonl: torn"),
    ("run.json", b'{"workload": 3}', "run.json: workload must be an object"),
])
def test_report_refuses_corrupt_run_files_and_rewrites_nothing(tmp_path: Path, name: str, content: bytes,
                                                               message: str,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    run = _run_dir(tmp_path)
    _break(run, name, content)
    before = (run / "verdicts.json").read_bytes()
    _one_line_254(["report", str(run)], message, capsys)
    assert (run / "verdicts.json").read_bytes() == before and not (run / "report.html").exists()


def test_report_exits_by_the_rechecked_verdict(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = _run_dir(tmp_path)
    code = main(["report", str(run)])
    out = capsys.readouterr().out
    assert "crashes" in out  # the crash checker is part of the re-check
    overall = json.loads((run / "verdicts.json").read_text())["verdict"]
    assert code == {"valid": 0, "invalid": 1, "unknown": 2}[overall], out


def test_report_on_a_run_with_a_real_crash_is_invalid(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = _run_dir(tmp_path)
    (run / "nodes" / "n2.log").write_text("starting\nFATAL: commit index went backwards\n")
    with (run / "events.jsonl").open("a") as fh:
        fh.write(json.dumps({"t": 0.25, "kind": "node", "process": "harness", "node": "n2", "event": "exit",
                             "code": 70}) + "\n")
    assert main(["report", str(run)]) == 1
    out = capsys.readouterr().out
    assert "node crashed: n2 exited with 70" in out
    crashes = next(v for v in json.loads((run / "verdicts.json").read_text())["verdicts"] if v["checker"] == "crashes")
    assert crashes["details"]["crashes"][0]["log_tail"][-1] == "FATAL: commit index went backwards"


@pytest.mark.parametrize("content,message", [
    (b'{"t": 0, "kind": "invoke"}\nnope\n{"t": 1}\n', "line 2: not JSON"),
    (b'\xff\n', "not UTF-8 text"),
    (b'\n\n', "holds no events"),
])
def test_check_refuses_a_corrupt_history(tmp_path: Path, content: bytes, message: str,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "h.jsonl"
    path.write_bytes(content)
    _one_line_254(["check", str(path)], message, capsys)


def test_check_missing_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _one_line_254(["check", str(tmp_path / "none.jsonl")], "is not a file", capsys)


# ---- run: the scenario, before any cluster starts -------------------------------------------------

@pytest.mark.parametrize("content,message", [
    (b"duration_s = 1e308\n", "duration_s must be at most"),
    (b"# nothing but a comment\n", "no timeline and no duration"),
    (b"name = 'caf\xe9'\n", "not UTF-8 text"),
    (b"[[timeline]]\nat_s = 1\nfault = 'pause'\nparams = { target = 'n9' }\n", "unknown node(s) n9"),
    (b"[cluster.flags]\nnosuch = 1\nduration_s = 1\n", "unknown flag 'nosuch'"),
])
def test_run_refuses_a_bad_scenario_before_starting(tmp_path: Path, content: bytes, message: str,
                                                    monkeypatch: pytest.MonkeyPatch,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "s.toml"
    path.write_bytes(content)
    _no_cluster(monkeypatch)
    err = _one_line_254(["run", str(path)], message, capsys)
    assert str(path) in err


@pytest.mark.parametrize("argv,message", [
    (["up", "--flag", "nosuch=1"], "--flag nosuch: unknown flag 'nosuch'"),
    (["up", "--flag", "raft_heartbeat_interval_ms=0"], "must be >= 1"),
    (["up", "--timeout-s", "-1"], "Invalid value for '--timeout-s'"),
    (["up", "--nodes", "0"], "Invalid value for '--nodes'"),
    (["up", "--seed", "-4"], "Invalid value for '--seed'"),
    (["down", "--timeout-s", "0"], "Invalid value for '--timeout-s'"),
    (["reproduce", "x.toml", "--times", "0"], "Invalid value for '--times'"),
    (["status", "--interval-s", "0"], "Invalid value for '--interval-s'"),
    (["run", "--seed", "-1", "x.toml"], "Invalid value for '--seed'"),
    (["run", "--runs-dir", __file__, "x.toml"], "is a file"),
    (["no-such-command"], "No such command"),
])
def test_options_out_of_range_are_254(argv: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    _one_line_254(argv, message, capsys)


# ---- exit codes of verdicts and of bugs ---------------------------------------------------------------

def test_down_exits_by_the_recorded_verdict(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    """``down`` after a real node crash: the supervisor's verdicts.json says invalid, so exit 1."""
    import harness.entry.cli.up as up

    run = _run_dir(tmp_path, verdict="invalid")
    doc = {"pid": 1, "run_id": "r", "run_dir": str(run), "control": "http://127.0.0.1:9"}
    monkeypatch.setattr(up, "live_state", lambda: doc)
    monkeypatch.setattr(up, "control", lambda *_a, **_k: {})
    monkeypatch.setattr(up, "process_alive", lambda _pid: False)
    assert main(["down"]) == 1
    assert "verdict invalid" in capsys.readouterr().out
    (run / "verdicts.json").write_text("{torn")
    assert main(["down"]) == 2  # no readable verdict: unknown, never a pass
    (run / "verdicts.json").write_text(json.dumps({"verdict": "valid"}))
    assert main(["down"]) == 0


def test_an_internal_error_is_one_line_and_255_with_the_traceback_saved(
        tmp_path: Path, home: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    import faults.scenario

    def bug(_path: Any) -> None:
        raise RuntimeError("a bug in raftchaos")
    monkeypatch.setattr(faults.scenario, "load_scenario", bug)
    assert main(["run", str(tmp_path / "s.toml")]) == 255
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    assert "internal error: RuntimeError: a bug in raftchaos" in err
    saved = list((home / "crashes").glob("*.txt"))
    assert len(saved) == 1 and "Traceback" in saved[0].read_text() and str(saved[0]) in err


def test_help_shows_the_exit_code_table(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--help"]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "254 bad input" in out and "0 valid, 1 invalid, 2 unknown" in out
