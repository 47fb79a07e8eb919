"""The one result type every checker returns, how verdicts compose, and the exception guard."""

from __future__ import annotations

import enum
import json
import traceback
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any


class Validity(enum.Enum):
    """What a checker concluded. UNKNOWN means it could not decide (budget, bad input, a crash),
    never that the system is at fault."""

    VALID = "valid"
    INVALID = "invalid"
    UNKNOWN = "unknown"


# Higher rank wins when verdicts compose: one invalid finding is a finding whatever else is unknown.
_RANK = {Validity.VALID: 0, Validity.UNKNOWN: 1, Validity.INVALID: 2}


@dataclass(frozen=True)
class Verdict:
    """One checker's conclusion. ``details`` holds only JSON-serialisable values so a verdict can be
    saved beside the history and re-rendered without the checker."""

    checker: str
    validity: Validity
    summary: str
    details: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"checker": self.checker, "validity": self.validity.value, "summary": self.summary,
                "details": self.details}

    def to_json(self, indent: int | None = None) -> str:
        """The verdict as JSON; raises TypeError if a checker put something unserialisable in details."""
        return json.dumps(self.to_dict(), indent=indent, sort_keys=True)


def compose(verdicts: Iterable[Verdict | Validity]) -> Validity:
    """Combine several verdicts: invalid beats unknown beats valid. No verdicts at all is unknown:
    nothing was checked, so nothing was observed (the one rule; ``reports.run_data.overall_validity``
    applies it to saved verdicts)."""
    result: Validity | None = None
    for item in verdicts:
        validity = item.validity if isinstance(item, Verdict) else item
        if result is None or _RANK[validity] > _RANK[result]:
            result = validity
    return Validity.UNKNOWN if result is None else result


def guarded(name: str, fn: Callable[..., Verdict], *args: Any) -> Verdict:
    """Run a checker so that a bug or bad input in it yields UNKNOWN (with the traceback) rather than
    a crashed run: a checker failing says nothing about the system under test."""
    try:
        return fn(*args)
    except Exception as exc:  # any checker failure must become a verdict, whatever its type
        return Verdict(
            checker=name,
            validity=Validity.UNKNOWN,
            summary=f"checker {name} raised {type(exc).__name__}: {exc}",
            details={"reason": "checker raised", "exception": type(exc).__name__, "message": str(exc),
                     "traceback": traceback.format_exc()},
        )
