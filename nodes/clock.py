"""Time source for the node's timers: the event loop in production, a fake clock in unit tests."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Protocol


class TimerHandle(Protocol):
    """A scheduled callback that can be cancelled before it runs."""

    def cancel(self) -> None: ...


class Clock(Protocol):
    """Monotonic seconds plus one-shot callbacks.

    Every time-dependent piece of consensus (heartbeats, failure detector, last-contact ages)
    goes through this so the peer logic can be driven step by step in tests without sockets
    or sleeps.
    """

    def now(self) -> float: ...

    def call_later(self, delay_s: float, fn: Callable[[], None]) -> TimerHandle: ...


class LoopClock:
    """The asyncio event loop's monotonic clock."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop

    def now(self) -> float:
        return self._loop.time()

    def call_later(self, delay_s: float, fn: Callable[[], None]) -> TimerHandle:
        return self._loop.call_later(max(0.0, delay_s), fn)
