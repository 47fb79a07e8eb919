"""The JSON the node accepts at its edges (HTTP bodies, RPC frames): strict, bounded, always re-encodable.

Why a module of its own: the WAL encodes every entry with ``allow_nan=False`` and a failed local
append is fatal. So anything that can reach the log must be proven encodable where it enters the
node, the same way for a client's HTTP body and for a peer's frame; otherwise one request
carrying ``NaN`` (which Python's ``json.loads`` accepts by default) kills the leader. Rules:

- UTF-8 only (RFC 8259 section 8.1); ``json.loads`` would otherwise also guess UTF-16/32.
- No ``NaN``/``Infinity``/``-Infinity`` and no number that overflows a float (``1e999``): the
  encoder refuses them and other JSON implementations cannot read them.
- Nesting bounded by ``max_depth`` (objects + arrays), checked by a scan before parsing, so a
  100k-deep body is a clear error instead of a RecursionError.
- Integers longer than Python's int/str digit limit are refused by the parser already.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

MAX_VALUE_DEPTH = 64
"""Deepest nesting (objects + arrays) of a client value or HTTP body."""

_OPEN = frozenset("[{")
# A JSON string (unrolled-loop form: linear, no backtracking) or one bracket.
_TOKEN = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"|[\[\]{}]', re.DOTALL)


class JsonInputError(ValueError):
    """Input that is not JSON the node accepts; the message is one line naming the problem."""


def _reject_constant(name: str) -> Any:
    raise JsonInputError(f"non-finite number {name} is not JSON")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise JsonInputError(f"number {text[:40]} is out of the finite float range")
    return value


def nesting_depth_exceeds(text: str, max_depth: int) -> bool:
    """True when brackets outside strings nest deeper than ``max_depth`` (exact for valid JSON)."""
    if text.count("[") + text.count("{") <= max_depth:
        return False  # cannot nest deeper than the number of openers
    depth = 0
    for m in _TOKEN.finditer(text):
        tok = m.group()
        if tok in _OPEN:
            depth += 1
            if depth > max_depth:
                return True
        elif tok[0] != '"':
            depth -= 1
    return False


def loads(data: bytes | str, max_depth: int = MAX_VALUE_DEPTH, what: str = "body") -> Any:
    """Parse ``data`` under the rules above; JsonInputError (one line, naming ``what``) otherwise."""
    if isinstance(data, bytes | bytearray):
        try:
            text = bytes(data).decode("utf-8")
        except UnicodeDecodeError as e:
            raise JsonInputError(f"{what} is not UTF-8 (invalid byte at offset {e.start})") from None
    else:
        text = data
    if nesting_depth_exceeds(text, max_depth):
        raise JsonInputError(f"{what} nests deeper than {max_depth} levels")
    try:
        return json.loads(text, parse_constant=_reject_constant, parse_float=_finite_float)
    except JsonInputError as e:
        raise JsonInputError(f"{what}: {e}") from None
    except RecursionError:  # not reachable after the scan; kept so no parse can ever escape
        raise JsonInputError(f"{what} nests too deeply") from None
    except ValueError as e:  # JSONDecodeError, and ints past the digit limit
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise JsonInputError(f"{what} is not valid JSON: {first[:200]}") from None


def check_value(value: Any, max_depth: int = MAX_VALUE_DEPTH, what: str = "value") -> None:
    """Raise JsonInputError unless ``value`` (built in Python) is JSON the WAL can encode.

    Iterative, so a deep value cannot overflow the stack here either. Accepts None, bool, int,
    finite float, str, and lists / str-keyed dicts of those up to ``max_depth`` levels.
    """
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        v, depth = stack.pop()
        if v is None or isinstance(v, bool | int | str):
            continue
        if isinstance(v, float):
            if not math.isfinite(v):
                raise JsonInputError(f"{what} holds a non-finite number ({v!r})")
            continue
        if isinstance(v, list | dict):
            if depth + 1 > max_depth:
                raise JsonInputError(f"{what} nests deeper than {max_depth} levels")
            if isinstance(v, dict):
                for k in v:
                    if not isinstance(k, str):
                        raise JsonInputError(f"{what} has a non-string key {k!r:.40}")
                items: Any = v.values()
            else:
                items = v
            stack.extend((x, depth + 1) for x in items)
            continue
        raise JsonInputError(f"{what} holds a {type(v).__name__}, which is not JSON")
