"""The `schedctl` command line: a thin Typer layer over the library in `daemons/`."""

from __future__ import annotations

import typer

app = typer.Typer(
    name="schedctl",
    help="Schedule LLM inference on GPU nodes: centralized coordinator vs gossip peers.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
start_app = typer.Typer(help="Start one daemon in the foreground (what the systemd units run).",
                        no_args_is_help=True)
app.add_typer(start_app, name="start")


def main() -> None:
    app()


if __name__ == "__main__":
    main()
