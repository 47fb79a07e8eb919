"""Runtime flags with kuduraft's names and defaults, validated at start and on every change."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any


class FlagError(ValueError):
    """A flag name or value the node refuses; the message names the flag and the problem."""


@dataclass(frozen=True)
class FlagDef:
    name: str
    kind: type
    default: Any
    help: str
    min_value: float | None = None
    max_value: float | None = None


def _f(name: str, kind: type, default: Any, help: str, lo: float | None = None,
       hi: float | None = None) -> FlagDef:
    return FlagDef(name, kind, default, help, lo, hi)


FRACTION = (0.0, 1.0)

FLAG_DEFS: tuple[FlagDef, ...] = (
    _f("raft_heartbeat_interval_ms", int, 500, "base period P of every peer heartbeat timer", 1),
    _f("leader_failure_max_missed_heartbeat_periods", float, 3.0, "failure timeout = this x P", 1.0),
    _f("snooze_for_leader_ban_ratio", float, 1.0, "FD snooze after an accepted update", 0.0),
    _f("leader_failure_exp_backoff_max_delta_ms", int, 20000, "cap of the election back-off", 1),
    _f("enable_leader_failure_detection", bool, True, "master switch of the failure detector"),
    _f("raft_enable_pre_election", bool, True, "run a pre-election before a real election"),
    _f("consensus_rpc_timeout_ms", int, 30000, "timeout of UpdateConsensus and proxy RPCs", 1),
    _f("consensus_max_batch_size_bytes", int, 1048576, "max serialized ops per request", 1),
    _f("follower_unavailable_considered_failed_sec", int, 300, "no contact this long => FAILED", 1),
    _f("update_peer_health_status", bool, True, "recompute peer health after RequestForPeer"),
    _f("raft_proxy_max_hops", int, 16, "TTL put on every proxied request", 0),
    _f("raft_enable_multi_hop_proxy_routing", bool, False, "proxies route via their own table"),
    _f("raft_log_cache_proxy_wait_time_ms", int, 500, "proxy wait for the first proxied op", 0),
    _f("enable_flexi_raft", bool, False, "region-aware quorums (not implemented; must stay false)"),
    _f("safe_time_advancement_without_writes", bool, True, "status-only requests carry safe time"),
    _f("fault_crash_on_leader_request_fraction", float, 0.0, "P(exit 85) before each leader send",
       *FRACTION),
    _f("fault_crash_after_leader_request_fraction", float, 0.0,
       "P(exit 85) on each reply the leader processes", *FRACTION),
    _f("consensus_inject_latency_ms_in_notifications", int, 0, "sleep U[0,N) ms per notification", 0),
    _f("follower_reject_update_consensus_requests", bool, False, "follower fails every Update"),
    _f("follower_fail_all_prepare", bool, False, "follower fails prepare of every write op"),
    _f("follower_fail_prepare_with_rotate_event", bool, False,
       "raftchaos: follower answers CANNOT_PREPARE with 'Previous Rotate Event with' (B9)"),
    _f("fault_crash_before_cmeta_flush", float, 0.0, "P(exit 85) before each metadata flush",
       *FRACTION),
    _f("fault_crash_before_append_commit", float, 0.0, "P(exit 85) before applying a commit",
       *FRACTION),
    _f("fault_crash_before_write_log_segment_header", float, 0.0,
       "P(exit 85) each time a WAL segment is started", *FRACTION),
    _f("log_inject_io_error_on_append_fraction", float, 0.0, "P(fatal IO error) per WAL append",
       *FRACTION),
    _f("log_inject_io_error_on_preallocate_fraction", float, 0.0,
       "P(fatal IO error, exit 74) each time a WAL segment is started", *FRACTION),
    _f("log_inject_latency", bool, False, "sleep N(mean, stddev) ms in every WAL sync"),
    _f("log_inject_latency_ms_mean", int, 100, "mean of the injected WAL sync latency", 0),
    _f("log_inject_latency_ms_stddev", int, 100, "stddev of the injected WAL sync latency", 0),
    _f("log_inject_thread_lifecycle_latency_ms", int, 0,
       "WAL writer pauses U[0,N) ms each time it goes idle and wakes", 0),
    _f("raft_proxy_failure_threshold_ms", int, 3000,
       "raftchaos: proxy unusable after this long without contact (kuduraft: 2 x MET)", 1),
    _f("raft_proxy_failure_lag_ops", int, 1000, "raftchaos: proxy unusable when this far behind", 0),
    _f("kv_op_timeout_ms", int, 5000, "raftchaos: a client op not committed by then answers timeout",
       1),
)

_BY_NAME = {d.name: d for d in FLAG_DEFS}

REFUSED_FLAGS: dict[str, str] = {
    "log_cache_size_limit_mb": "the log cache has no size limit without log GC, which this node "
                               "lacks",
    "global_log_cache_size_limit_mb": "the log cache has no size limit without log GC, which this "
                                      "node lacks",
    "raft_enable_tombstoned_voting": "this node has no tombstoned replicas (no tablet deletion)",
    "evict_failed_followers": "this node never evicts followers (no config change)",
    "raft_prepare_replacement_before_eviction": "this node never evicts or replaces followers",
    "raft_attempt_to_replace_replica_without_majority": "this node never replaces replicas",
    "synchronous_transfer_leadership": "this node has no leadership transfer",
    "raft_get_node_instance_timeout_ms": "this node never sends GetNodeInstance",
}
"""kuduraft flags whose effect needs machinery this node lacks: refused by name, at start and on
PUT /flags, rather than accepted and ignored (a chaos run would report "survived" for a fault
that never happened)."""


def parse_value(defn: FlagDef, raw: Any) -> Any:
    """Turn a command-line string or JSON value into the flag's type, or raise FlagError."""
    name = defn.name
    if defn.kind is bool:
        if isinstance(raw, bool):
            value: Any = raw
        elif isinstance(raw, str) and raw.lower() in ("true", "1", "yes", "on"):
            value = True
        elif isinstance(raw, str) and raw.lower() in ("false", "0", "no", "off"):
            value = False
        else:
            raise FlagError(f"flag {name}: expected true or false, got {raw!r}")
        return value
    if isinstance(raw, bool):
        raise FlagError(f"flag {name}: expected a number, got {raw!r}")
    try:
        value = defn.kind(raw)
        if defn.kind is int and isinstance(raw, float) and raw != int(raw):
            raise ValueError
    except (TypeError, ValueError, OverflowError):  # OverflowError: int(inf), float(10**400) from JSON
        raise FlagError(f"flag {name}: expected {defn.kind.__name__}, got {raw!r}") from None
    if isinstance(value, float) and not math.isfinite(value):
        raise FlagError(f"flag {name}: must be finite, got {raw!r}")
    if defn.min_value is not None and value < defn.min_value:
        raise FlagError(f"flag {name}: must be >= {defn.min_value}, got {value}")
    if defn.max_value is not None and value > defn.max_value:
        raise FlagError(f"flag {name}: must be <= {defn.max_value}, got {value}")
    return value


class Flags:
    """The node's current flag values; read on every use so runtime changes take effect."""

    def __init__(self, overrides: Mapping[str, Any] | None = None) -> None:
        self._values: dict[str, Any] = {d.name: d.default for d in FLAG_DEFS}
        self._listeners: list[Callable[[str, Any], None]] = []
        for name, raw in (overrides or {}).items():
            self._values[name] = parse_value(self._defn(name), raw)
        self.validate_invariants(self._values)

    @staticmethod
    def _defn(name: str) -> FlagDef:
        try:
            return _BY_NAME[name]
        except KeyError:
            if name in REFUSED_FLAGS:
                raise FlagError(f"flag {name}: refused, this node lacks what it acts on: "
                                f"{REFUSED_FLAGS[name]}") from None
            raise FlagError(f"unknown flag {name!r}") from None

    @staticmethod
    def known(name: str) -> bool:
        """A kuduraft flag this node knows: one it implements, or one it refuses by name."""
        return name in _BY_NAME or name in REFUSED_FLAGS

    @staticmethod
    def validate_invariants(values: Mapping[str, Any]) -> None:
        """Timing relations kuduraft relies on; broken ones make elections or heartbeats nonsense."""
        hb = values["raft_heartbeat_interval_ms"]
        met = hb * values["leader_failure_max_missed_heartbeat_periods"]
        if values["leader_failure_exp_backoff_max_delta_ms"] < met:
            raise FlagError(
                "flag leader_failure_exp_backoff_max_delta_ms "
                f"({values['leader_failure_exp_backoff_max_delta_ms']}) must be >= the failure "
                f"timeout raft_heartbeat_interval_ms x leader_failure_max_missed_heartbeat_periods "
                f"({met:g} ms)")
        if values["enable_flexi_raft"]:
            raise FlagError("flag enable_flexi_raft: flexi-raft quorums are not implemented")

    def __getitem__(self, name: str) -> Any:
        return self._values[name]

    def get(self, name: str) -> Any:
        self._defn(name)
        return self._values[name]

    def set(self, name: str, raw: Any) -> Any:
        """Change a flag at runtime; invariants are re-checked before the change is kept."""
        defn = self._defn(name)
        value = parse_value(defn, raw)
        candidate = dict(self._values)
        candidate[name] = value
        self.validate_invariants(candidate)
        self._values[name] = value
        for listener in list(self._listeners):
            listener(name, value)
        return value

    def on_change(self, listener: Callable[[str, Any], None]) -> None:
        self._listeners.append(listener)

    def as_dict(self) -> dict[str, Any]:
        return dict(self._values)

    # Derived timings, in seconds, used all over consensus.
    @property
    def heartbeat_s(self) -> float:
        return float(self["raft_heartbeat_interval_ms"]) / 1000.0

    @property
    def failure_timeout_s(self) -> float:
        """kuduraft's MinimumElectionTimeout (MET)."""
        return self.heartbeat_s * float(self["leader_failure_max_missed_heartbeat_periods"])

    @property
    def rpc_timeout_s(self) -> float:
        return float(self["consensus_rpc_timeout_ms"]) / 1000.0


def parse_flag_args(items: Iterable[str]) -> dict[str, Any]:
    """Parse repeated ``name=value`` command-line items, naming the first bad one."""
    out: dict[str, Any] = {}
    for item in items:
        name, sep, raw = item.partition("=")
        if not sep or not name:
            raise FlagError(f"--flag expects name=value, got {item!r}")
        defn = Flags._defn(name.strip())
        out[defn.name] = parse_value(defn, raw.strip())
    return out


def describe_flags() -> list[dict[str, Any]]:
    return [{"name": d.name, "type": d.kind.__name__, "default": d.default, "help": d.help}
            for d in FLAG_DEFS]
