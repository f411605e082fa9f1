"""Validation of msgpack-decoded bodies against frozen dataclasses.

Every message body is a dataclass whose annotations are the schema: `str`, `int`,
`float`, `bool`, `X | None`, `list[X]`, `dict[str, X]`, `Any` and nested dataclasses. A
body is accepted only if every required field is present with the right type and no
unknown field is present, so a typo on the sender's side fails loudly instead of silently
defaulting. Lists and maps are capped so a hostile peer cannot make a receiver allocate
without bound.

The annotations are compiled once per class into small checker and encoder closures:
decoding and encoding sit on every daemon's hot path (the coordinator decodes a request
and encodes a reply per decision), so nothing is re-derived per message.
"""

from __future__ import annotations

import dataclasses
import functools
import types
import typing
from collections.abc import Callable
from typing import Any, TypeVar

from daemons.bus.errors import SchemaError

MAX_LIST_LEN = 4096

T = TypeVar("T")
Check = Callable[[Any], Any]  # returns the accepted value or raises SchemaError (relative path)
Encode = Callable[[Any], Any]


@dataclasses.dataclass(frozen=True, slots=True)
class _Compiled:
    checks: dict[str, Check]
    required: frozenset[str]


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
    compiled = _compiled(cls)
    values = {}
    for name, value in data.items():
        check = compiled.checks.get(name)
        if check is None:
            unknown = sorted(str(k) for k in data if k not in compiled.checks)
            raise SchemaError(f": unknown field(s) {unknown}")
        try:
            values[name] = check(value)
        except SchemaError as exc:
            raise SchemaError(f".{name}{exc}") from None
    if len(values) < len(compiled.required) or not compiled.required.issubset(values):
        missing = sorted(compiled.required - set(values))
        raise SchemaError(f": missing field {missing[0]!r}")
    return cls(**values)


@functools.cache
def _compiled(cls: type) -> _Compiled:
    hints = typing.get_type_hints(cls)
    fields = dataclasses.fields(cls)
    required = frozenset(f.name for f in fields
                         if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING)
    return _Compiled({f.name: _checker(hints[f.name]) for f in fields}, required)


def _checker(tp: Any) -> Check:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        return _union_checker(typing.get_args(tp))
    if origin is list:
        return _list_checker(_checker(typing.get_args(tp)[0]))
    if origin is dict:
        return _dict_checker(_checker(typing.get_args(tp)[1]))
    if dataclasses.is_dataclass(tp):
        return functools.partial(_build, typing.cast(type, tp))
    if tp is typing.Any:
        return lambda value: value
    return _scalar_checker(tp)


def _scalar_checker(tp: type) -> Check:
    def check(value: Any) -> Any:
        if type(value) is tp:
            return value
        if tp is float and type(value) is int:
            return float(value)  # msgpack packs 1.0 from other languages as 1
        raise SchemaError(f": expected {tp.__name__}, got {type(value).__name__}")

    return check


def _union_checker(options: tuple[Any, ...]) -> Check:
    nullable = type(None) in options
    checks = [_checker(o) for o in options if o is not type(None)]

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


def _list_checker(item: Check) -> Check:
    def check(value: Any) -> list[Any]:
        if not isinstance(value, list | tuple):
            raise SchemaError(f": expected a list, got {type(value).__name__}")
        if len(value) > MAX_LIST_LEN:
            raise SchemaError(f": list longer than {MAX_LIST_LEN}")
        out = []
        for i, v in enumerate(value):
            try:
                out.append(item(v))
            except SchemaError as exc:
                raise SchemaError(f"[{i}]{exc}") from None
        return out

    return check


def _dict_checker(item: Check) -> Check:
    def check(value: Any) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise SchemaError(f": expected a map, got {type(value).__name__}")
        if len(value) > MAX_LIST_LEN:
            raise SchemaError(f": map larger than {MAX_LIST_LEN}")
        out = {}
        for k, v in value.items():
            if not isinstance(k, str):
                raise SchemaError(": map keys must be strings")
            try:
                out[k] = item(v)
            except SchemaError as exc:
                raise SchemaError(f"[{k!r}]{exc}") from None
        return out

    return check


@functools.cache
def _encoder(cls: type) -> Encode:
    """Fields holding dataclasses are converted; everything else is packed as it is."""
    hints = typing.get_type_hints(cls)
    nested = {f.name: enc for f in dataclasses.fields(cls) if (enc := _value_encoder(hints[f.name])) is not None}
    names = [f.name for f in dataclasses.fields(cls)]

    def encode(obj: Any) -> dict[str, Any]:
        out = {name: getattr(obj, name) for name in names}
        for name, enc in nested.items():
            out[name] = enc(out[name])
        return out

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
