"""The validators' shortcuts decide exactly as the checks they skip (daemons/core/schema.py).

- `Pattern(printable_ascii=True)`: an ASCII str is judged by `str.isprintable()` instead of
  the regex; every pattern making that claim must agree with its regex on every ASCII str.
- `Memo`: a value already accepted is recognised instead of checked again; one that differs
  in any way, a type included (`1 == 1.0 == True` in Python), is checked afresh, a refused
  value is refused every time, and what is kept stays within its byte budget.
"""

from __future__ import annotations

import dataclasses
import re
import typing
from typing import Annotated, Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from daemons.coordinator.testing import node_state
from daemons.core.errors import SchemaError
from daemons.core.messages import MESSAGE_TYPES, CatalogEntry, NodeState
from daemons.core.schema import Memo, Pattern, Size, _memo_checker, from_dict, to_dict

ASCII = "".join(chr(i) for i in range(128))


def claimed_patterns() -> list[tuple[Pattern, int]]:
    """Every Pattern of every message field that claims `printable_ascii`, with its Size."""
    found: dict[tuple[str, int], tuple[Pattern, int]] = {}

    def walk(tp: Any, meta: tuple[Any, ...] = ()) -> None:
        if typing.get_origin(tp) is typing.Annotated:
            base, *extra = typing.get_args(tp)
            walk(base, meta + tuple(extra))
            return
        for arg in typing.get_args(tp):
            walk(arg)
        pattern = next((m for m in meta if isinstance(m, Pattern)), None)
        size = next((m for m in meta if isinstance(m, Size)), None)
        if tp is str and pattern is not None and pattern.printable_ascii:
            assert size is not None, f"{pattern} claims printable_ascii without a Size"
            found[(pattern.regex, size.max_len)] = (pattern, size.max_len)
        if dataclasses.is_dataclass(tp):
            for hint in typing.get_type_hints(tp, include_extras=True).values():
                walk(hint)

    for cls in MESSAGE_TYPES.values():
        walk(cls)
    return list(found.values())


def test_the_messages_claim_printable_ascii_for_their_names_words_and_endpoints() -> None:
    assert len(claimed_patterns()) >= 2  # names/endpoints (256) and words (64)


@pytest.mark.parametrize(("pattern", "max_len"), claimed_patterns(), ids=lambda p: getattr(p, "what", str(p)))
def test_every_ascii_character_is_judged_alike(pattern: Pattern, max_len: int) -> None:
    regex = re.compile(pattern.regex)
    for c in ASCII:
        assert (regex.fullmatch(c) is not None) == c.isprintable(), repr(c)
    assert regex.fullmatch("x" * max_len) and regex.fullmatch("")  # the regex allows the whole Size


@given(st.text(alphabet=ASCII, max_size=80))
def test_every_ascii_string_is_judged_alike(value: str) -> None:
    for pattern, max_len in claimed_patterns():
        expected = re.compile(pattern.regex).fullmatch(value) is not None
        assert (value.isprintable() and len(value) <= max_len) == expected


def test_a_name_with_a_control_character_is_still_refused() -> None:
    good = to_dict(node_state("n0"))
    for bad in ("n0\x1b[2J", "n0\n", "n0\x7f", "n0\x85"):  # \x85: not ASCII, the regex decides
        with pytest.raises(SchemaError, match="node"):
            from_dict(NodeState, {**good, "node": bad})
    assert from_dict(NodeState, {**good, "node": "nœud-é"}).node == "nœud-é"  # non-ASCII printable: regex


# ----- Memo --------------------------------------------------------------------------------------
def test_an_unchanged_catalog_is_recognised_and_shared_but_its_list_is_not() -> None:
    body = to_dict(node_state("memo-a", catalog=[f"memo-m{i}" for i in range(20)]))
    first, second = from_dict(NodeState, body), from_dict(NodeState, {**body, "seq": 2})
    assert first.catalog == second.catalog and first.catalog is not second.catalog
    assert all(a is b for a, b in zip(first.catalog, second.catalog, strict=True))


def test_a_changed_catalog_is_checked_afresh() -> None:
    body = to_dict(node_state("memo-b", catalog=["memo-x", "memo-y"]))
    before = from_dict(NodeState, body)
    body["catalog"] = [{**body["catalog"][0], "load_s": 9.5}, body["catalog"][1]]
    after = from_dict(NodeState, body)
    assert after.catalog[0] == CatalogEntry("memo-x", before.catalog[0].footprint_bytes, 9.5)
    assert after.catalog[1] is before.catalog[1] or after.catalog[1] == before.catalog[1]


def test_a_value_equal_but_of_another_type_is_not_taken_for_a_known_one() -> None:
    body = to_dict(node_state("memo-c", catalog=["memo-z"]))
    body["catalog"][0]["footprint_bytes"] = 1
    assert from_dict(NodeState, body).catalog[0].footprint_bytes == 1
    for bad in (True, 1.0):  # == 1, but a bool and a float are no byte count
        body["catalog"][0]["footprint_bytes"] = bad
        with pytest.raises(SchemaError, match=r"catalog\[0\]\.footprint_bytes"):
            from_dict(NodeState, body)
    body["catalog"][0]["footprint_bytes"] = 1
    body["catalog"][0]["load_s"] = 5  # an int for a float is accepted, and comes out a float
    assert from_dict(NodeState, body).catalog[0].load_s == 5.0


def test_a_refused_catalog_is_refused_every_time() -> None:
    body = to_dict(node_state("memo-d", catalog=["memo-w"]))
    body["catalog"][0]["model"] = "bad\nname"
    for _ in range(3):
        with pytest.raises(SchemaError, match="catalog"):
            from_dict(NodeState, body)


def test_memo_keeps_its_byte_budget_and_checks_an_evicted_value_again() -> None:
    checked: list[Any] = []

    def inner(value: Any) -> Any:  # the check being remembered: counts its calls
        checked.append(value)
        return list(value)

    check = _memo_checker(inner, Memo(max_bytes=200, max_value_bytes=100))
    values = [[i] * 10 for i in range(10)]  # ~30 bytes marshalled each: about 6 fit
    for v in values:
        assert check(v) == v
    assert len(checked) == 10
    check(values[-1])  # the newest is kept
    assert len(checked) == 10
    check(values[0])  # the oldest was evicted: checked again
    assert len(checked) == 11
    big = list(range(200))  # over max_value_bytes: never kept
    check(big)
    check(big)
    assert len(checked) == 13


def test_memo_checks_a_value_marshal_cannot_key() -> None:
    check = _memo_checker(lambda v: v, Memo())
    thing = object()
    assert check(thing) is thing


def test_memo_applies_to_a_field_of_any_dataclass() -> None:
    @dataclasses.dataclass(frozen=True)
    class Holder:
        items: Annotated[list[int], Size(4), Memo()]

    assert from_dict(Holder, {"items": [1, 2]}) == Holder([1, 2])
    with pytest.raises(SchemaError, match="items"):
        from_dict(Holder, {"items": [1, 2, 3, 4, 5]})  # the Size still applies
