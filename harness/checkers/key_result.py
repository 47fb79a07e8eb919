"""The outcome of one key's linearizability search, and when a search must stop (time, memory)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from harness.checkers.kv_model import KeyModel
from harness.checkers.verdict import Validity


@dataclass
class KeyResult:
    """The outcome on one key. For an INVALID key, ``stuck`` is the op that could not be placed;
    ``prefix`` (op ids in linearization order) is the deepest linearizable prefix the search reached,
    unless ``proved``: then a proof found before searching (see ``find_stale_read``) showed it, and
    ``witness`` lists the other ops of that proof."""

    key: str
    validity: Validity
    ops: int
    pruned: int
    states: int = 0
    steps: int = 0
    elapsed_s: float = 0.0
    reason: str | None = None
    prefix: list[int] = field(default_factory=list)
    stuck: int = -1
    witness: list[int] = field(default_factory=list)
    proved: bool = False


def unknown(m: KeyModel, reason: str, states: int = 0, steps: int = 0, elapsed_s: float = 0.0) -> KeyResult:
    """An undecided key; ``elapsed_s`` is the time really spent on it (0 only if never searched)."""
    return KeyResult(m.key, Validity.UNKNOWN, len(m.ops), m.pruned, states, steps, elapsed_s, reason=reason)


def budget_reason(m: KeyModel, states: int, mem_bytes: int, memory_budget: int, deadline: float) -> str | None:
    """Why a search must stop now (past the deadline, over its memory), or None."""
    if time.monotonic() > deadline:
        return f"time limit reached on key {m.key!r} after {states} states"
    if mem_bytes > memory_budget:
        return f"memory budget of {memory_budget // 2**20} MiB reached on key {m.key!r} after {states} states"
    return None
