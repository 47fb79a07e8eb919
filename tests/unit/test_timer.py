"""PeriodicTimer (nodes/timer.py) on a fake clock: jitter window, start, snooze semantics, stop."""

from __future__ import annotations

import random

import pytest
from fakes import FakeClock

from nodes.timer import PeriodicTimer

P = 0.5
SEED = 20240611


def make_timer(seed: int = SEED, period_s: float = P) -> tuple[FakeClock, PeriodicTimer, list[float]]:
    clock = FakeClock()
    fired: list[float] = []
    timer = PeriodicTimer(clock, period_s, lambda: fired.append(clock.now()), random.Random(seed))
    return clock, timer, fired


def run_for(clock: FakeClock, duration_s: float, step_s: float = 0.001) -> None:
    end = clock.now() + duration_s
    while clock.now() < end - 1e-12:
        clock.advance(min(step_s, end - clock.now()))


def test_jitter_window_and_start_does_not_fire_at_once() -> None:
    """Each delay is uniform in [0.75P, 1.25P]; start() arms now + a jittered period, no immediate run."""
    print(f"seed={SEED}")
    clock, timer, fired = make_timer()
    timer.start()
    clock.run_due()
    assert fired == []
    run_for(clock, 200 * P, step_s=0.01)
    gaps = [b - a for a, b in zip([0.0] + fired, fired, strict=False)]
    assert len(gaps) > 100
    assert all(0.75 * P - 1e-9 <= g <= 1.25 * P + 1e-9 for g in gaps), (min(gaps), max(gaps))
    # The window is really used (not a fixed period): both ends are approached.
    assert min(gaps) < 0.8 * P and max(gaps) > 1.2 * P
    assert abs(sum(gaps) / len(gaps) - P) < 0.03 * P


def test_jittered_period_draws_fill_the_window() -> None:
    """Drawn uniformly from [0.75P, 1.25P]: quartiles of many draws sit near 0.875P, P, 1.125P."""
    print(f"seed={SEED}")
    _, timer, _ = make_timer()
    draws = sorted(timer.jittered_period() for _ in range(4000))
    assert draws[0] >= 0.75 * P and draws[-1] <= 1.25 * P
    for q, expect in ((0.25, 0.875 * P), (0.5, P), (0.75, 1.125 * P)):
        assert abs(draws[int(q * len(draws))] - expect) < 0.02 * P


def test_start_twice_is_a_noop() -> None:
    """Starting an already started timer does nothing: the due time is unchanged."""
    clock, timer, _ = make_timer()
    timer.start()
    due = timer.due_at
    clock.advance(0.1)
    timer.start()
    assert timer.due_at == due


def test_start_with_explicit_first_delay() -> None:
    """start(d) arms the first run exactly d from now (the failure detector's U[0,P) at term 0)."""
    clock, timer, fired = make_timer()
    timer.start(0.01)
    clock.advance(0.0099)
    assert fired == []
    clock.advance(0.0002)
    assert fired == [pytest.approx(0.01)]


def test_snooze_resets_not_additive_last_snooze_wins() -> None:
    """snooze() sets due = now + fresh jittered period; two snoozes do not add up."""
    clock, timer, fired = make_timer()
    timer.start()
    clock.advance(0.3)
    timer.snooze()
    first_due = timer.due_at
    assert first_due is not None and 0.3 + 0.75 * P <= first_due <= 0.3 + 1.25 * P
    clock.advance(0.05)
    timer.snooze()
    due = timer.due_at
    assert due is not None and 0.35 + 0.75 * P <= due <= 0.35 + 1.25 * P
    run_for(clock, 2.0 * P)
    assert fired and fired[0] == pytest.approx(due)


def test_snooze_with_delay_is_exact() -> None:
    """snooze(d) sets the due time to now + d exactly, even far beyond the period."""
    clock, timer, fired = make_timer()
    timer.start()
    clock.advance(0.2)
    timer.snooze(3.0)
    assert timer.due_at == pytest.approx(3.2)
    clock.advance(2.9999)
    assert fired == []
    clock.advance(0.0002)
    assert fired == [pytest.approx(3.2)]


def test_snooze_can_make_it_earlier() -> None:
    """The last snooze wins even when it moves the due time earlier."""
    clock, timer, fired = make_timer()
    timer.start()
    timer.snooze(5.0)
    timer.snooze(0.01)
    clock.advance(0.02)
    assert fired == [pytest.approx(0.01)]


def test_self_snooze_after_task() -> None:
    """After the task runs the timer re-arms itself one jittered period later."""
    clock, timer, fired = make_timer()
    timer.start(0.1)
    clock.advance(0.1)
    assert fired == [pytest.approx(0.1)]
    assert timer.due_at is not None and 0.1 + 0.75 * P <= timer.due_at <= 0.1 + 1.25 * P


def test_task_that_snoozes_the_timer_wins() -> None:
    """A task calling snooze(d) decides the next due time (its snooze is the last one)."""
    clock = FakeClock()
    fired: list[float] = []
    timer: PeriodicTimer

    def task() -> None:
        fired.append(clock.now())
        timer.snooze(2.0)

    timer = PeriodicTimer(clock, P, task, random.Random(SEED))
    timer.start(0.1)
    clock.advance(2.05)
    assert fired == [pytest.approx(0.1)]
    clock.advance(0.1)
    assert fired == [pytest.approx(0.1), pytest.approx(2.1)]


def test_stop_cancels_and_snooze_on_stopped_timer_is_ignored() -> None:
    """stop() prevents further runs; snooze() on a stopped timer is ignored (does not re-arm)."""
    clock, timer, fired = make_timer()
    timer.start()
    run_for(clock, 3 * P)
    n = len(fired)
    assert n >= 2
    timer.stop()
    assert not timer.running and timer.due_at is None
    timer.snooze()
    timer.snooze(0.01)
    assert timer.due_at is None
    run_for(clock, 10 * P, step_s=0.01)
    assert len(fired) == n
    assert clock.pending_count() == 0


def test_task_that_stops_the_timer_runs_once() -> None:
    """A task stopping its own timer ends the series (the self re-arm does not survive stop)."""
    clock = FakeClock()
    fired: list[float] = []
    timer: PeriodicTimer

    def task() -> None:
        fired.append(clock.now())
        timer.stop()

    timer = PeriodicTimer(clock, P, task, random.Random(SEED))
    timer.start()
    run_for(clock, 10 * P, step_s=0.01)
    assert len(fired) == 1


def test_restart_after_stop() -> None:
    """A stopped timer can be started again; it then fires one jittered period later."""
    clock, timer, fired = make_timer()
    timer.start()
    timer.stop()
    clock.advance(1.0)
    timer.start()
    assert timer.due_at is not None and 1.0 + 0.75 * P <= timer.due_at <= 1.0 + 1.25 * P
    run_for(clock, 1.3 * P)
    assert len(fired) == 1


def test_rejects_non_positive_period() -> None:
    """A zero or negative period is refused at construction."""
    with pytest.raises(ValueError):
        PeriodicTimer(FakeClock(), 0.0, lambda: None, random.Random(1))
