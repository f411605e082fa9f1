"""Straight-line validators, generated once per message class: the common case without the walk.

`schema.from_dict` validates a body by calling one compiled checker closure per field
(schema.py). For a Schedule that is eight calls, a dict of values and `cls(**values)`:
≈2 µs of the coordinator's ≈15 µs decision. Most bodies on the wire are the canonical
form our own encoder writes (every field present, each of its exact type), and for those
the checks can run inline, in one function generated from the same annotations, without a
call per field (the technique of `dataclasses`' generated `__init__`).

A fast validator never refuses anything: it returns the built message, or `MISS` when the
body is not plainly valid (a field missing or unknown, an int where a float goes, a
non-ASCII name, any value out of bounds, ...). On `MISS`, the generic walk decides, as it
always did, with its error naming the field. So a body is accepted or refused exactly as
before, and the fast path only has to be right about what it accepts:
tests/core/test_fastcheck.py checks that whatever it accepts, the generic walk accepts
too, with an equal value of the same types.

Fields of kinds that gain nothing inline (nested messages, maps, unions of several types,
`Memo` fields) call the field's own compiled checker; one that raises is a `MISS` too.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from collections.abc import Callable
from typing import Any

from daemons.core.errors import SchemaError
from daemons.core.slotted import positional

MISS: Any = object()  # "not plainly valid: let the generic walk decide"

Fast = Callable[[dict[str, Any]], Any]


def compile_fast(cls: type, checks: dict[str, Callable[[Any], Any]], meta_of: Callable[[Any], Any]) -> Fast | None:
    """The straight-line validator of `cls`, or None when it has no field or one the
    constructor does not take. `checks` are the generic per-field checkers (used for the
    fields not inlined); `meta_of(tp)` splits an annotation into (base, bounds) the way the
    schema reads it: (type, Range | None, Size | None, Pattern | None, Memo | None) defaults applied."""
    fields = dataclasses.fields(cls)
    if not fields or any(not f.init for f in fields):
        return None
    hints = typing.get_type_hints(cls, include_extras=True)
    env: dict[str, Any] = {"MISS": MISS, "SchemaError": SchemaError, "cls": _maker(cls)}
    lines = ["def fast(data):", f"    if len(data) != {len(fields)}:", "        return MISS", "    try:"]
    lines += [f"        v{i} = data[{f.name!r}]" for i, f in enumerate(fields)]
    lines += ["    except KeyError:", "        return MISS"]
    for i, f in enumerate(fields):
        test = _inline(f"v{i}", hints[f.name], meta_of, env, f"t{i}")
        if test is None:  # the field's own checker, whose refusal is a MISS
            env[f"c{i}"] = checks[f.name]
            lines += ["    try:", f"        v{i} = c{i}(v{i})", "    except SchemaError:", "        return MISS"]
        else:
            lines += [f"    if not ({test}):", "        return MISS"]
    lines.append(f"    return cls({', '.join(f'v{i}' for i in range(len(fields)))})")
    # Source built from our own annotations only (field names and bounds), never from input.
    exec(compile("\n".join(lines), f"<fastcheck {cls.__qualname__}>", "exec"), env)
    fast: Fast = env["fast"]
    return fast


def _maker(cls: type) -> Callable[..., Any]:
    """How the validated fields become the message: slot by slot (slotted.py) where that is
    the same as calling the class, else the class itself."""
    try:
        return positional(cls)
    except TypeError:
        return cls


def _inline(var: str, tp: Any, meta_of: Callable[[Any], Any], env: dict[str, Any], prefix: str) -> str | None:
    """A Python expression true when `var` is plainly valid for `tp`, or None to call the checker."""
    base, bounds, size, pattern, memo = meta_of(tp)
    origin = typing.get_origin(base)
    if memo is not None:
        return None
    if origin in (typing.Union, types.UnionType):
        options = [a for a in typing.get_args(base) if a is not type(None)]
        if len(options) != 1 or len(options) == len(typing.get_args(base)):
            return None  # several types, or no None: the generic union decides
        inner = _inline(var, _annotated(options[0], tp), meta_of, env, prefix)
        return None if inner is None else f"{var} is None or ({inner})"
    if origin is list:
        item = _inline("x", typing.get_args(base)[0], meta_of, env, prefix + "i")
        if item is None:
            return None
        # a non-empty list's items are checked in a generator: most lists on the hot path are empty
        return f"type({var}) is list and len({var}) <= {size} and (not {var} or all({item} for x in {var}))"
    if base is int or base is float:
        lo, hi = _literal(bounds.lo, env, prefix + "lo"), _literal(bounds.hi, env, prefix + "hi")
        return f"type({var}) is {base.__name__} and {lo} <= {var} <= {hi}"
    if base is str:
        test = f"type({var}) is str and len({var}) <= {size}"
        if pattern is None:
            return test
        if not pattern.printable_ascii:
            return None  # the regex decides, in the generic checker
        return f"{test} and {var}.isascii() and {var}.isprintable()"
    if base is bool:
        return f"type({var}) is bool"
    if base is typing.Any:
        return "True"
    return None  # nested messages, maps, anything else: its own checker


def _annotated(base: Any, tp: Any) -> Any:
    """`base` with the bounds that `tp` (an Annotated union) carries, as the schema applies them."""
    if typing.get_origin(tp) is typing.Annotated:
        return typing.Annotated[(base, *typing.get_args(tp)[1:])]
    return base


def _literal(value: float, env: dict[str, Any], name: str) -> str:
    """`value` as source (exact for ints and finite floats), else a name bound in `env`."""
    if isinstance(value, int) or (isinstance(value, float) and math.isfinite(value)):
        return repr(value)
    env[name] = value
    return name
