"""The node's runtime flag table, read where a scenario or `raftchaos up` names flags: a mistake is
named before any cluster starts instead of showing as a node exiting 2 mid-setup."""

from __future__ import annotations

import difflib
from typing import Any


def flag_problem(name: str, value: Any) -> str | None:
    """Why the node would refuse flag ``name`` = ``value`` at start (None when it takes it). The
    node's own flag table (nodes/flags.py) is the authority."""
    from nodes.flags import FLAG_DEFS, FlagError, parse_value

    defn = next((d for d in FLAG_DEFS if d.name == name), None)
    if defn is None:
        close = difflib.get_close_matches(name, [d.name for d in FLAG_DEFS], n=1)
        hint = f"; did you mean {close[0]}?" if close else " (the node's flags: python -m nodes --help)"
        return f"unknown flag {name!r}{hint}"
    try:
        parse_value(defn, value)
    except FlagError as exc:
        return str(exc)
    return None
