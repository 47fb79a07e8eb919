"""The kuduraft adapter end to end through the seam: the same smoke test as etcd's (elect, KV,
kill the leader, a new leader in a higher term) with nodes started from KuduraftSystem's
LaunchSpecs behind real per-directed-link proxies."""

from __future__ import annotations

import os
from pathlib import Path

from seamrun import SeamRun, smoke

from harness.spec import ClusterSpec
from harness.systems.kuduraft import KuduraftSystem

SEED = int(os.environ.get("RAFTCHAOS_TEST_SEED", "20240607"))


def test_kuduraft_adapter_elects_serves_and_fails_over(tmp_path: Path) -> None:
    print(f"raftchaos seed={SEED}")
    spec = ClusterSpec(node_count=3, seed=SEED, test_name="seam")
    with SeamRun(KuduraftSystem(spec), spec.nodes, tmp_path / f"kuduraft-seam-{SEED}", SEED) as run:
        smoke(run, leader_timeout_s=30.0)
    for proc in run.procs.values():
        assert proc.poll() is not None
