"""Shared plumbing of the concrete faults: parameter checks, target parsing, time-bounded application."""

from __future__ import annotations

import math
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from enum import Enum
from typing import TYPE_CHECKING, Any, TypeVar

from harness.errors import FaultError
from harness.fault import Fault, FaultRecord, Target, applied

if TYPE_CHECKING:
    from harness.cluster import Cluster

E = TypeVar("E", bound=Enum)


def as_target(value: Target | str, what: str = "target") -> Target:
    """A Target from a Target or its text (``leader``, ``followers``, ``n1,n3``); FaultError otherwise."""
    if isinstance(value, Target):
        return value
    if not isinstance(value, str) or not value.strip():
        raise FaultError(f"{what} must be a Target or a non-empty string like 'leader' or 'n2', got {value!r}")
    return Target.parse(value.strip())


def as_enum(kind: type[E], value: Any, what: str) -> E:
    """``value`` as a member of ``kind`` (a member or its value); FaultError listing the choices otherwise."""
    try:
        return kind(value)
    except ValueError:
        choices = ", ".join(repr(m.value) for m in kind)
        raise FaultError(f"{what} must be one of {choices}, got {value!r}") from None


def check_known(cluster: Cluster, target: Target, what: str = "target") -> None:
    """Unknown node ids are a bug in the suite, not an unavailable fault: raise instead of skipping."""
    unknown = [i for i in target.ids if i not in cluster.nodes]
    if unknown:
        raise FaultError(f"{what} {target}: unknown node(s) {', '.join(unknown)} "
                         f"(nodes are {', '.join(cluster.nodes)})")


def check_number(name: str, value: Any, low: float, high: float, integer: bool = False) -> float:
    """``value`` as a number within [low, high]; FaultError naming the parameter otherwise."""
    if (isinstance(value, bool) or not isinstance(value, int | float) or (integer and not isinstance(value, int))
            or not math.isfinite(value)):
        kind = "an int" if integer else "a number"
        raise FaultError(f"{name} must be {kind}, got {value!r}")
    number = float(value) if not integer else value
    if not low <= number <= high:
        raise FaultError(f"{name} must be within [{low:g}, {high:g}], got {value!r}")
    return number


def check_duration(for_s: float | None) -> float | None:
    if for_s is None:
        return None
    return check_number("for_s", for_s, 0.0, 3600.0)


@contextmanager
def bounded(fault: Fault, cluster: Cluster, for_s: float | None = None) -> Iterator[FaultRecord]:
    """``applied`` (availability, setup, inject, heal + teardown in ``finally``), and when
    ``for_s`` is given the fault is also healed by a timer after ``for_s`` seconds even if the
    block is still running: every fault is bounded in time. The timer's heal error, if any, is
    re-raised by the final heal (which retries)."""
    for_s = check_duration(for_s)
    timer: threading.Timer | None = None
    with applied(fault, cluster) as record:
        if for_s is not None:
            def timed_heal() -> None:
                try:
                    fault.heal(cluster)
                except Exception:  # noqa: BLE001 - the final heal in applied() retries and reports
                    pass
            timer = threading.Timer(for_s, timed_heal)
            timer.name = f"heal-{fault.name}"
            timer.daemon = True
            timer.start()
        try:
            yield record
        finally:
            if timer is not None:
                timer.cancel()
                timer.join()
