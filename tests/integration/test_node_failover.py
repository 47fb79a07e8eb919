"""Issue acceptance for the node: 3 real processes, 1,000 writes, SIGKILL the leader, nothing lost."""

from __future__ import annotations

import random
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from harness.cluster import Cluster
from harness.nodeclient import Outcome
from harness.spec import ClusterSpec

pytestmark = pytest.mark.integration

WRITES = 1000


def _write_all(cluster: Cluster, leader: str, keys: list[str]) -> dict[str, str]:
    """Write every key once through the leader's client link; returns the acknowledged ones."""
    client = cluster.node(leader)

    def put(key: str) -> tuple[str, str, Outcome]:
        value = f"v-{key}"
        return key, value, client.put(key, value, timeout_s=5.0).outcome

    acked: dict[str, str] = {}
    with ThreadPoolExecutor(max_workers=8) as pool:
        for key, value, outcome in pool.map(put, keys):
            if outcome is Outcome.OK:
                acked[key] = value
    return acked


def test_new_leader_serves_every_acknowledged_write(tmp_path: Path) -> None:
    seed = random.SystemRandom().randrange(2**31)
    print(f"seed {seed}")
    spec = ClusterSpec(node_count=3, seed=seed, run_dir=tmp_path / "run", test_name="node_failover")
    with Cluster(spec) as cluster:
        leader = cluster.wait_for_leader()
        term = cluster.status(leader)["term"]
        acked = _write_all(cluster, leader, [f"k{i:04d}" for i in range(WRITES)])
        assert len(acked) == WRITES, f"only {len(acked)} of {WRITES} writes acknowledged"

        cluster.kill(leader)
        new_leader = cluster.wait_for_new_leader(leader, term)
        client = cluster.node(new_leader)

        def read(key: str) -> tuple[str, object]:
            result = client.get(key, timeout_s=5.0)
            assert result.outcome is Outcome.OK, f"read of {key} failed: {result}"
            return key, result.body.get("value")

        with ThreadPoolExecutor(max_workers=8) as pool:
            seen = dict(pool.map(read, sorted(acked)))
        lost = {k: v for k, v in acked.items() if seen.get(k) != v}
        assert not lost, f"{len(lost)} acknowledged writes lost, e.g. {sorted(lost)[:5]}"
