"""The `schedctl` command line: a thin Typer layer over the library in `daemons/`."""

from __future__ import annotations

from importlib import metadata
from typing import Annotated

import typer

from cli.lazy import lazy_group

# Imported when used (cli/lazy.py): a daemon started as `schedctl start X` loads X alone.
COMMANDS = {"status": ("cli.status", "status"), "watch": ("cli.watch.command", "watch"),
            "logs": ("cli.logs", "logs"), "start": ("cli.start", "start_app"),
            "loadgen": ("cli.loadgen", "loadgen_app"), "node": ("cli.start_node", "node_app"),
            "experiment": ("cli.experiment.commands", "experiment_app"),
            "study": ("cli.study.commands", "study_app"), "keys": ("cli.keys", "keys_app")}

app = typer.Typer(
    name="schedctl",
    help="Schedule LLM inference on GPU nodes: centralized coordinator vs gossip peers.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,  # plain help and one-line usage errors, no panels
    cls=lazy_group(COMMANDS),
)


def _version() -> str:
    try:
        return metadata.version("schedctl")
    except metadata.PackageNotFoundError:  # run from a checkout that was never installed
        return "unknown (not installed)"


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"schedctl {_version()}")
        raise typer.Exit()


@app.callback()
def _root(version: Annotated[bool, typer.Option("--version", is_eager=True, callback=_print_version,
                                                help="Print the version and exit.")] = False) -> None:
    """Schedule LLM inference on GPU nodes: centralized coordinator vs gossip peers."""


def main() -> None:
    app()


if __name__ == "__main__":
    main()
