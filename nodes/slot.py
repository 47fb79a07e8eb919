"""A one-shot completion that calls its callback at once, where a future would call it a loop turn later."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class CallbackSlot(Generic[T]):
    """Stands in for a future where the outcome has exactly one consumer: ``set_result`` and
    ``set_exception`` hand it to ``callback`` in the same call, not in a later loop turn
    (issue #14: a turn per RPC reply and per applied write were a visible share of the leader's
    loop). Only the first outcome counts; ``timer`` (a timeout) is cancelled with it. A callback
    that raises is reported to the loop's exception handler, as a future's callback would be,
    and the code that completed the slot goes on."""

    __slots__ = ("_callback", "_finished", "timer")

    def __init__(self, callback: Callable[[T | Exception], None]) -> None:
        self._callback = callback
        self._finished = False
        self.timer: asyncio.TimerHandle | None = None

    def done(self) -> bool:
        return self._finished

    def set_result(self, result: T) -> None:
        self._finish(result)

    def set_exception(self, exc: Exception) -> None:
        self._finish(exc)

    def _finish(self, outcome: T | Exception) -> None:
        if self._finished:
            return
        self._finished = True
        if self.timer is not None:
            self.timer.cancel()
        try:
            self._callback(outcome)
        except Exception as e:
            asyncio.get_running_loop().call_exception_handler(
                {"message": "completion callback failed", "exception": e})
