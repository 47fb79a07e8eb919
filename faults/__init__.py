"""Concrete faults implementing harness.fault's Fault protocol: network, process and runtime-flag faults."""

from faults.base import bounded
from faults.flags import (
    FlagFault,
    crash_after_leader_request,
    crash_on_leader_request,
    flag_fault,
    follower_fail_all_prepare,
    follower_fail_prepare_with_rotate_event,
    follower_reject_updates,
    runtime_flags,
)
from faults.network import CutLink, Direction, LinkLatency, Mode, link_latency, partition
from faults.partition import Partition
from faults.process import Kill, Pause, Restart, kill, pause, paused, restart, resume, stopped, terminate

__all__ = [
    "CutLink", "Direction", "FlagFault", "Kill", "LinkLatency", "Mode", "Partition", "Pause", "Restart",
    "bounded", "crash_after_leader_request", "crash_on_leader_request", "flag_fault",
    "follower_fail_all_prepare", "follower_fail_prepare_with_rotate_event", "follower_reject_updates",
    "kill", "link_latency", "partition", "pause", "paused", "restart", "resume", "runtime_flags",
    "stopped", "terminate",
]
