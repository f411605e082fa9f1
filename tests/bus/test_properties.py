"""Property-based tests of the envelope codec and the message validators (hypothesis).

Strategies are derived from the same `Annotated` bounds the validators compile, so a new
message type or field is covered without touching this file: every valid message round
trips unchanged, every value pushed just outside its bound is refused with a SchemaError
naming the field (and not the value), and no byte string makes `decode` raise anything
but a WireError.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import types
import typing
from typing import Any

import msgpack
import pytest
from hypothesis import given
from hypothesis import strategies as st

from daemons.bus import SchemaError, decode, encode
from daemons.bus.envelope import MAX_FRAME_BYTES
from daemons.core.errors import WireError
from daemons.core.messages import MESSAGE_TYPES
from daemons.core.schema import (
    DEFAULT_FLOAT,
    DEFAULT_INT,
    DEFAULT_STR_LEN,
    MAX_LIST_LEN,
    Pattern,
    Range,
    Size,
    to_dict,
)

JSONISH = st.recursive(
    st.none() | st.booleans() | st.integers(-1000, 1000) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=8,
)


def _meta(tp: Any) -> tuple[Any, tuple[Any, ...]]:
    if typing.get_origin(tp) is typing.Annotated:
        base, *meta = typing.get_args(tp)
        inner, more = _meta(base)
        return inner, tuple(meta) + more
    return tp, ()


def _first(meta: tuple[Any, ...], kind: type) -> Any:
    return next((m for m in meta if isinstance(m, kind)), None)


def strategy(tp: Any) -> st.SearchStrategy[Any]:
    """Valid values of one annotated type (small sizes: bounds are probed separately)."""
    base, meta = _meta(tp)
    origin = typing.get_origin(base)
    if origin in (typing.Union, types.UnionType):
        return st.one_of([st.none() if a is type(None) else strategy(typing.Annotated[a, *meta]) if meta
                          else strategy(a) for a in typing.get_args(base)])
    if origin is list:
        return st.lists(strategy(typing.get_args(base)[0]), max_size=3)
    if origin is dict:
        return st.dictionaries(st.text(max_size=8), strategy(typing.get_args(base)[1]), max_size=3)
    if dataclasses.is_dataclass(base):
        return message(typing.cast(type, base))
    if base is typing.Any:
        return JSONISH
    if base is bool:
        return st.booleans()
    if base is int:
        r = _first(meta, Range) or DEFAULT_INT
        return st.integers(int(r.lo), int(r.hi))
    if base is float:
        r = _first(meta, Range) or DEFAULT_FLOAT
        return st.floats(r.lo, r.hi, allow_nan=False, allow_infinity=False)
    assert base is str, base
    pattern = _first(meta, Pattern)
    if pattern is not None:
        return st.from_regex(pattern.regex, fullmatch=True).filter(lambda s: len(s) <= 64)
    return st.text(max_size=40)


def message(cls: type) -> st.SearchStrategy[Any]:
    hints = typing.get_type_hints(cls, include_extras=True)
    return st.builds(cls, **{f.name: strategy(hints[f.name]) for f in dataclasses.fields(cls)})


ANY_MESSAGE = st.sampled_from(sorted(MESSAGE_TYPES)).flatmap(lambda t: message(MESSAGE_TYPES[t]))


def out_of_bounds(tp: Any) -> list[Any]:
    """Values of the right wire type just outside the field's bounds (none if unbounded)."""
    base, meta = _meta(tp)
    origin = typing.get_origin(base)
    if origin in (typing.Union, types.UnionType):
        opts = [a for a in typing.get_args(base) if a is not type(None)]
        return out_of_bounds(typing.Annotated[opts[0], *meta]) if len(opts) == 1 and meta else (
            out_of_bounds(opts[0]) if len(opts) == 1 else [])
    size = _first(meta, Size)
    if origin is list:
        n = MAX_LIST_LEN if size is None else size.max_len
        item = out_of_bounds(typing.get_args(base)[0])
        return [[None] * (n + 1)] + ([[item[0]]] if item else [])
    if base is int:
        r = _first(meta, Range) or DEFAULT_INT
        return [int(r.lo) - 1, int(r.hi) + 1, True]
    if base is float:
        r = _first(meta, Range) or DEFAULT_FLOAT
        return [math.nan, math.inf, -math.inf, r.hi * 2 + 1, r.lo - 1 if r.lo >= 0 else r.lo * 2]
    if base is str:
        n = DEFAULT_STR_LEN if size is None else size.max_len
        out: list[Any] = ["x" * (n + 1), 7]
        if _first(meta, Pattern) is not None:
            out.append("has a newline\n")
        return out
    return []


def frame(mtype: str, body: dict[str, Any]) -> bytes:
    return bytes(msgpack.packb([1, mtype, "fuzz", "id", body], use_bin_type=True))


@given(ANY_MESSAGE)
def test_property_every_valid_message_round_trips(msg: Any) -> None:
    env = decode(encode(msg, sender="node-1", msg_id="r-1"))
    assert env.body == msg and env.type == msg.TYPE


@given(ANY_MESSAGE)
def test_property_encode_writes_the_bytes_msgpack_packb_writes(msg: Any) -> None:
    # encode reuses one Packer per thread (envelope.py): the same bytes as a fresh packb.
    expected = msgpack.packb([1, msg.TYPE, "node-1", "r-1", to_dict(msg)], use_bin_type=True)
    assert encode(msg, sender="node-1", msg_id="r-1") == expected


@given(ANY_MESSAGE, st.data())
def test_property_a_value_out_of_bounds_is_refused_naming_the_field(msg: Any, data: st.DataObject) -> None:
    hints = typing.get_type_hints(type(msg), include_extras=True)
    candidates = [(f.name, v) for f in dataclasses.fields(msg) for v in out_of_bounds(hints[f.name])]
    if not candidates:
        return  # StatusRequest has no field
    name, bad = data.draw(st.sampled_from(candidates))
    body = to_dict(msg)
    body[name] = bad
    raw = frame(msg.TYPE, body)
    if len(raw) > MAX_FRAME_BYTES:
        return
    with pytest.raises(WireError) as exc:
        decode(raw)
    if isinstance(exc.value, SchemaError):  # a list past the envelope's item cap fails earlier
        assert name in str(exc.value)
    if isinstance(bad, str) and len(bad) > 100:
        assert bad not in str(exc.value)  # never echoed back


@given(st.binary(max_size=512))
def test_property_random_bytes_only_ever_raise_wire_errors(raw: bytes) -> None:
    with contextlib.suppress(WireError):
        decode(raw)


@given(ANY_MESSAGE, st.data())
def test_property_truncated_or_mutated_frames_only_ever_raise_wire_errors(msg: Any, data: st.DataObject) -> None:
    raw = bytearray(encode(msg, sender="n", msg_id="i"))
    if data.draw(st.booleans()):
        raw = raw[: data.draw(st.integers(0, len(raw)))]
    else:
        for _ in range(data.draw(st.integers(1, 4))):
            raw[data.draw(st.integers(0, len(raw) - 1))] = data.draw(st.integers(0, 255))
    with contextlib.suppress(WireError):
        decode(bytes(raw))


@given(ANY_MESSAGE, JSONISH)
def test_property_wrong_types_anywhere_are_refused_cleanly(msg: Any, junk: Any) -> None:
    body = to_dict(msg)
    for name in list(body)[:3]:
        body[name] = junk
        with contextlib.suppress(WireError):
            decode(frame(msg.TYPE, body))


def test_unannotated_fields_get_their_types_default_bounds() -> None:
    from daemons.core.schema import from_dict

    @dataclasses.dataclass(frozen=True)
    class New:
        count: int
        ratio: float
        note: str

    assert from_dict(New, {"count": 1, "ratio": 0.5, "note": "ok"}) == New(1, 0.5, "ok")
    for field, bad in (("count", 2**60), ("ratio", math.nan), ("ratio", -math.inf), ("note", "x" * 5000)):
        body: dict[str, Any] = {"count": 1, "ratio": 0.5, "note": "ok", field: bad}
        with pytest.raises(SchemaError, match=field):
            from_dict(New, body)


def test_envelope_sender_and_id_are_bounded() -> None:
    good = to_dict(next(iter([MESSAGE_TYPES["status_request"]()])))
    for sender, msg_id in (("a\x1b[2J", "i"), ("s", "x" * 300), ("s\n", "i")):
        with pytest.raises(WireError, match="sender and id"):
            decode(bytes(msgpack.packb([1, "status_request", sender, msg_id, good])))
