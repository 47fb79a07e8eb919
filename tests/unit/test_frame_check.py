"""The RPC edge's body check (nodes/service.py, check_frame_body) has a fast path for the common
shape of a frame (issue #14); it must accept exactly what the full walk accepts, and a refusal
must still name the field the walk names."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import pytest
from consensus_fakes import op, ops, update_body
from hypothesis import given, settings
from hypothesis import strategies as st

from nodes.jsonsafe import MAX_VALUE_DEPTH, JsonInputError
from nodes.service import _check_frame_body_walk, _plainly_valid, check_frame_body

INT64_MAX = 2**63 - 1


def verdict(check: Callable[[dict[str, Any]], None], body: dict[str, Any]) -> str | None:
    """The check's error message for ``body``, or None when it accepts it."""
    try:
        check(body)
    except JsonInputError as e:
        return str(e)
    return None


def walk_verdict(body: dict[str, Any]) -> str | None:
    return verdict(_check_frame_body_walk, body)


def fast_verdict(body: dict[str, Any]) -> str | None:
    return verdict(check_frame_body, body)


def nested(depth: int) -> Any:
    v: Any = "x"
    for _ in range(depth):
        v = {"k": v}
    return v


def test_the_common_update_takes_the_fast_path() -> None:
    """A leader's Update with flat put payloads is accepted without the walk."""
    body = update_body(term=3, preceding=(2, 9), ops=ops(3, 10, 25), committed=9)
    assert _plainly_valid(body)
    check_frame_body(body)


@pytest.mark.parametrize("body, where", [
    (update_body(term=2**63), "body.caller_term"),
    (update_body(term=1, preceding=(1, -(2**63) - 1)), "body.preceding_id[1]"),
    (update_body(term=1, ops=[op(1, 1, payload={"op": "put", "key": "k", "value": math.nan})]),
     "body.ops[0].payload"),
    (update_body(term=1, ops=[op(1, 1, payload={"op": "put", "key": "k",
                                                 "value": nested(MAX_VALUE_DEPTH + 1)})]),
     "body.ops[0].payload"),
    (update_body(term=1, ops=[{**op(1, 1), "index": 2**64}]), "body.ops[0].index"),
    (update_body(term=1, extra={"deep": {"n": 2**70}}), "body.extra.deep.n"),
])
def test_refusals_still_name_the_field(body: dict[str, Any], where: str) -> None:
    with pytest.raises(JsonInputError, match=where.replace("[", r"\[").replace("]", r"\]")):
        check_frame_body(body)


def test_payload_ints_are_not_bounded_and_top_level_payload_is_ignored() -> None:
    """As the walk: int64 bounds apply outside op payloads only; a top-level 'payload' key is
    not an op's payload."""
    big = update_body(term=1, ops=[op(1, 1, payload={"op": "put", "key": "k", "value": 10**30})])
    assert fast_verdict(big) is None and walk_verdict(big) is None
    top = update_body(term=1, payload={"x": math.inf})
    assert fast_verdict(top) is None and walk_verdict(top) is None


scalars = st.one_of(st.none(), st.booleans(), st.text(max_size=3),
                    st.integers(min_value=-(2**64), max_value=2**64),
                    st.floats(allow_nan=True, allow_infinity=True))
values = st.recursive(scalars, lambda kids: st.one_of(
    st.lists(kids, max_size=3), st.dictionaries(st.text(max_size=2), kids, max_size=3)), max_leaves=8)
payloads = st.one_of(st.none(), values,
                     st.dictionaries(st.sampled_from(["op", "key", "value", "from", "to"]), scalars))
op_dicts = st.fixed_dictionaries({"term": st.integers(0, 2**64), "index": st.integers(-1, 2**64),
                                  "kind": st.sampled_from(["WRITE", "NO_OP"])},
                                 optional={"payload": payloads, "x": values})
bodies = st.fixed_dictionaries(
    {"caller_uuid": st.text(max_size=3), "caller_term": st.integers(-(2**64), 2**64)},
    optional={"ops": st.one_of(st.lists(op_dicts, max_size=4), values),
              "preceding_id": st.lists(st.integers(-(2**64), 2**64), max_size=3),
              "payload": values, "extra": values})


@settings(max_examples=400, derandomize=True, deadline=None)
@given(bodies)
def test_fast_path_agrees_with_the_walk(body: dict[str, Any]) -> None:
    """Hypothesis (derandomized: the same examples every run) bodies mixing valid and invalid
    fields: same verdict, same message; the fast path never accepts what the walk refuses."""
    assert fast_verdict(body) == walk_verdict(body)
    if _plainly_valid(body):
        assert walk_verdict(body) is None
