"""Chaos suites: registers each suite's marker (``pytest suites -m recovery`` etc.) and the suites' options.

Every suite module carries ``chaos`` (registered by the plugin) and its own marker. The fixtures
the suites use (``make_cluster``, ``workload``, ``raftchaos_seed``, ``record_verdict``) come from
the raftchaos pytest plugin (``harness/entry/plugin.py``).

``--nemesis-duration-s S`` lengthens the nemesis suite's random schedules (default 10 s, six
faults) to S seconds with proportionally more faults; ``benchmarks/nightly.py`` (``make nightly``)
uses it for its deeper exploration. Out of range is a pytest usage error naming the option.

Tests marked ``safety`` end, after their own heals, with one acknowledged write on every cluster
they made (``make_cluster`` is wrapped here): a choreography pins down its invariant and stops,
and this write is what shows the recovery checker that the cluster took writes again after the
faults (without it every such run would be "unknown: no write after the heal"). A write that
cannot be acknowledged leaves that verdict unknown, as it should.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from harness.cluster import Cluster
from suites._helpers import Markers

SUITE_MARKERS = {
    "heartbeat_degradation": "B1-B8, B17, B18, B20: how a leader's traffic to a peer degrades and recovers",
    "recovery": "kill / pause / crash-all / cut-off leader: leaders come back, nothing acked is lost",
    "crash_on_leader_request": "B21, B22: leaders crash with status 85 under kuduraft's crash fractions",
    "proxy_hops": "B43-B48: replication through a proxy peer and its failure modes",
    "nemesis": "seeded random schedules of network, process and flag faults under a workload",
    "safety": "issue #12: targeted Raft hazards (commit rule, fsync before ack, terms, votes, log matching)",
    "fault_fractions": "issue #12: crash fractions drawn on every send / reply, checked statistically",
}


NEMESIS_DURATION_RANGE_S = (5.0, 3600.0)


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.getgroup("raftchaos").addoption(
        "--nemesis-duration-s", type=float, default=None, metavar="S",
        help="length of the nemesis suite's random schedules in seconds (default 10; nightly runs use more)")


def pytest_configure(config: pytest.Config) -> None:
    for marker, text in SUITE_MARKERS.items():
        config.addinivalue_line("markers", f"{marker}: chaos suite: {text}")
    duration = config.getoption("--nemesis-duration-s", default=None)
    lo, hi = NEMESIS_DURATION_RANGE_S
    if duration is not None and not lo <= duration <= hi:  # also refuses nan
        raise pytest.UsageError(f"--nemesis-duration-s must be a number of seconds in [{lo:g}, {hi:g}], got {duration}")


@pytest.fixture
def make_cluster(make_cluster: Callable[..., Cluster], request: pytest.FixtureRequest
                 ) -> Iterator[Callable[..., Cluster]]:
    """The plugin's ``make_cluster``; for ``safety`` tests, a settling write on each cluster at the
    end (see the module docstring), before the plugin's teardown heals and judges the run."""
    made: list[Cluster] = []

    def make(*args: Any, **kwargs: Any) -> Cluster:
        cluster = make_cluster(*args, **kwargs)
        made.append(cluster)
        return cluster

    yield make
    if request.node.get_closest_marker("safety") is None:
        return
    for cluster in made:
        try:
            Markers(cluster, "settled").write(1)
        except Exception as exc:  # noqa: BLE001 - the checkers judge a cluster that did not settle
            print(f"settling write on {cluster.spec.test_name} not acknowledged: {exc}")
