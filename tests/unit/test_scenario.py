"""Scenario files: the shipped incidents parse; every kind of mistake is one clear ScenarioError; symptoms."""

from __future__ import annotations

from pathlib import Path

import pytest

from faults.scenario import ScenarioError, load_scenario, parse_scenario
from harness.schedule import StepOp, plan
from harness.symptoms import evaluate

INCIDENTS = Path(__file__).resolve().parents[2] / "incidents"
GOOD = """
seed = 5
[cluster]
nodes = 3
[cluster.flags]
consensus_rpc_timeout_ms = 1500
follower_fail_all_prepare = false
[[timeline]]
at_s = 1.0
for_s = 2.0
fault = "isolate"
params = { target = "n2", mode = "blackhole" }
[[expect]]
symptom = "peer_pending"
min_s = "rpc_timeout"
"""


@pytest.mark.parametrize("path", sorted(INCIDENTS.glob("*.toml")), ids=lambda p: p.stem)
def test_shipped_incidents_parse(path: Path) -> None:
    scenario = load_scenario(path)
    assert scenario.expect and scenario.entries and scenario.seed is not None


def test_good_scenario() -> None:
    s = parse_scenario(GOOD, "good.toml")
    assert s.timing.rpc_timeout_ms == 1500 and "consensus_rpc_timeout_ms" not in s.flags
    assert s.flags == {"follower_fail_all_prepare": False}
    assert s.duration_s == 5.0  # timeline end + 2 s
    steps = plan(s.schedule(), s.resolve_seed())
    assert [(x.offset_s, x.op) for x in steps] == [(1.0, StepOp.INJECT), (3.0, StepOp.HEAL)]
    assert s.cluster_spec(5).timing.rpc_timeout_ms == 1500


@pytest.mark.parametrize("text,message", [
    ("seed = [", "not valid TOML"),
    ("colour = 1", "unknown key"),
    ("[cluster]\nnodes = 9", "cluster.nodes must be at most 7"),
    ("[cluster]\nprofile = 'slow'", "profile must be one of"),
    ("[cluster]\nwat = 1", r"\[cluster\]: unknown key"),
    ("[[timeline]]\nat_s = 1\nfault = 'nope'", r"timeline\[0\]: unknown fault"),
    ("[[timeline]]\nfault = 'pause'", "needs fault and at_s"),
    ("[[timeline]]\nat_s = 1\nfault = 'pause'\nparams = { target = 'n1', x = 1 }", "unknown parameter"),
    ("[[timeline]]\nat_s = -1\nfault = 'pause'", "at_s must be a non-negative"),
    ("duration_s = 1\n[[timeline]]\nat_s = 1\nfor_s = 3\nfault = 'pause'", "ends before the timeline"),
    ("[[expect]]\nsymptom = 'sneezes'", "unknown symptom"),
    ("[[expect]]\nsymptom = 'peer_pending'\nmin_s = 'forever'", "unknown bound"),
    ("[[expect]]\nsymptom = 'leader_exits'\nat_least = 'two'", "non-negative int"),
    ("[cluster.flags]\nraft_heartbeat_interval_ms = -1", "raft_heartbeat_interval_ms: must be >= 1"),
    # issue #10 item 6: every input is refused before anything starts, naming the file and the entry
    ("duration_s = 1e308", "duration_s must be at most 86400"),
    ("duration_s = -5", "duration_s must be a non-negative number"),
    ("duration_s = nan", "duration_s must be a non-negative number"),
    ("duration_s = 'long'", "duration_s must be a non-negative number"),
    ("# only a comment\n", "no timeline and no duration"),
    ("", "no timeline and no duration"),
    ("[[timeline]]\nat_s = 1\nfault = 'pause'\nparams = { target = 'n9' }", r"target 'n9': unknown node\(s\) n9"),
    ("[cluster]\nnodes = 5\n[[timeline]]\nat_s = 1\nfault = 'isolate'\nparams = { groups = [['n1'], ['n6']] }",
     "groups 'n6'"),
    ("[cluster]\nnodes = 2\n[[timeline]]\nat_s = 1\nfault = 'pause'\nparams = { target = 'minority' }",
     "minority target needs at least 3 nodes"),
    ("[[timeline]]\nat_s = 1e309\nfault = 'pause'", "at_s must be a non-negative number"),
    ("[[timeline]]\nat_s = 1\nfor_s = [5, 2]\nfault = 'pause'", "lo <= hi"),
    ("[[timeline]]\nat_s = 1\nfault = 3", "fault must be a string"),
    ("[[timeline]]\nat_s = 1\nfault = 'flag'\nparams = { name = 'nosuch', value = 1 }", "unknown flag 'nosuch'"),
    ("[cluster.flags]\nnosuch = 1\n[[timeline]]\nat_s = 1\nfault = 'pause'", "cluster.flags: unknown flag 'nosuch'"),
    ("[cluster.node_flags.n2]\nconsensus_rpc_timeout_ms = 'soon'", "expected int"),
    ("[cluster]\nnode_flags = 3", "node_flags] must be a table"),
    ("[cluster]\nsupervisor = 'yes'", "cluster.supervisor must be true or false"),
    ("[cluster]\nnodes = 0", "cluster.nodes must be an integer >= 1"),
    ("[workload]\nclients = 2.5", "workload.clients must be a"),
    ("[workload]\nrate_hz = -1", "workload.rate_hz must be a non-negative number"),
    ("[workload]\nenabled = 'no'", "workload.enabled must be true or false"),
    ("seed = -1", "seed must be a non-negative integer"),
    ("expect = 3", "expect must be an array"),
    ("name = 5\nduration_s = 1", "name must be a string"),
])
def test_scenario_errors_are_one_clear_line(text: str, message: str) -> None:
    with pytest.raises(ScenarioError, match=message) as info:
        parse_scenario(text, "bad.toml")
    assert str(info.value).startswith("bad.toml") and "\n" not in str(info.value)


def _sample(t: float, node: str, role: str, term: int, peers: dict | None = None) -> dict:  # type: ignore[type-arg]
    return {"t": t, "kind": "sample", "node": node,
            "status": {"role": role, "term": term, "leader": "n1", "peers": peers or {}}}


def test_symptoms_on_a_small_history() -> None:
    spec = {"node_count": 2, "timing": {"rpc_timeout_ms": 1000, "heartbeat_interval_ms": 100,
                                        "missed_heartbeat_periods": 3.0, "backoff_max_delta_ms": 2000,
                                        "proxy_wait_time_ms": 100, "proxy_failure_threshold_ms": 600,
                                        "kv_op_timeout_ms": 2000}}
    events = [{"t": 0.0, "kind": "note", "text": "cluster starting", "spec": spec}]
    for i in range(12):
        t = 0.1 * i
        pending = 1 <= i <= 11
        events.append(_sample(t, "n1", "LEADER", 1, {"n2": {"request_pending": pending, "failed_attempts": i // 6}}))
        events.append(_sample(t, "n2", "FOLLOWER", 1))
    events.append({"t": 1.3, "kind": "node", "node": "n1", "event": "exit", "code": 85})
    assert evaluate(events, "peer_pending", {"min_s": "rpc_timeout", "factor": 0.9}).held
    assert not evaluate(events, "peer_pending", {"min_s": 1.5}).held
    assert evaluate(events, "failed_attempts", {"peer": "n2", "at_least": 1}).held
    assert evaluate(events, "leader_exits", {"at_least": 1}).held
    assert not evaluate(events, "leader_exits", {"at_least": 2}).held


def test_a_non_utf8_scenario_is_one_line(tmp_path: Path) -> None:
    path = tmp_path / "latin1.toml"
    path.write_bytes("name = 'caf\u00e9'\nduration_s = 1\n".encode("latin-1"))
    with pytest.raises(ScenarioError, match=r"latin1.toml: not UTF-8 text \(byte 0xe9 at offset 11\)"):
        load_scenario(path)


def test_a_duration_alone_is_a_scenario() -> None:
    assert parse_scenario("duration_s = 3", "steady.toml").duration_s == 3.0


def test_up_may_build_a_scenario_without_work() -> None:
    assert parse_scenario("name = 'up'\n[cluster]\nnodes = 3", "raftchaos up", require_work=False).entries == ()
