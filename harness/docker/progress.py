"""A thin wrapper over one rich progress task, so setup steps report what they do (or stay silent)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

from rich.progress import Progress, TaskID


class Step:
    """One named setup step shown as a rich task; every method is a no-op without a Progress."""

    def __init__(self, progress: Progress | None, title: str, total: float | None = None) -> None:
        self._progress = progress
        self.title = title
        self.started = time.monotonic()
        self._task: TaskID | None = progress.add_task(title, total=total) if progress is not None else None

    def note(self, detail: str) -> None:
        """Show ``detail`` after the step's title (e.g. the current debootstrap phase)."""
        if self._progress is not None and self._task is not None:
            self._progress.update(self._task, description=f"{self.title}: {detail[:80]}")

    def advance(self, amount: float = 1.0, total: float | None = None) -> None:
        """Move the bar by ``amount``; ``total`` (if given) replaces the step's total first."""
        if self._progress is not None and self._task is not None:
            if total is not None:
                self._progress.update(self._task, total=total)
            self._progress.advance(self._task, amount)

    def finish(self, detail: str) -> None:
        """Mark the step complete, with ``detail`` and the elapsed seconds in its description."""
        if self._progress is not None and self._task is not None:
            elapsed_s = time.monotonic() - self.started
            self._progress.update(
                self._task, description=f"{self.title}: {detail} ({elapsed_s:.1f} s)", total=1, completed=1
            )


@contextmanager
def step(progress: Progress | None, title: str, total: float | None = None) -> Iterator[Step]:
    """A Step for the ``with`` body; if the body raises, the task says so before the error goes on."""
    current = Step(progress, title, total)
    try:
        yield current
    except BaseException:
        current.note("failed")
        raise
