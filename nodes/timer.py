"""kuduraft's PeriodicTimer (rpc/periodic.cc): a jittered repeating task that can be snoozed."""

from __future__ import annotations

import random
from collections.abc import Callable

from nodes.clock import Clock, TimerHandle


class PeriodicTimer:
    """Runs ``task`` roughly every ``period_s``; each delay is drawn from [(1-j)P, (1+j)P].

    Semantics kept from kuduraft because the suites measure them: ``start`` does not fire at
    once; ``snooze()`` moves the due time to now + a fresh jittered period (the last snooze
    wins, it is not additive); ``snooze(d)`` moves it to now + d exactly; snoozing a stopped
    timer does nothing; after the task runs the timer snoozes itself.
    """

    def __init__(
        self,
        clock: Clock,
        period_s: float,
        task: Callable[[], None],
        rng: random.Random,
        jitter: float = 0.25,
    ) -> None:
        if period_s <= 0:
            raise ValueError(f"timer period must be positive, got {period_s}")
        self._clock = clock
        self.period_s = period_s
        self._task = task
        self._rng = rng
        self._jitter = jitter
        self._handle: TimerHandle | None = None
        self._running = False
        self.due_at: float | None = None
        self.snoozes = 0

    @property
    def running(self) -> bool:
        return self._running

    def jittered_period(self) -> float:
        """One delay drawn uniformly from the jitter window around the period."""
        lo = self.period_s * (1 - self._jitter)
        hi = self.period_s * (1 + self._jitter)
        return self._rng.uniform(lo, hi)

    def start(self, first_delay_s: float | None = None) -> None:
        """Arm the timer; a no-op when already started (as in kuduraft)."""
        if self._running:
            return
        self._running = True
        self._arm(self.jittered_period() if first_delay_s is None else first_delay_s)

    def stop(self) -> None:
        self._running = False
        self.due_at = None
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None

    def snooze(self, delay_s: float | None = None) -> None:
        """Push the next run to now + delay (a fresh jittered period when None)."""
        if not self._running:
            return
        self.snoozes += 1
        self._arm(self.jittered_period() if delay_s is None else delay_s)

    def _arm(self, delay_s: float) -> None:
        if self._handle is not None:
            self._handle.cancel()
        self.due_at = self._clock.now() + delay_s
        self._handle = self._clock.call_later(delay_s, self._fire)

    def _fire(self) -> None:
        self._handle = None
        if not self._running:
            return
        # Self-snooze before the task, so a task that snoozes (or stops) the timer wins.
        self._arm(self.jittered_period())
        self._task()
