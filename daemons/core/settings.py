"""Daemon configuration: a TOML section, then `SCHEDCTL_*` environment variables, then flags.

Every daemon's config is a frozen dataclass. This module turns a mapping into one,
refusing unknown keys and wrong types with a message that names the file, the key and
the fix, so a typo never silently falls back to a default.
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
import typing
from pathlib import Path
from typing import Any, TypeVar

from daemons.core.errors import ConfigError

DEFAULT_CONFIG = Path("/etc/schedctl/schedctl.toml")
T = TypeVar("T")


def read_section(path: Path | None, section: str) -> dict[str, Any]:
    """The `[section]` table of a TOML file; the default file only if it exists."""
    if path is None:
        if not DEFAULT_CONFIG.exists():
            return {}
        path = DEFAULT_CONFIG
    try:
        data = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"config file {path} not found: pass an existing file to --config") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path} is not valid TOML ({exc}): fix the syntax") from None
    table = data.get(section, {})
    if not isinstance(table, dict):
        raise ConfigError(f"{path}: [{section}] must be a table")
    return table


def env_overrides(cls: type, prefix: str) -> dict[str, str]:
    """`SCHEDCTL_<PREFIX>_<FIELD>` variables for the fields of `cls`, as raw strings."""
    out = {}
    for f in dataclasses.fields(cls):
        value = os.environ.get(f"SCHEDCTL_{prefix}_{f.name}".upper())
        if value is not None:
            out[f.name] = value
    return out


def build(cls: type[T], data: dict[str, Any], where: str) -> T:
    """Instantiate `cls` from `data`, coercing strings from the environment where safe."""
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {', '.join(unknown)}; known keys: {', '.join(fields)}")
    hints = typing.get_type_hints(cls)
    values = {name: _coerce(hints[name], value, f"{where}: {name}") for name, value in data.items()}
    try:
        return cls(**values)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{where}: {exc}") from None


def _coerce(tp: Any, value: Any, where: str) -> Any:
    origin = typing.get_origin(tp)
    if origin is tuple:
        if isinstance(value, str):
            value = [v for v in value.split(",") if v]
        if not isinstance(value, list | tuple):
            raise ConfigError(f"{where} must be a list")
        return tuple(value)
    if tp is float and isinstance(value, int | str):
        return _number(float, value, where)
    if tp is int and isinstance(value, str):
        return _number(int, value, where)
    if tp is bool and isinstance(value, str):
        return value.lower() in ("1", "true", "yes", "on")
    return value


def _number(kind: type, value: Any, where: str) -> Any:
    try:
        return kind(value)
    except ValueError:
        raise ConfigError(f"{where} must be a {kind.__name__}, got {value!r}") from None
