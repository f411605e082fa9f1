"""`schedctl start <daemon>`: each daemon in the foreground, as the systemd units run it.

The group imports only the daemon asked for (cli/lazy.py): a node agent does not carry the
load generator's or the coordinator's modules.
"""

from __future__ import annotations

import typer

from cli.lazy import lazy_group

START_COMMANDS = {"loadgen": ("cli.loadgen", "start_loadgen"), "emulator": ("cli.start_emulator", "start_emulator"),
                  "node": ("cli.start_node", "start_node"),
                  "coordinator": ("cli.start_coordinator", "start_coordinator")}

start_app = typer.Typer(help="Start one daemon in the foreground (what the systemd units run).",
                        no_args_is_help=True, cls=lazy_group(START_COMMANDS))
