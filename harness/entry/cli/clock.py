"""When this process started, on ``time.monotonic``'s clock: a command's time limit counts from there.

A user who types ``raftchaos check --time-limit 2`` waits for the interpreter, the imports and the
reading too, so those count against the limit. Linux records each process's start in
``/proc/self/stat`` (field 22, clock ticks since boot on the boot-time clock); elsewhere the
moment this module was first imported is the best estimate.
"""

from __future__ import annotations

import os
import time

_IMPORTED_AT = time.monotonic()
_MAX_AGE_S = 3600.0  # an older "start" means the figures disagree: do not trust them


def _age_from_proc() -> float | None:
    """Seconds since this process started, from the kernel's record, or None where there is none."""
    try:
        with open("/proc/self/stat", "rb") as f:
            stat = f.read()
        # The command name (field 2) may hold spaces and parentheses: count fields after its ")".
        start_ticks = int(stat[stat.rindex(b")") + 2:].split()[19])
        age = time.clock_gettime(time.CLOCK_BOOTTIME) - start_ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError, AttributeError):
        return None
    return age if 0.0 <= age < _MAX_AGE_S else None


def process_started() -> float:
    """The ``time.monotonic()`` value at which this process started (never later than now)."""
    now = time.monotonic()
    age = _age_from_proc()
    return now - age if age is not None else min(_IMPORTED_AT, now)


# Set by ``harness.entry.cli.main`` before a command runs: its time limits count from this monotonic time.
command_started: float | None = None


def command_start() -> float:
    """When the running command started (now, when no command set it)."""
    return command_started if command_started is not None else time.monotonic()
