"""Subcommands imported when they are used, not when `schedctl` starts.

Every daemon is `schedctl start <daemon>`, so whatever `cli/main.py` imports, every node agent,
coordinator and emulator carries in memory for its whole life. Built eagerly, the command tree
loads the experiment, study, report and watch stacks (the load generator, numpy, the terminal
dashboard) into each of them. So the groups here hold (module, attribute) names and import a
subcommand only when it is looked up: `schedctl start node` loads `cli.start_node` and the
node agent, nothing else (tests/layout/test_imports.py holds that fact). Listing every command
(`--help`, the docs tests) still loads them all.

The commands are built exactly as Typer builds registered ones (`typer.main.get_command_from_info`,
`get_group_from_info`: the functions `Typer.command()` and `add_typer` end in), with the app's
markup mode, so help and parsing are unchanged. Click's documented pattern for this is a
`Group` whose `get_command` imports (click docs, "Lazily Loading Subcommands"); Typer's groups
read `commands` directly, so the laziness is in that mapping instead.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator, MutableMapping
from typing import TYPE_CHECKING, Any

import typer
from typer.core import MarkupMode, TyperGroup
from typer.main import get_command_from_info, get_group_from_info
from typer.models import CommandInfo, TyperInfo

if TYPE_CHECKING:  # Typer's own Click (vendored as typer._click since 0.2x), whose classes it builds
    from typer._click import Command

#: (module, attribute): a `typer.Typer` (a group of commands) or a command function.
Spec = tuple[str, str]


class LazyCommands(MutableMapping[str, "Command"]):
    """A group's subcommands by name, each imported and built on first access."""

    def __init__(self, loaded: MutableMapping[str, Command], specs: dict[str, Spec],
                 markup: MarkupMode) -> None:
        self._loaded = dict(loaded)
        self._specs = dict(specs)
        self._order = [*self._loaded, *(name for name in specs if name not in self._loaded)]
        self._markup = markup

    def __getitem__(self, name: str) -> Command:
        if name not in self._loaded:
            if name not in self._specs:
                raise KeyError(name)
            self._loaded[name] = build(name, self._specs[name], self._markup)
        return self._loaded[name]

    def __setitem__(self, name: str, command: Command) -> None:
        if name not in self._order:
            self._order.append(name)
        self._loaded[name] = command

    def __delitem__(self, name: str) -> None:
        if name not in self._order:
            raise KeyError(name)
        self._order.remove(name)
        self._loaded.pop(name, None)
        self._specs.pop(name, None)

    def __contains__(self, name: object) -> bool:  # no import just to ask
        return name in self._loaded or name in self._specs

    def __iter__(self) -> Iterator[str]:
        return iter(list(self._order))

    def __len__(self) -> int:
        return len(self._order)


def build(name: str, spec: Spec, markup: MarkupMode) -> Command:
    """Import `spec` and make the Click command Typer would have made of it when registered."""
    module, attribute = spec
    target: Any = getattr(importlib.import_module(module), attribute)
    if isinstance(target, typer.Typer):
        return get_group_from_info(TyperInfo(target, name=name), pretty_exceptions_short=True,
                                   suggest_commands=True, rich_markup_mode=markup)
    return get_command_from_info(CommandInfo(name=name, callback=target), pretty_exceptions_short=True,
                                 rich_markup_mode=markup)


def lazy_group(specs: dict[str, Spec]) -> type[TyperGroup]:
    """A TyperGroup class (`typer.Typer(cls=...)`) that adds `specs` as lazily imported subcommands."""

    class LazyGroup(TyperGroup):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self.commands = LazyCommands(self.commands, specs, self.rich_markup_mode)

    return LazyGroup
