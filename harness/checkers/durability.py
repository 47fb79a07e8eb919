"""Durability checker: the final reads after healing agree with every acknowledged write (none lost)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from harness.checkers.verdict import Validity, Verdict
from harness.history import Event
from harness.history_views import CLIENT, Op, client_ops, require_well_formed

NAME = "durability"
MAX_EXAMPLES = 10


def _effect(op: Op) -> Any:
    """The value a write-like op leaves in its key (cas: its ``to``)."""
    if op.f == "cas":
        value = op.invoke_value
        return value[1] if isinstance(value, list | tuple) and len(value) == 2 else None
    return op.invoke_value


def _superseded(op: Op, oks: Sequence[Op]) -> bool:
    """An acknowledged op is superseded when another acknowledged op started after it finished
    (so it linearizes later); its value may then legitimately be gone."""
    assert op.complete_t is not None
    # op's own invoke precedes its completion, so comparing with the latest invoke is enough.
    return max(other.invoke_t for other in oks) > op.complete_t


def _composes(final: str, bases: set[str], tokens: set[str]) -> bool:
    """Whether ``final`` = one base (or "") followed by appended tokens (append concatenates)."""
    starts = [len(b) for b in bases | {""} if final.startswith(b)]
    reachable = set(starts)
    for pos in range(len(final) + 1):
        if pos in reachable:
            reachable.update(pos + len(t) for t in tokens if t and final.startswith(t, pos))
    return len(final) in reachable


def check_key(key: str, writes: Sequence[Op], final: Any) -> str | None:
    """Why ``final`` cannot be the value of ``key`` after ``writes`` (ok/info/unfinished write,
    cas and append ops), or None when it is one the history allows. Allowed: the effect of an
    acknowledged op not superseded by a later acknowledged op, or of any indeterminate op (it may
    have taken effect at any time after its invoke), or None when nothing was acknowledged; with
    appends, such a value followed by appended tokens, containing every acknowledged append
    that no later acknowledged write or cas overwrote."""
    oks = [w for w in writes if w.ok]
    candidates = [w for w in writes if w.indeterminate or (w.ok and not _superseded(w, oks))]
    appends = [w for w in writes if w.f == "append"]
    setters = [w for w in candidates if w.f != "append"]
    if not appends:
        allowed = [_effect(w) for w in setters]
        if not oks:
            allowed.append(None)
        if final in allowed:
            return None
        acked = [_effect(w) for w in oks if not _superseded(w, oks)]
        older = [_effect(w) for w in oks if _superseded(w, oks)]
        if final in older:
            return f"final value {final!r} is an older acknowledged write; the last acknowledged was {acked}"
        if final is None:
            return f"key is empty, but {len(oks)} write(s) were acknowledged (last: {acked})"
        return f"final value {final!r} was never written (last acknowledged: {acked})"
    if final is None:
        return None if not oks else f"key is empty, but {len(oks)} write(s) were acknowledged"
    if not isinstance(final, str):
        return f"final value {final!r} of an appended key is not a string"
    bases = {str(_effect(w)) for w in setters if _effect(w) is not None}
    tokens = {str(w.invoke_value) for w in appends if w.ok or w.indeterminate}
    if not _composes(final, bases, tokens):
        return f"final value {final!r} is not a written value followed by appended tokens"
    setter_oks = [w for w in oks if w.f != "append"]
    for w in appends:
        if w.ok and str(w.invoke_value) not in final:
            assert w.complete_t is not None
            if not any(s.invoke_t > w.complete_t for s in setter_oks):
                return f"acknowledged append {w.invoke_value!r} is missing from {final!r}"
    return None


def check_durability(events: Iterable[Event]) -> Verdict:
    """Valid when every key's final read is allowed by ``check_key``; invalid naming the lost
    keys; unknown when nothing was acknowledged or a written key has no successful final read."""
    events = list(events)
    require_well_formed(events, CLIENT)
    ops = client_ops(events)
    writes: dict[str, list[Op]] = {}
    for op in ops:
        if op.is_write and not op.final and op.kind != "fail":
            writes.setdefault(op.key, []).append(op)
    finals: dict[str, Op] = {}
    for op in ops:
        if op.final and op.f == "read" and op.ok:
            finals[op.key] = op
    acked = sum(1 for key_ops in writes.values() for w in key_ops if w.ok)
    details: dict[str, Any] = {"keys": len(writes), "acknowledged_writes": acked,
                               "final_reads": len(finals)}
    if acked == 0:
        return Verdict(NAME, Validity.UNKNOWN, "the harness could not exercise the system: "
                       "no write was acknowledged", {**details, "reason": "no acknowledged write"})
    unread = sorted(k for k in writes if k not in finals)
    lost: dict[str, str] = {}
    for key in sorted(k for k in writes if k in finals):
        problem = check_key(key, writes[key], finals[key].value)
        if problem:
            lost[key] = problem
    details.update(lost=dict(list(lost.items())[:MAX_EXAMPLES]), lost_count=len(lost), unread=unread)
    if lost:
        return Verdict(NAME, Validity.INVALID, f"{len(lost)} key(s) lost acknowledged writes: "
                       + "; ".join(f"{k}: {v}" for k, v in list(lost.items())[:3]), details)
    if unread:
        return Verdict(NAME, Validity.UNKNOWN, f"no successful final read of {len(unread)} written "
                       f"key(s) ({', '.join(unread[:5])})", {**details, "reason": "final reads missing"})
    return Verdict(NAME, Validity.VALID, f"{acked} acknowledged write(s) on {len(writes)} key(s) "
                   "all survive in the final reads", details)
