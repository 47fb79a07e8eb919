"""TimingProfile: flags handed to nodes and the bounds derived from them."""

from __future__ import annotations

import pytest

from harness.errors import ConfigError
from harness.timing import KUDURAFT_DEFAULTS, SCALED_FIELDS, TimingProfile


def test_fast_profile_flags_use_kuduraft_names() -> None:
    flags = TimingProfile.fast().flags()
    assert flags["raft_heartbeat_interval_ms"] == 100
    assert flags["consensus_rpc_timeout_ms"] == 6000
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


def test_fast_profile_keeps_every_kuduraft_ratio() -> None:
    """Issue #11 item 6: fast() is kuduraft's defaults scaled by one factor, so every
    kuduraft-derived duration has kuduraft's ratio to P (B20 needs RPC timeout = 20 MET)."""
    fast, real = TimingProfile.fast(), TimingProfile.kuduraft()
    assert set(SCALED_FIELDS) | {"missed_heartbeat_periods"} == set(KUDURAFT_DEFAULTS)
    for name in SCALED_FIELDS:
        assert getattr(fast, name) / fast.heartbeat_interval_ms == pytest.approx(
            getattr(real, name) / real.heartbeat_interval_ms), name
    assert fast.missed_heartbeat_periods == real.missed_heartbeat_periods
    assert fast.rpc_timeout_s / fast.failure_timeout_s == pytest.approx(20.0)
    assert fast.proxy_failure_threshold_s == pytest.approx(2 * fast.failure_timeout_s)
    assert TimingProfile() == fast


def test_kuduraft_profile_is_kuduraft_flag_defaults() -> None:
    """The values cited from kuduraft's DEFINE_* (time_manager.cc, raft_consensus.cc,
    consensus_queue.cc) and RaftConsensus::Start's 2 x MinimumElectionTimeout()."""
    flags = TimingProfile.kuduraft().flags()
    assert flags["raft_heartbeat_interval_ms"] == 500
    assert flags["leader_failure_max_missed_heartbeat_periods"] == 3.0
    assert flags["consensus_rpc_timeout_ms"] == 30000
    assert flags["leader_failure_exp_backoff_max_delta_ms"] == 20000
    assert flags["raft_log_cache_proxy_wait_time_ms"] == 500
    assert flags["raft_proxy_failure_threshold_ms"] == 3000


@pytest.mark.parametrize("factor", [0, 7, True, 2.5])
def test_bad_scale_factor_rejected(factor: object) -> None:
    with pytest.raises(ConfigError, match="scale factor"):
        TimingProfile.scaled(factor, kv_op_timeout_ms=1000)  # type: ignore[arg-type]


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
