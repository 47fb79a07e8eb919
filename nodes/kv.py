"""The replicated state machine: a key-value store of string registers, applied from committed entries."""

from __future__ import annotations

from typing import Any

from nodes.jsonsafe import JsonInputError, check_value

KV_OPS = ("put", "get", "cas", "append")


class KvError(ValueError):
    """A client operation that is malformed; rejected before it reaches the log."""


def validate_op(op: dict[str, Any]) -> dict[str, Any]:
    """Check a client op's shape so nothing malformed is ever replicated."""
    kind = op.get("op")
    if kind not in KV_OPS:
        raise KvError(f"unknown op {kind!r}; expected one of {', '.join(KV_OPS)}")
    key = op.get("key")
    if not isinstance(key, str):
        raise KvError("'key' must be a string")
    if kind in ("put", "append") and "value" not in op:
        raise KvError(f"{kind} needs a 'value'")
    if kind == "append" and not isinstance(op.get("value"), str):
        raise KvError("append needs a string 'value'")
    if kind == "cas" and ("from" not in op or "to" not in op):
        raise KvError("cas needs 'from' and 'to'")
    for field in ("key", "value", "from", "to"):
        # The WAL cannot encode NaN/Infinity or absurd nesting and a failed append is fatal:
        # such a value must be refused here, before it is replicated, never after.
        if field in op and type(op[field]) is not str:  # a string is always encodable
            try:
                check_value(op[field], what=f"'{field}'")
            except JsonInputError as e:
                raise KvError(str(e)) from None
    return op


class KvStore:
    """Deterministic: every replica applying the same committed prefix holds the same map."""

    def __init__(self) -> None:
        self.data: dict[str, Any] = {}

    def apply(self, op: dict[str, Any]) -> dict[str, Any]:
        """Total: a committed entry that cannot apply yields ``{"error": ...}`` and changes nothing
        (raising here would wedge every replica on the same entry)."""
        try:
            validate_op(op)
        except KvError as e:
            return {"error": str(e)}
        kind = op.get("op")
        key = op.get("key", "")
        if kind == "put":
            self.data[key] = op.get("value")
            return {}
        if kind == "get":
            return {"value": self.data.get(key)}
        if kind == "cas":
            current = self.data.get(key)
            if current == op.get("from"):
                self.data[key] = op.get("to")
                return {"swapped": True, "value": op.get("to")}
            return {"swapped": False, "value": current}
        if kind == "append":
            current = self.data.get(key)
            if current is not None and not isinstance(current, str):
                return {"error": f"append: the value of {key!r} is not a string"}
            self.data[key] = (current or "") + str(op.get("value", ""))
            return {"value": self.data[key]}
        return {"error": f"unknown op {kind!r}"}
