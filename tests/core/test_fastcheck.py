"""The generated straight-line validators (daemons/core/fastcheck.py) accept nothing the generic
schema walk refuses, and build exactly what it builds (the same values, of the same types).

A fast validator answers a built message or MISS; on MISS the generic walk decides. So these
properties are what makes `from_dict` accept and refuse exactly as before: whatever the fast
path accepts (valid messages drawn from the schema's own bounds, and the same with fields
pushed out of bounds, replaced by junk, of a near type, missing or unknown), the walk accepts
with an identical result; and our own encoder's bodies do take the fast path. The generated
encoder (schema._encoder) builds the plain map of every field, in field order.
"""

from __future__ import annotations

import dataclasses
import typing
from typing import Any

import msgpack
import pytest
from hypothesis import given
from hypothesis import strategies as st

from daemons.bus import decode, encode
from daemons.coordinator.testing import node_state
from daemons.core.errors import SchemaError
from daemons.core.fastcheck import MISS
from daemons.core.messages import MESSAGE_TYPES, NodeState, Placement, Schedule
from daemons.core.schema import _bounds, _compiled, _walk, to_dict
from tests.bus.test_properties import ANY_MESSAGE, JSONISH, out_of_bounds


def wire(body: dict[str, Any]) -> Any:
    """The body as a receiver sees it, through msgpack and back, with every str cut to its
    printable ASCII characters: still valid (shorter, and such a str matches every name
    pattern), and the form the fast path takes (drawn names are mostly other Unicode)."""
    return _ascii(msgpack.unpackb(msgpack.packb(body, use_bin_type=True), raw=False, strict_map_key=True))


def _ascii(value: Any) -> Any:
    if isinstance(value, str):
        return "".join(c for c in value if c.isascii() and c.isprintable())
    if isinstance(value, list):
        return [_ascii(v) for v in value]
    if isinstance(value, dict):
        return {_ascii(k): _ascii(v) for k, v in value.items()}
    return value


def same(a: Any, b: Any) -> bool:
    """Equal, and of the same types all the way down (`1 == 1.0 == True` is not enough)."""
    if type(a) is not type(b):
        return False
    if dataclasses.is_dataclass(a):
        return all(same(getattr(a, f.name), getattr(b, f.name)) for f in dataclasses.fields(a))
    if isinstance(a, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    return bool(a == b) or (a != a and b != b)


def agrees(cls: type, body: Any) -> Any:
    """Assert the fast path's answer on `body` is MISS or the generic walk's result; return it."""
    compiled = _compiled(cls)
    assert compiled.fast is not None
    fast = compiled.fast(body)
    if fast is MISS:
        return MISS
    try:
        generic = _walk(cls, compiled, body)
    except SchemaError as exc:
        pytest.fail(f"the fast path accepted a {cls.__name__} the schema refuses ({exc}): {body!r}")
    assert same(fast, generic), (fast, generic)
    return fast


@given(ANY_MESSAGE)
def test_property_a_valid_message_is_built_as_the_walk_builds_it(msg: Any) -> None:
    if dataclasses.fields(msg):
        assert agrees(type(msg), wire(to_dict(msg))) is not MISS  # and a canonical body takes the fast path


@given(ANY_MESSAGE)
def test_property_a_field_out_of_bounds_is_never_accepted_by_the_fast_path(msg: Any) -> None:
    hints = typing.get_type_hints(type(msg), include_extras=True)
    fast = _compiled(type(msg)).fast
    for f in dataclasses.fields(msg):  # every field, every value just outside its bounds
        for bad in out_of_bounds(hints[f.name]):
            body = wire(to_dict(msg))
            body[f.name] = bad
            assert fast is not None and fast(body) is MISS, (f.name, bad)


NEAR_MISSES_LIST = [True, False, 0, 1, -1, 1.0, 0.5, -0.0, "", "é", "x\n", "x" * 300, None, [], {}, [1], ["é"],
                    {"k": 1}, 2**53 + 1, float("nan"), float("inf")]
NEAR_MISSES = st.sampled_from(NEAR_MISSES_LIST)


@given(ANY_MESSAGE)
def test_property_every_near_miss_in_every_field_is_judged_as_the_walk_judges(msg: Any) -> None:
    hints = typing.get_type_hints(type(msg), include_extras=True)
    for f in dataclasses.fields(msg):
        canonical = wire(to_dict(msg))
        value = canonical[f.name]
        tries = list(NEAR_MISSES_LIST)
        if isinstance(value, list):  # valid items, one more than the field's Size allows
            tries += [item * (_bounds(hints[f.name])[2] + 1) for item in (value[:1], ["a"], [0])]
        for bad in tries:
            agrees(type(msg), {**canonical, f.name: bad})


@given(ANY_MESSAGE, st.data())
def test_property_junk_missing_and_unknown_fields_are_judged_as_the_walk_judges(msg: Any,
                                                                                data: st.DataObject) -> None:
    names = [f.name for f in dataclasses.fields(msg)]
    if not names:
        return
    body = wire(to_dict(msg))
    for name in data.draw(st.lists(st.sampled_from(names), min_size=1, max_size=3)):
        how = data.draw(st.sampled_from(["junk", "near", "drop", "unknown", "int-for-float"]))
        if how == "junk":
            body[name] = data.draw(JSONISH)
        elif how == "near":
            body[name] = data.draw(NEAR_MISSES)
        elif how == "drop":
            body.pop(name, None)
        elif how == "unknown":
            body[data.draw(st.text(max_size=6))] = data.draw(NEAR_MISSES)
        elif isinstance(body.get(name), float) and float(body[name]).is_integer():
            body[name] = int(body[name])  # what another language's msgpack may send for 1.0
    agrees(type(msg), body)


def test_our_own_hot_messages_take_the_fast_path() -> None:
    schedule = Schedule("req-1", "m0", 100, 128, exclude=["node-3"])
    placement = Placement("req-1", "node-000", "tcp://127.0.0.1:30000", "SERVE", 0.5, "affinity score 970", 2e-5, 3)
    state = node_state("node-000", ready=["m1", "m2"], catalog=[f"m{i}" for i in range(20)])
    for msg in (schedule, placement, state):
        built = agrees(type(msg), wire(to_dict(msg)))
        assert built is not MISS and built == msg
        assert decode(encode(msg, "n", "i")).body == msg


def test_every_message_type_with_fields_has_a_fast_path() -> None:
    for cls in MESSAGE_TYPES.values():
        assert (_compiled(cls).fast is None) == (not dataclasses.fields(cls)), cls.__name__


def test_the_fast_path_leaves_the_refusals_and_their_wording_to_the_walk() -> None:
    body = wire(to_dict(node_state("n0")))
    for name, bad, says in (("node", "n0\n", "node: not a valid name"), ("seq", True, "seq: expected int, got bool"),
                            ("queue_depth", -1, "queue_depth: out of range")):
        with pytest.raises(SchemaError, match=says):
            decode(msgpack.packb([1, "state", "n0", "", {**body, name: bad}], use_bin_type=True))
    assert decode(msgpack.packb([1, "state", "n0", "", {**body, "node": "nœud"}])).body.node == "nœud"
    assert isinstance(decode(msgpack.packb([1, "state", "n0", "", body])).body, NodeState)


def plain_dict(obj: Any) -> Any:
    """What the generated encoder must build: every field, in field order, nested messages as maps."""
    if dataclasses.is_dataclass(obj):
        return {f.name: plain_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, list):
        return [plain_dict(v) for v in obj]
    if isinstance(obj, dict):
        return {k: plain_dict(v) for k, v in obj.items()}
    return obj


@given(ANY_MESSAGE)
def test_property_the_generated_encoder_builds_the_plain_map_in_field_order(msg: Any) -> None:
    body = to_dict(msg)
    assert same(body, plain_dict(msg)) and list(body) == [f.name for f in dataclasses.fields(msg)]
    assert encode(msg, "n", "i") == msgpack.packb([1, msg.TYPE, "n", "i", plain_dict(msg)], use_bin_type=True)
