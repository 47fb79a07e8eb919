"""ClusterSpec validation, serialization and flag merging."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.errors import ConfigError
from harness.spec import BackendName, ClusterSpec, node_ids
from harness.timing import TimingProfile


def test_defaults_are_three_local_nodes() -> None:
    spec = ClusterSpec()
    assert spec.nodes == ("n1", "n2", "n3")
    assert spec.backend is BackendName.LOCAL
    assert spec.majority == 2


@pytest.mark.parametrize("count", [0, 8, -1, True, 2.0, "3"])
def test_node_count_out_of_range_or_wrong_type(count: object) -> None:
    with pytest.raises(ConfigError, match="node_count"):
        ClusterSpec(node_count=count)  # type: ignore[arg-type]


@pytest.mark.parametrize("count", [1, 7])
def test_node_count_bounds_accepted(count: int) -> None:
    assert ClusterSpec(node_count=count).nodes == node_ids(count)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"flags": {"Bad-Name": 1}}, "not a flag name"),
        ({"flags": {"x": [1]}}, "non-scalar"),
        ({"flags": {"raft_heartbeat_interval_ms": 50}}, "timing profile"),
        ({"node_flags": {"n9": {"x": 1}}}, "unknown node 'n9'"),
        ({"topology": {"n3": "n3"}}, "fed by itself"),
        ({"topology": {"n3": "n7"}}, "unknown proxy 'n7'"),
        ({"topology": {"n9": "n1"}}, "unknown peer 'n9'"),
        ({"topology": {"n2": "n3", "n3": "n2"}}, "cycle"),
        ({"backend": "k8s"}, "backend must be one of"),
        ({"seed": -1}, "seed"),
        ({"seed": "7"}, "seed"),
        ({"test_name": "a b/c"}, "test_name"),
    ],
)
def test_invalid_specs_name_the_problem(kwargs: dict, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        ClusterSpec(**kwargs)


def test_spec_is_immutable() -> None:
    spec = ClusterSpec(flags={"follower_fail_all_prepare": True})
    with pytest.raises(TypeError):
        spec.flags["x"] = 1  # type: ignore[index]
    with pytest.raises(AttributeError):
        spec.seed = 3  # type: ignore[misc]


def test_flags_merge_timing_then_global_then_node() -> None:
    spec = ClusterSpec(flags={"raft_enable_pre_election": False, "kv_x": 1},
                       node_flags={"n2": {"kv_x": 2, "raft_heartbeat_interval_ms": 50}})
    n1, n2 = spec.node_flags_for("n1"), spec.node_flags_for("n2")
    assert n1["raft_heartbeat_interval_ms"] == 100 and n1["kv_x"] == 1
    assert n1["raft_enable_pre_election"] is False
    assert n2["raft_heartbeat_interval_ms"] == 50 and n2["kv_x"] == 2
    with pytest.raises(ConfigError):
        spec.node_flags_for("n4")


def test_json_round_trip() -> None:
    spec = ClusterSpec(node_count=5, flags={"follower_fail_all_prepare": True},
                       node_flags={"n3": {"raft_proxy_max_hops": 2}}, topology={"n3": "n2"},
                       backend="docker", seed=42, run_dir=Path("/tmp/x"), test_name="t1",
                       timing=TimingProfile.kuduraft())
    again = ClusterSpec.from_json(spec.to_json())
    assert again == spec
    assert again.backend is BackendName.DOCKER


def test_from_json_rejects_unknown_fields_and_garbage() -> None:
    with pytest.raises(ConfigError, match="unknown field"):
        ClusterSpec.from_dict({"nodes": 3})
    with pytest.raises(ConfigError, match="not JSON"):
        ClusterSpec.from_json("{")
    with pytest.raises(ConfigError, match="timing"):
        ClusterSpec.from_dict({"timing": {"heartbeat": 3}})


def test_str_is_a_readable_one_liner() -> None:
    text = str(ClusterSpec(seed=9, topology={"n3": "n2"}, test_name="demo"))
    assert "demo" in text and "seed=9" in text and "n3<-n2" in text and "\n" not in text


def test_node_seeds_are_deterministic_and_distinct() -> None:
    spec = ClusterSpec(seed=5)
    assert spec.node_seed("n1", 1) == ClusterSpec(seed=5).node_seed("n1", 1)
    assert len({spec.node_seed(n, i) for n in spec.nodes for i in (1, 2)}) == 6
