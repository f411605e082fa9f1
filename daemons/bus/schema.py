"""Validation of msgpack-decoded bodies against frozen dataclasses.

Every message body is a dataclass whose annotations are the schema: `str`, `int`,
`float`, `bool`, `X | None`, `list[X]`, `dict[str, X]` and nested dataclasses. A body
is accepted only if every required field is present with the right type and no unknown
field is present, so a typo on the sender's side fails loudly instead of silently
defaulting. Lists are capped so a hostile peer cannot make a receiver allocate without
bound.
"""

from __future__ import annotations

import dataclasses
import functools
import types
import typing
from typing import Any, TypeVar

from daemons.bus.errors import SchemaError

MAX_LIST_LEN = 4096

T = TypeVar("T")


@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def from_dict(cls: type[T], data: object, where: str = "body") -> T:
    """Build `cls` from decoded msgpack data, raising SchemaError on any mismatch."""
    if not isinstance(data, dict):
        raise SchemaError(f"{where}: expected a map, got {type(data).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = set(data) - set(fields)
    if unknown:
        raise SchemaError(f"{where}: unknown field(s) {sorted(map(str, unknown))}")
    hints = _hints(cls)  # type: ignore[arg-type]
    values: dict[str, Any] = {}
    for name, field in fields.items():
        if name in data:
            values[name] = _check(hints[name], data[name], f"{where}.{name}")
        elif field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING:
            raise SchemaError(f"{where}: missing field {name!r}")
    return cls(**values)


def to_dict(obj: object) -> dict[str, Any]:
    """The msgpack-ready form of a message dataclass."""
    return dataclasses.asdict(obj)  # type: ignore[call-overload, no-any-return]


def _check(tp: Any, value: object, where: str) -> Any:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        return _check_union(typing.get_args(tp), value, where)
    if origin is list:
        return _check_list(typing.get_args(tp)[0], value, where)
    if origin is dict:
        return _check_dict(typing.get_args(tp)[1], value, where)
    if dataclasses.is_dataclass(tp):
        return from_dict(tp, value, where)  # type: ignore[arg-type]
    if tp is typing.Any:
        return value
    return _check_scalar(tp, value, where)


def _check_union(options: tuple[Any, ...], value: object, where: str) -> Any:
    if value is None and type(None) in options:
        return None
    errors = []
    for option in options:
        if option is type(None):
            continue
        try:
            return _check(option, value, where)
        except SchemaError as exc:
            errors.append(str(exc))
    raise SchemaError(errors[0] if len(errors) == 1 else f"{where}: no alternative matches")


def _check_list(item: Any, value: object, where: str) -> list[Any]:
    if not isinstance(value, list | tuple):
        raise SchemaError(f"{where}: expected a list, got {type(value).__name__}")
    if len(value) > MAX_LIST_LEN:
        raise SchemaError(f"{where}: list longer than {MAX_LIST_LEN}")
    return [_check(item, v, f"{where}[{i}]") for i, v in enumerate(value)]


def _check_dict(item: Any, value: object, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise SchemaError(f"{where}: expected a map, got {type(value).__name__}")
    if len(value) > MAX_LIST_LEN:
        raise SchemaError(f"{where}: map larger than {MAX_LIST_LEN}")
    out = {}
    for k, v in value.items():
        if not isinstance(k, str):
            raise SchemaError(f"{where}: map keys must be strings")
        out[k] = _check(item, v, f"{where}[{k!r}]")
    return out


def _check_scalar(tp: type, value: object, where: str) -> object:
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)  # msgpack packs 1.0 from other languages as 1
    if tp is int and isinstance(value, bool):
        raise SchemaError(f"{where}: expected int, got bool")
    if not isinstance(value, tp):
        raise SchemaError(f"{where}: expected {tp.__name__}, got {type(value).__name__}")
    return value
