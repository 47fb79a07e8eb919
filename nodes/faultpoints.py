"""kuduraft's MAYBE_FAULT points: seeded draws against the crash-fraction flags, exit 85 on a hit."""

from __future__ import annotations

import logging
import os
import random
from collections.abc import Callable
from typing import NoReturn

from nodes.flags import Flags

INJECTED_CRASH_EXIT = 85


def _hard_exit(code: int) -> NoReturn:
    # kuduraft calls _exit(85): no cleanup, no flushing of anything but our one log line.
    os._exit(code)


class FaultPoints:
    """Draws a fresh uniform number per evaluation, counts draws per flag, crashes on a hit."""

    def __init__(self, flags: Flags, rng: random.Random, logger: logging.Logger,
                 exit_fn: Callable[[int], NoReturn] = _hard_exit) -> None:
        self._flags = flags
        self._rng = rng
        self._logger = logger
        self._exit = exit_fn
        self.draws: dict[str, int] = {}

    def maybe_fault(self, flag: str) -> None:
        fraction = float(self._flags[flag])
        self.draws[flag] = self.draws.get(flag, 0) + 1
        if fraction <= 0.0:
            return
        if self._rng.random() < fraction:
            self._logger.critical("injected crash: %s=%g fired; exiting with status %d", flag,
                                  fraction, INJECTED_CRASH_EXIT)
            for handler in logging.getLogger().handlers + self._logger.handlers:
                handler.flush()
            self._exit(INJECTED_CRASH_EXIT)

    def hit(self, flag: str) -> bool:
        """A non-crashing draw (e.g. an injected IO error decision)."""
        fraction = float(self._flags[flag])
        self.draws[flag] = self.draws.get(flag, 0) + 1
        return fraction > 0.0 and self._rng.random() < fraction

    def crash_now(self) -> NoReturn:
        self._exit(INJECTED_CRASH_EXIT)
