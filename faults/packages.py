"""Fault packages: a family of faults + a seeded schedule over them + the final heal (Jepsen's nemesis packages)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from faults.nemesis import Nemesis, check_steps
from harness.schedule import FaultSpec, Schedule, Step, hold, mix, plan, stagger, time_limit

if TYPE_CHECKING:
    from harness.cluster import Cluster

NETWORK: tuple[FaultSpec, ...] = (
    FaultSpec("isolate", {"target": "leader", "mode": "refused"}),
    FaultSpec("isolate", {"target": "one", "mode": "blackhole"}),
    FaultSpec("majority-minority", {"target": "leader", "mode": "blackhole"}),
    FaultSpec("halves", {"mode": "refused"}),
    FaultSpec("bridge", {"mode": "blackhole"}),
    FaultSpec("one-way", {"src": "leader", "mode": "blackhole"}),
    FaultSpec("latency", {"src": "leader", "latency_ms": 40, "jitter_ms": 20}),
)
PROCESS: tuple[FaultSpec, ...] = (
    FaultSpec("kill", {"target": "leader"}),
    FaultSpec("pause", {"target": "one"}),
    FaultSpec("restart", {"target": "followers"}),
)
STORAGE: tuple[FaultSpec, ...] = (
    # Only damage a correct node survives by itself: a mid-log or metadata corruption takes a node
    # out for good (it must refuse to start), which a random schedule could repeat on a majority.
    FaultSpec("power-loss", {"target": "leader"}),
    FaultSpec("power-loss", {"target": "one"}),
    FaultSpec("corrupt", {"target": "one", "file": "wal", "where": "tail", "mode": "flip"}),
)
FLAGS: tuple[FaultSpec, ...] = (
    FaultSpec("crash-on-leader-request", {"fraction": 0.05}),
    FaultSpec("follower-reject-updates", {"target": "followers"}),
    FaultSpec("follower-fail-all-prepare", {"target": "followers"}),
    FaultSpec("wal-latency", {"mean_ms": 20, "stddev_ms": 10}),
)


@dataclass(frozen=True)
class FaultPackage:
    """``schedule`` over a family of faults; running it always ends with the final heal."""

    name: str
    schedule: Schedule

    def steps(self, seed: int) -> list[Step]:
        steps = plan(self.schedule, seed)
        check_steps(steps)
        return steps

    def run(self, cluster: Cluster, seed: int | None = None) -> Nemesis:
        """Execute the plan for ``seed`` (default: the cluster's) in the foreground, final heal included."""
        nemesis = Nemesis(cluster, self.steps(cluster.spec.seed if seed is None else seed))
        nemesis.run()
        return nemesis


def random_package(name: str, faults: Sequence[FaultSpec], count: int, hold_s: tuple[float, float],
                   mean_gap_s: float, limit_s: float) -> FaultPackage:
    """``count`` faults drawn from ``faults``, each held for a random time in ``hold_s``, with random
    gaps around ``mean_gap_s``, never running past ``limit_s``."""
    return FaultPackage(name, time_limit(limit_s, stagger(mean_gap_s, mix([hold(f, hold_s) for f in faults], count))))


def mixed_package(count: int = 6, hold_s: tuple[float, float] = (0.5, 1.5), mean_gap_s: float = 0.5,
                  limit_s: float = 12.0) -> FaultPackage:
    """Network, process and flag faults mixed (the nemesis suite's default)."""
    return random_package("mixed", NETWORK + PROCESS + FLAGS, count, hold_s, mean_gap_s, limit_s)
