"""The `schedctl` command line: a thin Typer layer over the library in `daemons/`."""

from __future__ import annotations

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

app = typer.Typer(
    name="schedctl",
    help="Schedule LLM inference on GPU nodes: centralized coordinator vs gossip peers.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,  # plain help and one-line usage errors, no panels
)
start_app = typer.Typer(help="Start one daemon in the foreground (what the systemd units run).",
                        no_args_is_help=True)
app.add_typer(start_app, name="start")
start_app.command("loadgen")(start_loadgen)
app.add_typer(loadgen_app, name="loadgen")
start_app.command("emulator")(start_emulator)

start_app.command("node")(start_node)
start_app.command("coordinator")(start_coordinator)
app.command("status")(status)
app.add_typer(node_app, name="node")
app.add_typer(experiment_app, name="experiment")
app.add_typer(study_app, name="study")
app.add_typer(keys_app, name="keys")
app.command("logs")(logs)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
