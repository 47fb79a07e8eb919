"""Kuduraft timing flags scaled for fast suites, and every time bound derived from them.

kuduraft's defaults (facebook/kuduraft, src/kudu/consensus/): ``raft_heartbeat_interval_ms`` 500
(time_manager.cc), ``leader_failure_max_missed_heartbeat_periods`` 3.0 and
``leader_failure_exp_backoff_max_delta_ms`` 20000 and ``raft_log_cache_proxy_wait_time_ms`` 500
(raft_consensus.cc), ``consensus_rpc_timeout_ms`` 30000 (consensus_queue.cc). kuduraft has no flag
for the proxy failure threshold: RaftConsensus::Start calls
``queue->SetProxyFailureThreshold(2 * MinimumElectionTimeout())`` = 3000 ms; our node exposes it as
``raft_proxy_failure_threshold_ms`` so suites can scale it. In multiples of P (and MET = 3P):
RPC timeout 60 P = 20 MET, back-off cap 40 P, proxy wait 1 P, proxy failure threshold 6 P = 2 MET.
The behaviours depend on these ratios (B20: a black-holed request stays pending for 20 MET, so the
follower's failure detector fires long before the leader's request times out), so ``fast()``
divides every one of them by the same factor and keeps every ratio.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from typing import Any

from harness.errors import ConfigError

# kuduraft flag name for each TimingProfile field.
FLAG_NAMES: Mapping[str, str] = {
    "heartbeat_interval_ms": "raft_heartbeat_interval_ms",
    "missed_heartbeat_periods": "leader_failure_max_missed_heartbeat_periods",
    "rpc_timeout_ms": "consensus_rpc_timeout_ms",
    "backoff_max_delta_ms": "leader_failure_exp_backoff_max_delta_ms",
    "proxy_wait_time_ms": "raft_log_cache_proxy_wait_time_ms",
    "proxy_failure_threshold_ms": "raft_proxy_failure_threshold_ms",
    "kv_op_timeout_ms": "kv_op_timeout_ms",
}

KUDURAFT_DEFAULTS: Mapping[str, int | float] = {
    "heartbeat_interval_ms": 500,
    "missed_heartbeat_periods": 3.0,
    "rpc_timeout_ms": 30000,
    "backoff_max_delta_ms": 20000,
    "proxy_wait_time_ms": 500,
    "proxy_failure_threshold_ms": 3000,
}
# Fields whose value is a duration in ms (scaled by a profile's factor); missed_heartbeat_periods is a
# count of periods and is never scaled. kv_op_timeout_ms is ours, not kuduraft's.
SCALED_FIELDS = ("heartbeat_interval_ms", "rpc_timeout_ms", "backoff_max_delta_ms", "proxy_wait_time_ms",
                 "proxy_failure_threshold_ms")
FAST_FACTOR = 5  # fast(): every kuduraft duration divided by 5 (P = 100 ms)

JITTER = 0.25  # kuduraft's PeriodicTimer jitter: every period is drawn from [(1-j)P, (1+j)P].


@dataclass(frozen=True)
class TimingProfile:
    """The timing flags handed to every node, and the bounds suites derive from them.

    Suites use the properties here (``failure_timeout_s``, ``new_leader_within_s``, ...) instead
    of typed-in numbers, so a profile change moves every bound with it. ``fast()`` is kuduraft's
    defaults with every duration divided by 5 (P = 100 ms, RPC timeout 6 s = 20 MET, back-off cap
    4 s), so every ratio the behaviours depend on is kuduraft's; ``kuduraft()`` is kuduraft's own
    defaults. A suite that needs another value sets it itself (``make_cluster(flags=...)``) and
    says why. The constructor's defaults are fast()'s.
    """

    heartbeat_interval_ms: int = 100
    missed_heartbeat_periods: float = 3.0
    rpc_timeout_ms: int = 6000
    backoff_max_delta_ms: int = 4000
    proxy_wait_time_ms: int = 100
    proxy_failure_threshold_ms: int = 600
    kv_op_timeout_ms: int = 2000

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
                raise ConfigError(f"timing {f.name} must be a positive number, got {value!r}")
        if self.missed_heartbeat_periods < 1.0:
            raise ConfigError("timing missed_heartbeat_periods must be >= 1")
        if self.backoff_max_delta_ms < self.failure_timeout_s * 1000:
            raise ConfigError(
                f"timing backoff_max_delta_ms ({self.backoff_max_delta_ms}) must be >= the failure "
                f"timeout heartbeat_interval_ms x missed_heartbeat_periods "
                f"({self.failure_timeout_s * 1000:g} ms)")

    @classmethod
    def scaled(cls, factor: int, kv_op_timeout_ms: int) -> TimingProfile:
        """kuduraft's defaults with every duration divided by ``factor`` (every ratio kept)."""
        if isinstance(factor, bool) or not isinstance(factor, int) or factor < 1:
            raise ConfigError(f"timing scale factor must be an integer >= 1, got {factor!r}")
        uneven = [name for name in SCALED_FIELDS if KUDURAFT_DEFAULTS[name] % factor]
        if uneven:
            raise ConfigError(f"timing scale factor {factor} does not divide {', '.join(uneven)} evenly")
        ms = {name: int(KUDURAFT_DEFAULTS[name]) // factor for name in SCALED_FIELDS}
        return cls(heartbeat_interval_ms=ms["heartbeat_interval_ms"],
                   missed_heartbeat_periods=KUDURAFT_DEFAULTS["missed_heartbeat_periods"],
                   rpc_timeout_ms=ms["rpc_timeout_ms"], backoff_max_delta_ms=ms["backoff_max_delta_ms"],
                   proxy_wait_time_ms=ms["proxy_wait_time_ms"],
                   proxy_failure_threshold_ms=ms["proxy_failure_threshold_ms"], kv_op_timeout_ms=kv_op_timeout_ms)

    @classmethod
    def fast(cls) -> TimingProfile:
        """The default for suites: kuduraft / 5 (P = 100 ms, MET = 300 ms, RPC timeout 6 s).

        kv_op_timeout_ms (ours: how long the KV endpoint waits for its op to commit) stays 2 s:
        long enough for a commit through a failover-free cluster, short enough that a client op
        cut off by a fault is answered indeterminate within a few MET.
        """
        return cls.scaled(FAST_FACTOR, kv_op_timeout_ms=2000)

    @classmethod
    def kuduraft(cls) -> TimingProfile:
        """kuduraft's defaults (P = 500 ms, RPC timeout 30 s, back-off cap 20 s); op timeout 5 s."""
        return cls.scaled(1, kv_op_timeout_ms=5000)

    @classmethod
    def from_flags(cls, flags: Mapping[str, Any], base: TimingProfile | None = None) -> TimingProfile:
        """A profile whose fields come from kuduraft flag names in ``flags`` (others from ``base``)."""
        values = asdict(base or cls())
        for field_name, flag in FLAG_NAMES.items():
            if flag in flags:
                values[field_name] = flags[flag]
        return cls(**values)

    def flags(self) -> dict[str, int | float]:
        """The kuduraft flags (name -> value) every node is started with."""
        return {flag: getattr(self, field_name) for field_name, flag in FLAG_NAMES.items()}

    def to_dict(self) -> dict[str, int | float]:
        return asdict(self)

    # ---- derived bounds, all in seconds ------------------------------------------------------

    @property
    def heartbeat_s(self) -> float:
        """P: the base period of every heartbeat timer."""
        return self.heartbeat_interval_ms / 1000.0

    @property
    def jitter_window_s(self) -> tuple[float, float]:
        """[0.75P, 1.25P]: where each jittered heartbeat period falls."""
        return (self.heartbeat_s * (1 - JITTER), self.heartbeat_s * (1 + JITTER))

    @property
    def failure_timeout_s(self) -> float:
        """MET = missed periods x P: kuduraft's MinimumElectionTimeout (failure-detector period)."""
        return self.heartbeat_s * self.missed_heartbeat_periods

    @property
    def fd_snooze_window_s(self) -> tuple[float, float]:
        """[MET, 1.5 MET]: how far an accepted update pushes a follower's failure detector."""
        met = self.failure_timeout_s
        return (met, 1.5 * met)

    @property
    def vote_withhold_s(self) -> float:
        """MET: a follower refuses votes this long after an accepted update."""
        return self.failure_timeout_s

    @property
    def step_down_snooze_s(self) -> float:
        """2 MET: the failure-detector snooze after a leader steps down."""
        return 2 * self.failure_timeout_s

    @property
    def backoff_cap_s(self) -> float:
        """The cap of the randomized election back-off window."""
        return self.backoff_max_delta_ms / 1000.0

    def election_backoff_max_s(self, failed_elections: int) -> float:
        """Upper bound of the back-off after ``failed_elections`` failures: min(MET x 1.5^(n+1), cap)."""
        if failed_elections < 0:
            raise ConfigError(f"failed_elections must be >= 0, got {failed_elections}")
        return min(self.failure_timeout_s * 1.5 ** (failed_elections + 1), self.backoff_cap_s)

    @property
    def rpc_timeout_s(self) -> float:
        """Timeout of UpdateConsensus and proxied RPCs."""
        return self.rpc_timeout_ms / 1000.0

    @property
    def proxy_wait_s(self) -> float:
        """How long a proxy node waits for the first proxied op to reach its own log."""
        return self.proxy_wait_time_ms / 1000.0

    @property
    def proxy_failure_threshold_s(self) -> float:
        """A proxy node unheard of this long is considered failed (kuduraft: 2 MET)."""
        return self.proxy_failure_threshold_ms / 1000.0

    @property
    def kv_op_timeout_s(self) -> float:
        """A client op not committed by then is answered 503 timeout (indeterminate)."""
        return self.kv_op_timeout_ms / 1000.0

    @property
    def client_timeout_s(self) -> float:
        """HTTP timeout for client ops: the node's own op timeout plus one RPC timeout of slack."""
        return self.kv_op_timeout_s + self.rpc_timeout_s

    def new_leader_within_s(self, election_rounds: int = 4) -> float:
        """Bound on electing a new leader after the old one is gone.

        The followers' detectors expire at most 1.5 MET after the last accepted update; then up to
        ``election_rounds`` (pre-)election attempts, each waiting at most its back-off window, plus
        two RPC timeouts of slack for votes in flight.
        """
        backoffs = sum(self.election_backoff_max_s(n) for n in range(election_rounds))
        return self.fd_snooze_window_s[1] + backoffs + 2 * self.rpc_timeout_s

    @property
    def first_leader_within_s(self) -> float:
        """Bound on the first election of a fresh cluster (process start-up included)."""
        return self.new_leader_within_s() + 5.0

    @property
    def peer_failed_within_s(self) -> float:
        """Bound for a leader to see a cut peer fail: one RPC timeout plus a jittered heartbeat."""
        return self.rpc_timeout_s + self.jitter_window_s[1]
