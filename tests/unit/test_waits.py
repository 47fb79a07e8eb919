"""Waits over a fake status source: leaders, new leaders, catch-up, transient errors, timeouts."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from harness.errors import NodeUnreachable, WaitTimeout
from harness.waits import (
    WaitStrategy,
    agreed_leader,
    wait_caught_up,
    wait_for_leader,
    wait_for_new_leader,
    wait_until,
)

FAST = WaitStrategy(timeout_s=2.0, poll_s=0.001)
SHORT = WaitStrategy(timeout_s=0.05, poll_s=0.001)


def st(role: str, term: int, leader: str | None, commit: int = 0, applied: int = 0) -> dict[str, Any]:
    return {"role": role, "term": term, "leader": leader, "commit_index": commit, "applied_index": applied}


class FakeSource:
    """Hands out one scripted statuses snapshot per poll (the last one repeats)."""

    nodes = ("n1", "n2", "n3")

    def __init__(self, *snapshots: dict[str, dict[str, Any] | None]) -> None:
        self._snapshots: Iterator[dict[str, dict[str, Any] | None]] = iter(snapshots)
        self._last: dict[str, dict[str, Any] | None] = {}
        self.polls = 0

    def statuses(self) -> dict[str, dict[str, Any] | None]:
        self.polls += 1
        self._last = next(self._snapshots, self._last)
        return self._last

    def log_tails(self, lines: int = 20) -> dict[str, list[str]]:
        return {n: [f"{n} last line"] for n in self.nodes}


NO_LEADER = {"n1": st("CANDIDATE", 1, None), "n2": st("FOLLOWER", 1, None), "n3": None}
N1_LEADS = {"n1": st("LEADER", 2, "n1", 5, 5), "n2": st("FOLLOWER", 2, "n1", 5, 5),
            "n3": st("FOLLOWER", 2, "n1", 3, 3)}


def test_agreed_leader_needs_a_majority_in_the_same_term() -> None:
    assert agreed_leader(N1_LEADS, 3) == "n1"
    lonely = {"n1": st("LEADER", 2, "n1"), "n2": st("FOLLOWER", 3, None), "n3": None}
    assert agreed_leader(lonely, 3) is None
    stale = {"n1": st("LEADER", 2, "n1"), "n2": st("FOLLOWER", 3, "n3"), "n3": st("LEADER", 3, "n3")}
    assert agreed_leader(stale, 3) == "n3"
    assert agreed_leader({"n1": st("LEADER", 1, "n1")}, 1) == "n1"


def test_wait_for_leader_polls_until_agreement() -> None:
    source = FakeSource(NO_LEADER, NO_LEADER, N1_LEADS)
    assert wait_for_leader(source, FAST) == "n1"
    assert source.polls == 3


def test_timeout_carries_last_statuses_and_log_tails() -> None:
    with pytest.raises(WaitTimeout) as info:
        wait_for_leader(FakeSource(NO_LEADER), SHORT)
    err = info.value
    assert err.timeout_s == SHORT.timeout_s and "n3=down" in (err.last_problem or "")
    assert err.node_logs["n2"] == ["n2 last line"]
    assert "last log lines of n1" in str(err)


def test_new_leader_excludes_old_or_requires_a_later_term() -> None:
    n2_leads = {"n1": None, "n2": st("LEADER", 3, "n2"), "n3": st("FOLLOWER", 3, "n2")}
    assert wait_for_new_leader(FakeSource(N1_LEADS, n2_leads), "n1", None, FAST) == "n2"
    n1_again = {k: (dict(v, term=4) if v else v) for k, v in N1_LEADS.items()}
    assert wait_for_new_leader(FakeSource(N1_LEADS, n1_again), "n1", 2, FAST) == "n1"
    with pytest.raises(WaitTimeout):
        wait_for_new_leader(FakeSource(N1_LEADS), "n1", 2, SHORT)


def test_caught_up_targets_the_leaders_commit_index_at_call_time() -> None:
    later = {"n1": st("LEADER", 2, "n1", 9, 9), "n2": st("FOLLOWER", 2, "n1", 5, 5),
             "n3": st("FOLLOWER", 2, "n1", 5, 5)}
    assert wait_caught_up(FakeSource(N1_LEADS, N1_LEADS, later), FAST) == 5
    with pytest.raises(WaitTimeout, match="commit and apply index 5"):
        wait_caught_up(FakeSource(N1_LEADS), SHORT)


def test_transient_errors_are_tolerated_others_propagate() -> None:
    calls = iter([NodeUnreachable("x"), NodeUnreachable("y"), "done"])

    def flaky() -> str:
        value = next(calls)
        if isinstance(value, Exception):
            raise value
        return value

    assert wait_until(flaky, what="flaky", strategy=FAST) == "done"

    def broken() -> bool:
        raise KeyError("bug")

    with pytest.raises(KeyError):
        wait_until(broken, what="broken", strategy=FAST)


def test_persistent_transient_error_is_named_on_timeout() -> None:
    def down() -> bool:
        raise NodeUnreachable("n1 refused")

    with pytest.raises(WaitTimeout, match="n1 refused"):
        wait_until(down, what="n1", strategy=SHORT)
