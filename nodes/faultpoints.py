"""kuduraft's MAYBE_FAULT points (seeded draws against the crash-fraction flags, exit 85 on a hit)
and the process's other aborts (an invariant violation, a fatal storage error), each with its own
exit status and a record (nodes/fatal.py)."""

from __future__ import annotations

import logging
import os
import random
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn

from nodes.fatal import (
    EXIT_FATAL_STORAGE,
    EXIT_INVARIANT,
    invariant_record,
    publish,
    storage_record,
)
from nodes.flags import Flags

INJECTED_CRASH_EXIT = 85


def _hard_exit(code: int) -> NoReturn:
    # kuduraft calls _exit(85): no cleanup, no flushing of anything but our one log line.
    os._exit(code)


class FaultPoints:
    """Draws a fresh uniform number per evaluation, counts draws per flag, crashes on a hit."""

    def __init__(self, flags: Flags, rng: random.Random, logger: logging.Logger,
                 exit_fn: Callable[[int], NoReturn] = _hard_exit,
                 data_dir: Path | None = None, uuid: str = "") -> None:
        self._flags = flags
        self._rng = rng
        self._logger = logger
        self._exit = exit_fn
        self.draws: dict[str, int] = {}
        self.data_dir = data_dir
        self.uuid = uuid
        self.fatal_record: dict[str, Any] | None = None
        """The record of the abort under way (shown on /status until the process is gone)."""

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

    def invariant_violation(self, what: str, term: int, uuids: dict[str, str | None],
                            op_ids: dict[str, list[int]], message: str) -> NoReturn:
        """kuduraft's CHECK / LOG(FATAL) on a broken protocol invariant: record, then exit 70."""
        self.fatal_record = invariant_record(self.uuid, what, term, uuids, op_ids, message)
        publish(self.fatal_record, self._logger, self.data_dir)
        self._exit(EXIT_INVARIANT)

    def storage_fatal(self, what: str, message: str) -> NoReturn:
        """A WAL or metadata write failed, which kuduraft treats as fatal: record, then exit 74."""
        self.fatal_record = storage_record(self.uuid, what, message)
        publish(self.fatal_record, self._logger, self.data_dir)  # best effort: the disk may be gone
        self._exit(EXIT_FATAL_STORAGE)
