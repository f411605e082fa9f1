"""`schedctl keys generate`: CURVE key pairs for the daemons (see daemons/bus/security.py)."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Annotated

import typer

from cli.errors import exit_on_config_error

keys_app = typer.Typer(help="CURVE keys that authenticate and encrypt traffic between hosts.", no_args_is_help=True)


@keys_app.command("generate")
@exit_on_config_error
def generate(
    directory: Annotated[Path, typer.Option("--dir", "-d", help="Where to write NAME.key and NAME.key_secret.")] = Path(
        "keys"),
    names: Annotated[list[str] | None, typer.Option("--name", "-n", help="Key pair name (repeatable); "
                                                    "default: this host's name.")] = None,
) -> None:
    """Make CURVE key pairs: NAME.key (public, 0644) and NAME.key_secret (0600).

    A cluster needs one `server` pair (its secret on every host that binds) and one pair
    per host (its public key in every server's allowed_keys_dir). Existing files are never
    overwritten.

    Examples:
      schedctl keys generate --dir /etc/schedctl/curve --name server
      schedctl keys generate --dir keys --name gpu-1 --name gpu-2 --name loadgen
    """
    from daemons.bus.security import generate as make_pair

    for name in names or [socket.gethostname()]:
        public, secret = make_pair(directory, name)
        typer.echo(f"{name}: public {public}, secret {secret}")
