"""The Docker backend's Toxiproxy is the pinned release: the run's history records its stamped version."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.cluster import Cluster
from harness.spec import BackendName, ClusterSpec
from harness.versions import TOXIPROXY_PINNED

pytestmark = [pytest.mark.docker, pytest.mark.slow]


def test_docker_toxiproxy_is_the_pinned_release(tmp_path: Path) -> None:
    spec = ClusterSpec(node_count=3, backend=BackendName.DOCKER, test_name="docker-toxiproxy", seed=11,
                       run_dir=tmp_path / "run")  # fmt: skip
    with Cluster(spec) as cluster:
        notes = [e for e in cluster.history.events() if e["kind"] == "note" and "versions" in e]
        assert notes and notes[0]["versions"]["toxiproxy"] == TOXIPROXY_PINNED, notes
        assert notes[0]["versions"]["backend"] == "docker"
