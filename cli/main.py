"""The `schedctl` command line: a thin Typer layer over the library in `daemons/`."""

from __future__ import annotations

from importlib import metadata
from typing import Annotated

import typer

from cli.experiment.commands import experiment_app
from cli.keys import keys_app
from cli.loadgen import loadgen_app, start_loadgen
from cli.logs import logs
from cli.start_coordinator import start_coordinator
from cli.start_emulator import start_emulator
from cli.start_node import node_app, start_node
from cli.status import status
from cli.study.commands import study_app
from cli.watch.command import watch

app = typer.Typer(
    name="schedctl",
    help="Schedule LLM inference on GPU nodes: centralized coordinator vs gossip peers.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,  # plain help and one-line usage errors, no panels
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


start_app = typer.Typer(help="Start one daemon in the foreground (what the systemd units run).",
                        no_args_is_help=True)
app.add_typer(start_app, name="start")
start_app.command("loadgen")(start_loadgen)
app.add_typer(loadgen_app, name="loadgen")
start_app.command("emulator")(start_emulator)

start_app.command("node")(start_node)
start_app.command("coordinator")(start_coordinator)
app.command("status")(status)
app.command("watch")(watch)
app.add_typer(node_app, name="node")
app.add_typer(experiment_app, name="experiment")
app.add_typer(study_app, name="study")
app.add_typer(keys_app, name="keys")
app.command("logs")(logs)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
