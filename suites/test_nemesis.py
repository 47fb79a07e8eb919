"""Seeded random nemesis: network, process and flag faults mixed under a workload; durability and recovery.

The schedule is a value expanded from the test's seed (printed; ``pytest --seed N`` replays it and
``raftchaos replay RUN_DIR`` re-executes the recorded ``schedule.jsonl``). The nemesis heals
everything before the plugin's teardown runs the final reads and the checkers (durability,
recovery, linearizability); an invalid verdict fails the test there.

``--nemesis-duration-s S`` (``suites/conftest.py``) stretches the random schedules to S seconds
with proportionally more faults (same hold times and gaps); ``make nightly`` runs the families
over many seeds that way. The seed alone still decides the plan: the same seed and duration
replay the same schedule.
"""

from __future__ import annotations

from typing import Any

import pytest

from faults.nemesis import read_schedule
from faults.packages import FLAGS, NETWORK, PROCESS, STORAGE, mixed_package, random_package
from harness.schedule import StepOp, plan_text
from harness.systems.base import Capability
from suites._helpers import wait_ok_ops

pytestmark = [pytest.mark.chaos, pytest.mark.nemesis]

# What each family's faults need from the system under test (``pytest --system NAME``): a family
# the system cannot serve on this backend is skipped with the reason, never run with fewer faults.
_LINKS = pytest.mark.requires(Capability.PER_DIRECTED_LINK_PROXIES)
_FLAGS = pytest.mark.requires(Capability.RUNTIME_FLAGS, Capability.FAULT_EXIT_STATUSES)
FAMILIES = [
    pytest.param("mixed", marks=[_LINKS, _FLAGS]),
    pytest.param("network", marks=_LINKS),
    pytest.param("process", marks=pytest.mark.requires(Capability.KILL, Capability.PAUSE)),
    pytest.param("flags", marks=_FLAGS),
    pytest.param("storage", marks=[pytest.mark.requires(Capability.SYNC_LEDGER), pytest.mark.kuduraft_only(
        reason="power loss replays kuduraft's sync ledger; corruption targets its WAL format")]),
]

COUNT = 6
LIMIT_S = 10.0


def schedule_size(duration_s: float | None) -> tuple[int, float]:
    """(fault count, time limit) of a schedule ``duration_s`` long: the default density of
    ``COUNT`` faults per ``LIMIT_S`` seconds, never fewer than ``COUNT``."""
    if duration_s is None:
        return COUNT, LIMIT_S
    return max(COUNT, round(COUNT * duration_s / LIMIT_S)), float(duration_s)


def test_same_seed_gives_the_same_schedule(raftchaos_seed: int) -> None:
    package = mixed_package(COUNT, limit_s=LIMIT_S)
    first = plan_text(package.steps(raftchaos_seed))
    assert first == plan_text(package.steps(raftchaos_seed))
    assert first != plan_text(package.steps(raftchaos_seed + 1))
    kinds = {line.fault.name for line in package.steps(raftchaos_seed) if line.fault is not None}
    assert kinds, "the plan injects something"


@pytest.mark.slow
@pytest.mark.parametrize("family", FAMILIES)
def test_random_schedule_keeps_acknowledged_writes(make_cluster: Any, workload: Any, raftchaos_seed: int,
                                                   family: str, request: pytest.FixtureRequest) -> None:
    faults = {"mixed": NETWORK + PROCESS + FLAGS, "network": NETWORK, "process": PROCESS, "flags": FLAGS,
              "storage": STORAGE}[family]
    count, limit_s = schedule_size(request.config.getoption("--nemesis-duration-s", default=None))
    package = random_package(family, faults, count, (0.5, 1.5), 0.5, limit_s)
    cluster = make_cluster(nodes=3, supervisor=True)
    print(f"seed={raftchaos_seed}\n{plan_text(package.steps(raftchaos_seed))}")
    with workload(cluster, clients=3, rate_hz=30.0):
        wait_ok_ops(cluster, what="acknowledged writes before the first fault")
        nemesis = package.run(cluster, raftchaos_seed)  # ends with the final heal
        cluster.wait_for_leader(cluster.timing.new_leader_within_s() * 2)
        wait_ok_ops(cluster, what="acknowledged writes after the final heal")
    assert nemesis.errors == [], nemesis.errors
    executed = read_schedule(cluster.run.schedule_path)
    planned = package.steps(raftchaos_seed)
    assert [(x["op"], x["slot"], x.get("fault")) for x in executed] == [
        (s.op.value, s.slot, s.fault.name if s.fault else None) for s in planned]
    injected = [x for x in executed if x["op"] == StepOp.INJECT.value and "targets" in x]
    assert all(x["term"] is not None or x["targets"] == [] for x in injected)
