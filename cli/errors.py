"""How the CLI reports a user's mistake: one line naming the problem and the fix, exit 2."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import ParamSpec, TypeVar

import typer

from daemons.core.errors import ConfigError

P = ParamSpec("P")
R = TypeVar("R")


def exit_on_config_error(fn: Callable[P, R]) -> Callable[P, R]:
    """Turn a ConfigError into `error: <message>` on stderr and exit status 2, no traceback."""

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return fn(*args, **kwargs)
        except ConfigError as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(2) from None

    return wrapper
