"""A real short run on the local backend (3 nodes, workload, one cut link), then render_run over it."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import pytest

from harness.cluster import Cluster
from harness.fault import record_fault, record_heal
from harness.observer import Observer
from harness.spec import ClusterSpec
from harness.workload import Workload, WorkloadSpec
from reports.html import render_run
from reports.summary import validate_summary

pytestmark = pytest.mark.integration


def test_report_of_a_real_run(runs_root: Path, seed: int) -> None:
    spec = ClusterSpec(node_count=3, seed=seed, test_name="report_real_run")
    with Cluster(spec, runs_root=runs_root) as cluster:
        leader = cluster.wait_for_leader()
        Observer(cluster).start()
        workload = Workload(cluster, WorkloadSpec(clients=2, rate_per_s=20)).start()
        heartbeat_s = cluster.timing.heartbeat_interval_ms / 1000
        cluster.wait_until(lambda: workload.stats.ok >= 5, what="a few ok ops", timeout_s=10)
        follower = next(n for n in cluster.nodes if n != leader)
        link = cluster.link(leader, follower)  # the follower's inbound proxy from the leader
        link.disable()
        record = record_fault(cluster, "link_down", {"link": link.name}, [follower], cluster.term())
        time.sleep(2 * heartbeat_s)  # the fault's duration is the point here, not a poll
        link.enable()
        record_heal(cluster, record)
        ok_at_heal = workload.stats.ok
        cluster.wait_until(lambda: workload.stats.ok >= ok_at_heal + 3, what="ops after heal", timeout_s=10)
        workload.stop()
        run_dir = cluster.run_dir

    result = render_run(run_dir)
    html = result.report_path.read_text()
    assert re.findall(r'(?:src|href)\s*=\s*["\']\s*(?:https?:)?//', html, flags=re.I) == []
    assert "<script" not in html.lower()
    assert html.count('class="plot"') == 5
    assert "link_down" in html and 'href="nodes/n1.log"' in html
    names = {v["checker"] for v in result.verdicts}
    assert {"linearizable", "recovery", "durability"} <= names
    lin = next(v for v in result.verdicts if v["checker"] == "linearizable")
    assert lin["validity"] == "valid", lin["summary"]
    doc = json.loads(result.summary_path.read_text())
    assert validate_summary(doc) == []
    assert doc["faults"][0]["targets"] == [follower] and doc["faults"][0]["t_heal"] is not None
    assert doc["ops"]["by_outcome"]["ok"] >= 8
    assert any(w["link"] == f"{leader}->{follower}" for w in doc["peer_request_windows"])
