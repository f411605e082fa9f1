"""Validation of msgpack-decoded bodies against frozen dataclasses.

Every message body is a dataclass whose annotations are the schema: `str`, `int`,
`float`, `bool`, `X | None`, `list[X]`, `dict[str, X]`, `Any` and nested dataclasses. A
body is accepted only if every required field is present with the right type and no
unknown field is present, so a typo on the sender's side fails loudly instead of silently
defaulting.

Every value is bounded, declared once next to its field with `typing.Annotated`:

    tokens: Annotated[int, Range(0, MAX_TOKENS)]
    node: Name                                   # = Annotated[str, Size(128), Pattern(NAME)]
    exclude: Annotated[list[Name], Size(64)]

`Range(lo, hi)` bounds an int or float (inclusive); `Size(n)` bounds the length of a str
(characters) or the items of a list or map; `Pattern(regex)` must match a whole str. A
field without them gets the default of its type (`DEFAULT_INT`, `DEFAULT_FLOAT`,
`DEFAULT_STR_LEN`, `MAX_LIST_LEN`), so a new field is bounded even if nobody thought of
it. Floats must be finite: NaN and the infinities pass no comparison a receiver makes.
A value out of bounds raises SchemaError naming the field and the bound, never the value,
so a refusal never echoes what an attacker sent.

The annotations are compiled once per class into small checker and encoder closures:
decoding and encoding sit on every daemon's hot path (the coordinator decodes a request
and encodes a reply per decision), so nothing is re-derived per message. A body in the
canonical form (every field present, each of its exact type, names in printable ASCII) is
first offered to a straight-line validator generated from the same annotations
(fastcheck.py); whatever it does not plainly accept is judged by the checkers, so what is
accepted, refused and said about it does not depend on which path ran.
"""

from __future__ import annotations

import dataclasses
import functools
import marshal
import re
import threading
import types
import typing
from collections.abc import Callable
from typing import Any, TypeVar

from daemons.core.errors import SchemaError
from daemons.core.fastcheck import MISS, compile_fast

MAX_FRAME_BYTES = 1 << 20  # one envelope, packed: 1 MiB (a prompt of ~200k words still fits)
MAX_LIST_LEN = 4096
DEFAULT_STR_LEN = 4096
I64_MAX = (1 << 63) - 1
U63 = I64_MAX  # a non-negative int64: counters, nonces, byte counts
# msgpack ints are at most 64 bits anyway; the default keeps plain ints exact as floats (2**53)
# so a value survives a trip through JSON (status output, CSV) unchanged.
DEFAULT_INT_ABS = 1 << 53
DEFAULT_FLOAT_ABS = 1e15


@dataclasses.dataclass(frozen=True, slots=True)
class Range:
    """An int or float field's inclusive bounds."""

    lo: float
    hi: float


@dataclasses.dataclass(frozen=True, slots=True)
class Size:
    """The most characters of a str, or items of a list or map."""

    max_len: int


@dataclasses.dataclass(frozen=True, slots=True)
class Pattern:
    """A regular expression a str field must match in full; `what` names it in errors.

    `printable_ascii`: the regex matches every printable ASCII string (`str.isprintable`)
    its field's Size allows, and no other ASCII string. Such a str is then accepted without
    running the regex (≈0.3 µs a name, several names a message); a non-ASCII str always runs
    it. tests/core/test_schema_fast.py checks the claim for every pattern that makes it.
    """

    regex: str
    what: str = "pattern"
    printable_ascii: bool = False


@dataclasses.dataclass(frozen=True, slots=True)
class Memo:
    """Remember this field's recently accepted values: a value equal to one of them is not
    validated again and gets a shallow copy of the earlier result.

    For a large value that senders repeat unchanged, such as a node's model catalog in every
    state it publishes (20 models: ≈30 µs of checks per message, against ≈1 µs to recognise
    it). A value is recognised by its `marshal` bytes, which tell bool, int and float apart
    (`==` does not: `1 == 1.0 == True`), so a value is only ever matched by one of exactly
    the same types. At most `max_bytes` of them are kept (the oldest go first); a value over
    `max_value_bytes` is never kept, nor is a refused one: it is refused again each time.
    """

    max_bytes: int = 16 << 20
    max_value_bytes: int = 64 << 10


DEFAULT_INT = Range(-DEFAULT_INT_ABS, DEFAULT_INT_ABS)
DEFAULT_FLOAT = Range(-DEFAULT_FLOAT_ABS, DEFAULT_FLOAT_ABS)

T = TypeVar("T")
Check = Callable[[Any], Any]  # returns the accepted value or raises SchemaError (relative path)
Encode = Callable[[Any], Any]


@dataclasses.dataclass(frozen=True, slots=True)
class _Compiled:
    checks: dict[str, Check]
    required: frozenset[str]
    fast: Callable[[dict[str, Any]], Any] | None = None  # fastcheck.py: the canonical body, inline


def from_dict(cls: type[T], data: object, where: str = "body") -> T:
    """Build `cls` from decoded msgpack data, raising SchemaError on any mismatch."""
    try:
        return _build(cls, data)  # type: ignore[no-any-return]
    except SchemaError as exc:
        raise SchemaError(f"{where}{exc}") from None


def to_dict(obj: object) -> dict[str, Any]:
    """The msgpack-ready form of a message dataclass."""
    encode: Encode = _encoder(typing.cast(Any, type(obj)))
    out: dict[str, Any] = encode(obj)
    return out


def _build(cls: type, data: object) -> Any:
    if not isinstance(data, dict):
        raise SchemaError(f": expected a map, got {type(data).__name__}")
    compiled = _COMPILED.get(cls) or _compiled(cls)
    if compiled.fast is not None:
        built = compiled.fast(data)
        if built is not MISS:
            return built
    return _walk(cls, compiled, data)


def _walk(cls: type, compiled: _Compiled, data: dict[Any, Any]) -> Any:
    """The generic validation: one checker per field; the verdict on anything the fast path misses."""
    checks = compiled.checks
    values = {}
    name = None
    try:  # one handler for the whole map: this loop runs for every field of every message
        for name, value in data.items():
            values[name] = checks[name](value)
    except KeyError:
        if name in checks:  # not a missing checker: a bug in a check, not the sender's
            raise
        unknown = sorted(str(k) for k in data if k not in checks)
        raise SchemaError(f": unknown field(s) {unknown}") from None
    except SchemaError as exc:
        raise SchemaError(f".{name}{exc}") from None
    # Every known field present (what our encoder always sends) needs no further look.
    if len(values) != len(checks) and not compiled.required.issubset(values):
        missing = sorted(compiled.required - set(values))
        raise SchemaError(f": missing field {missing[0]!r}")
    return cls(**values)


_COMPILED: dict[type, _Compiled] = {}  # filled by _compiled, read first by _build (a dict lookup, no call)


@functools.cache
def _compiled(cls: type) -> _Compiled:
    hints = typing.get_type_hints(cls, include_extras=True)
    fields = dataclasses.fields(cls)
    required = frozenset(f.name for f in fields
                         if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING)
    checks = {f.name: _checker(hints[f.name]) for f in fields}
    compiled = _COMPILED[cls] = _Compiled(checks, required, compile_fast(cls, checks, _bounds))
    return compiled


def _bounds(tp: Any) -> tuple[Any, Range, int, Pattern | None, Memo | None]:
    """(base type, Range, size, Pattern, Memo) of an annotation, with the defaults `_checker`
    applies (for fastcheck.py, which must read the bounds exactly as the checkers do)."""
    meta: tuple[Any, ...] = ()
    while typing.get_origin(tp) is typing.Annotated:
        tp, *extra = typing.get_args(tp)
        meta += tuple(extra)
    size = _first(meta, Size)
    default_len = DEFAULT_STR_LEN if tp is str else MAX_LIST_LEN
    return (tp, _first(meta, Range) or (DEFAULT_INT if tp is int else DEFAULT_FLOAT),
            default_len if size is None else size.max_len, _first(meta, Pattern), _first(meta, Memo))


def _checker(tp: Any, meta: tuple[Any, ...] = ()) -> Check:
    origin = typing.get_origin(tp)
    if origin is typing.Annotated:
        base, *extra = typing.get_args(tp)
        return _checker(base, meta + tuple(extra))
    if origin in (typing.Union, types.UnionType):
        return _union_checker(typing.get_args(tp), meta)  # bounds apply to each alternative
    memo = _first(meta, Memo)
    if memo is not None:
        return _memo_checker(_checker(tp, tuple(m for m in meta if not isinstance(m, Memo))), memo)
    size = _first(meta, Size)
    if origin is list:
        return _list_checker(_checker(typing.get_args(tp)[0]), MAX_LIST_LEN if size is None else size.max_len)
    if origin is dict:
        return _dict_checker(_checker(typing.get_args(tp)[1]), MAX_LIST_LEN if size is None else size.max_len)
    if dataclasses.is_dataclass(tp):
        return functools.partial(_build, typing.cast(type, tp))
    if tp is typing.Any:
        return lambda value: value
    if tp is int or tp is float:
        bounds = _first(meta, Range) or (DEFAULT_INT if tp is int else DEFAULT_FLOAT)
        return _number_checker(tp, bounds)
    if tp is str:
        return _str_checker(DEFAULT_STR_LEN if size is None else size.max_len, _first(meta, Pattern))
    return _scalar_checker(tp)


def _first(meta: tuple[Any, ...], kind: type[T]) -> T | None:
    return next((m for m in meta if isinstance(m, kind)), None)


def _scalar_checker(tp: type) -> Check:
    def check(value: Any) -> Any:
        if type(value) is tp:
            return value
        raise SchemaError(f": expected {tp.__name__}, got {type(value).__name__}")

    return check


def _number_checker(tp: type, bounds: Range) -> Check:
    lo, hi = bounds.lo, bounds.hi
    refusal = f": out of range [{_num(lo)}, {_num(hi)}]"

    def check(value: Any) -> Any:
        kind = type(value)
        if kind is not tp and not (tp is float and kind is int):
            raise SchemaError(f": expected {tp.__name__}, got {kind.__name__}")
        # NaN fails both comparisons, so it is refused here too, like the infinities.
        if not lo <= value <= hi:
            raise SchemaError(refusal)
        return float(value) if tp is float else value  # msgpack packs 1.0 from other languages as 1

    return check


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() and abs(x) < 1e16 else f"{x:g}"


def _str_checker(max_len: int, pattern: Pattern | None) -> Check:
    regex = None if pattern is None else re.compile(pattern.regex)
    ascii_fast = pattern is not None and pattern.printable_ascii

    def check(value: Any) -> Any:
        if type(value) is not str:
            raise SchemaError(f": expected str, got {type(value).__name__}")
        if len(value) > max_len:
            raise SchemaError(f": longer than {max_len} characters")
        if regex is not None and not (ascii_fast and value.isascii() and value.isprintable()) \
                and regex.fullmatch(value) is None:
            assert pattern is not None
            raise SchemaError(f": not a valid {pattern.what}")
        return value

    return check


def _union_checker(options: tuple[Any, ...], meta: tuple[Any, ...] = ()) -> Check:
    nullable = type(None) in options
    checks = [_checker(o, meta) for o in options if o is not type(None)]

    def check(value: Any) -> Any:
        if value is None and nullable:
            return None
        errors = []
        for one in checks:
            try:
                return one(value)
            except SchemaError as exc:
                errors.append(str(exc))
        raise SchemaError(errors[0] if len(errors) == 1 else ": no alternative matches")

    return check


def _list_checker(item: Check, max_len: int) -> Check:
    def check(value: Any) -> list[Any]:
        if not isinstance(value, (list, tuple)):  # a tuple: `list | tuple` builds a union per call
            raise SchemaError(f": expected a list, got {type(value).__name__}")
        if len(value) > max_len:
            raise SchemaError(f": list longer than {max_len}")
        out = []
        for i, v in enumerate(value):
            try:
                out.append(item(v))
            except SchemaError as exc:
                raise SchemaError(f"[{i}]{exc}") from None
        return out

    return check


def _dict_checker(item: Check, max_len: int) -> Check:
    def check(value: Any) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise SchemaError(f": expected a map, got {type(value).__name__}")
        if len(value) > max_len:
            raise SchemaError(f": map larger than {max_len}")
        out = {}
        for k, v in value.items():
            if not isinstance(k, str) or len(k) > DEFAULT_STR_LEN:
                raise SchemaError(": map keys must be strings of at most 4096 characters")
            try:
                out[k] = item(v)
            except SchemaError as exc:
                raise SchemaError(f"[{k[:40]!r}]{exc}") from None
        return out

    return check


# Version 2: later versions write a second reference to one object as a back-reference,
# which makes the bytes of equal values depend on reference counts (a miss, never a wrong hit).
MARSHAL_VERSION = 2


def _memo_checker(inner: Check, memo: Memo) -> Check:
    kept: dict[bytes, list[Any] | Any] = {}
    lock = threading.Lock()  # several threads of one daemon may decode at once
    held = [0]  # bytes of the keys in `kept`

    def check(value: Any) -> Any:
        try:
            key = marshal.dumps(value, MARSHAL_VERSION)
        except ValueError:  # a type marshal does not know (never one msgpack decodes): check it plainly
            return inner(value)
        found = kept.get(key)
        if found is not None:
            return list(found) if isinstance(found, list) else found
        accepted = inner(value)  # raises on a bad value, which is then never kept
        if len(key) <= memo.max_value_bytes:
            with lock:
                while kept and held[0] + len(key) > memo.max_bytes:
                    held[0] -= len(kept.pop(next(iter(kept))))
                if key not in kept:
                    kept[key] = accepted
                    held[0] += len(key)
        return list(accepted) if isinstance(accepted, list) else accepted

    return check


@functools.cache
def _encoder(cls: type) -> Encode:
    """Fields holding dataclasses are converted; everything else is packed as it is.

    Generated as one dict display over the fields, in field order (`{'node': o.node, ...}`):
    it runs for every message sent, and builds the dict in a third of the time of
    `dict(zip(names, attrgetter(...)(o)))` (the same keys, order and values)."""
    hints = typing.get_type_hints(cls)  # without extras: Annotated bounds are the receiver's business
    env: dict[str, Any] = {}
    items = []
    for f in dataclasses.fields(cls):
        enc = _value_encoder(hints[f.name])
        if enc is None:
            items.append(f"{f.name!r}: o.{f.name}")
        else:
            env[f"enc_{f.name}"] = enc
            items.append(f"{f.name!r}: enc_{f.name}(o.{f.name})")
    # Source from the class's own field names (identifiers), never from input.
    encode: Encode = eval(f"lambda o: {{{', '.join(items)}}}", env)
    return encode


def _value_encoder(tp: Any) -> Encode | None:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        inner = [e for a in typing.get_args(tp) if (e := _value_encoder(a)) is not None]
        if inner:
            return lambda v: v if v is None else inner[0](v)
        return None
    if origin is list:
        return _map_list(_value_encoder(typing.get_args(tp)[0]))
    if origin is dict:
        return _map_dict(_value_encoder(typing.get_args(tp)[1]))
    if dataclasses.is_dataclass(tp):
        return _encoder(tp)  # type: ignore[arg-type]
    return None


def _map_list(item: Encode | None) -> Encode | None:
    if item is None:
        return None
    return lambda v: [item(x) for x in v]


def _map_dict(item: Encode | None) -> Encode | None:
    if item is None:
        return None
    return lambda v: {k: item(x) for k, x in v.items()}
