"""Waiting as a strategy (timeout, poll interval, tolerated transient errors) built on tenacity.

``wait_until`` is the one primitive; the cluster waits (a leader, a new leader, caught-up nodes)
are predicates over a ``StatusSource`` (the Cluster, or a fake in unit tests). On timeout every
wait raises WaitTimeout with what it waited for, the last problem seen and each node's last log
lines. No bare polling loops anywhere else.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception_type,
    retry_if_result,
    stop_after_delay,
    wait_fixed,
)

from harness.errors import NodeUnreachable, WaitTimeout

T = TypeVar("T")
Status = Mapping[str, Any]


@dataclass(frozen=True)
class WaitStrategy:
    """How to wait: give up after ``timeout_s``, check every ``poll_s``, treat ``transient``
    exceptions as "not yet" instead of failing at once."""

    timeout_s: float
    poll_s: float = 0.05
    transient: tuple[type[BaseException], ...] = (NodeUnreachable,)


class _NotYet:
    """The predicate's falsy result, kept so the timeout can say what it last saw."""

    def __init__(self, value: object) -> None:
        self.value = value


def wait_until(
    predicate: Callable[[], T],
    *,
    what: str,
    strategy: WaitStrategy,
    log_tails: Callable[[], Mapping[str, Sequence[str]]] | None = None,
    describe: Callable[[], str | None] | None = None,
) -> T:
    """Call ``predicate`` until it returns a truthy value, and return that value.

    Exceptions in ``strategy.transient`` count as "not yet"; any other exception propagates at
    once. On timeout raises WaitTimeout naming ``what``, with ``describe()`` (or the last
    transient error / falsy result) and ``log_tails()``.
    """

    def attempt() -> T | _NotYet:
        value = predicate()
        return value if value else _NotYet(value)

    last: list[str] = []

    def remember(state: RetryCallState) -> None:
        outcome = state.outcome
        if outcome is None:
            return
        if outcome.failed:
            exc = outcome.exception()
            last[:] = [f"{type(exc).__name__}: {exc}"]
        else:
            last[:] = [f"predicate returned {outcome.result().value!r}"]

    retrying = Retrying(
        stop=stop_after_delay(strategy.timeout_s),
        wait=wait_fixed(strategy.poll_s),
        retry=retry_if_exception_type(strategy.transient) | retry_if_result(lambda r: isinstance(r, _NotYet)),
        before_sleep=remember,
        retry_error_callback=lambda state: _NotYet(None),
        reraise=False,
    )
    result = retrying(attempt)
    if not isinstance(result, _NotYet):
        return result
    problem = describe() if describe is not None else None
    problem = problem or (last[0] if last else None)
    raise WaitTimeout(what, strategy.timeout_s, problem, log_tails() if log_tails else None)


class StatusSource(Protocol):
    """What the cluster waits need: node ids, one /status doc per node, log tails."""

    @property
    def nodes(self) -> tuple[str, ...]: ...

    def statuses(self) -> dict[str, Status | None]: ...

    def log_tails(self, lines: int = 20) -> dict[str, list[str]]: ...


def agreed_leader(statuses: Mapping[str, Status | None], cluster_size: int) -> str | None:
    """The leader a majority agrees on: a node in role LEADER whose id and term a majority of all
    nodes report (the leader counts itself). None while there is no such node."""
    majority = cluster_size // 2 + 1
    for node_id, st in statuses.items():
        if not st or st.get("role") != "LEADER":
            continue
        term = st.get("term")
        votes = sum(1 for other in statuses.values()
                    if other and other.get("term") == term
                    and (other.get("leader") == node_id or other is st))
        if votes >= majority:
            return node_id
    return None


def _status_summary(statuses: Mapping[str, Status | None]) -> str:
    parts = []
    for node_id, st in statuses.items():
        if not st:
            parts.append(f"{node_id}=down")
        else:
            parts.append(f"{node_id}={st.get('role')}/t{st.get('term')}/leader={st.get('leader')}"
                         f"/commit={st.get('commit_index')}/applied={st.get('applied_index')}")
    return ", ".join(parts)


class _Watch:
    """Keeps the last statuses seen, so a timeout can describe them."""

    def __init__(self, source: StatusSource) -> None:
        self.source = source
        self.last: dict[str, Status | None] = {}

    def poll(self) -> dict[str, Status | None]:
        self.last = self.source.statuses()
        return self.last

    def describe(self) -> str | None:
        return _status_summary(self.last) if self.last else None


def wait_for_leader(source: StatusSource, strategy: WaitStrategy, exclude: Sequence[str] = (),
                    min_term: int = 0) -> str:
    """Wait until a majority agrees on a leader not in ``exclude`` with term >= ``min_term``."""
    watch = _Watch(source)

    def check() -> str | None:
        statuses = watch.poll()
        leader = agreed_leader(statuses, len(source.nodes))
        if leader is None or leader in exclude:
            return None
        st = statuses[leader]
        return leader if st is not None and int(st.get("term", 0)) >= min_term else None

    what = "an agreed leader" + (f" other than {', '.join(exclude)}" if exclude else "")
    if min_term:
        what += f" in term >= {min_term}"
    found = wait_until(check, what=what, strategy=strategy, log_tails=source.log_tails,
                       describe=watch.describe)
    assert found is not None  # wait_until returns only truthy results
    return found


def wait_for_new_leader(source: StatusSource, old_leader: str | None, old_term: int | None,
                        strategy: WaitStrategy) -> str:
    """Wait for a leader elected after ``old_leader``/``old_term``: a different node, or any node
    in a higher term (the old leader may legitimately win again after a restart)."""
    exclude = () if old_leader is None or old_term is not None else (old_leader,)
    min_term = (old_term + 1) if old_term is not None else 0
    return wait_for_leader(source, strategy, exclude=exclude, min_term=min_term)


def wait_caught_up(source: StatusSource, strategy: WaitStrategy, nodes: Sequence[str] | None = None,
                   target_index: int | None = None) -> int:
    """Wait until every node in ``nodes`` (default: all) has committed and applied at least
    ``target_index`` (default: the agreed leader's commit index when the wait starts, so a
    running workload cannot keep the target moving). Returns the target index."""
    watch = _Watch(source)
    wanted = tuple(nodes) if nodes is not None else source.nodes
    if target_index is None:
        leader = wait_for_leader(source, strategy)
        st = source.statuses().get(leader) or {}
        target_index = int(st.get("commit_index", 0))
    target = target_index

    def check() -> bool:
        statuses = watch.poll()
        return all((st := statuses.get(n)) is not None
                   and int(st.get("commit_index", -1)) >= target
                   and int(st.get("applied_index", -1)) >= target for n in wanted)

    wait_until(check, what=f"{', '.join(wanted)} to commit and apply index {target}",
               strategy=strategy, log_tails=source.log_tails, describe=watch.describe)
    return target
