"""Fixtures for integration tests: run roots under tmp, a seeded spec factory, a live cluster."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness.cluster import Cluster
from harness.spec import ClusterSpec

SEED = int(os.environ.get("RAFTCHAOS_TEST_SEED", "20240607"))


@pytest.fixture
def runs_root(tmp_path: Path) -> Path:
    return tmp_path / "runs"


@pytest.fixture
def seed() -> int:
    print(f"raftchaos seed={SEED}")
    return SEED


@pytest.fixture
def cluster(runs_root: Path, seed: int, request: pytest.FixtureRequest) -> Iterator[Cluster]:
    """A started 3-node local cluster with an elected leader."""
    spec = ClusterSpec(node_count=3, seed=seed, test_name=request.node.name)
    with Cluster(spec, runs_root=runs_root) as c:
        print(f"run dir: {c.run_dir}")
        c.wait_for_leader()
        yield c
