"""TimingProfile: flags handed to nodes and the bounds derived from them."""

from __future__ import annotations

import pytest

from harness.errors import ConfigError
from harness.timing import TimingProfile


def test_fast_profile_flags_use_kuduraft_names() -> None:
    flags = TimingProfile.fast().flags()
    assert flags["raft_heartbeat_interval_ms"] == 100
    assert flags["consensus_rpc_timeout_ms"] == 500
    assert flags["leader_failure_max_missed_heartbeat_periods"] == 3.0
    assert flags["raft_log_cache_proxy_wait_time_ms"] == 100


def test_derived_bounds_follow_the_flags() -> None:
    t = TimingProfile(heartbeat_interval_ms=200, missed_heartbeat_periods=4, rpc_timeout_ms=1000,
                      backoff_max_delta_ms=5000)
    assert t.heartbeat_s == pytest.approx(0.2)
    assert t.jitter_window_s == pytest.approx((0.15, 0.25))
    assert t.failure_timeout_s == pytest.approx(0.8)
    assert t.fd_snooze_window_s == pytest.approx((0.8, 1.2))
    assert t.election_backoff_max_s(0) == pytest.approx(1.2)
    assert t.election_backoff_max_s(20) == pytest.approx(5.0)  # capped
    assert t.rpc_timeout_s == pytest.approx(1.0)
    expected = 1.2 + (1.2 + 1.8 + 2.7 + 4.05) + 2 * 1.0
    assert t.new_leader_within_s() == pytest.approx(expected)


def test_kuduraft_profile_matches_kuduraft_defaults() -> None:
    t = TimingProfile.kuduraft()
    assert t.failure_timeout_s == pytest.approx(1.5)
    assert t.backoff_cap_s == pytest.approx(20.0)
    assert t.proxy_failure_threshold_s == pytest.approx(2 * t.failure_timeout_s)


def test_from_flags_overrides_only_named_fields() -> None:
    t = TimingProfile.from_flags({"raft_heartbeat_interval_ms": 50, "unrelated": 1})
    assert t.heartbeat_interval_ms == 50 and t.rpc_timeout_ms == TimingProfile().rpc_timeout_ms


@pytest.mark.parametrize(
    "kwargs",
    [{"heartbeat_interval_ms": 0}, {"rpc_timeout_ms": -5}, {"missed_heartbeat_periods": 0.5},
     {"backoff_max_delta_ms": 100}, {"heartbeat_interval_ms": True}],
)
def test_invalid_profiles_rejected(kwargs: dict) -> None:
    with pytest.raises(ConfigError):
        TimingProfile(**kwargs)
