"""docs/configuration.md, generated from the config dataclasses so it cannot drift from them.

Each table lists a dataclass's fields in order: the key, its default (as TOML), the flag
that sets it (or "config only") and the comment written beside or above the field in the
source. `python scripts/config_reference.py` writes the file; tests/layout/test_docs.py
fails when the committed file differs from `render()`.
"""

from __future__ import annotations

import dataclasses
import inspect
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import tomli_w
import typer

OUTPUT = "docs/configuration.md"
CONFIG_ONLY = "config only"
# A field whose flag is not its name (nor its name without `_s` or a plural `s`).
FLAG_ALIASES = {"cluster_file": "cluster"}


@dataclass(frozen=True)
class Table:
    """One TOML table of the reference: a dataclass, where it is read and which command sets it."""

    title: str
    cls: type
    where: str
    command: tuple[str, ...] = ()  # the schedctl command whose flags set these keys
    skip: tuple[str, ...] = ()  # fields documented in a table of their own
    defaults: dict[str, Any] = field(default_factory=dict)  # defaults the reader puts in place of the class's


def tables() -> list[Table]:
    from cli.experiment.spec import DEFAULT_WORKLOAD, ExperimentSpec, NodeGroup, Slo
    from daemons.bus.metrics import MetricsConfig
    from daemons.bus.security import SecurityConfig
    from daemons.coordinator.config import CoordinatorConfig
    from daemons.loadgen.config import LoadgenConfig
    from daemons.loadgen.workload import WorkloadSpec
    from daemons.node.config import NodeConfig

    daemon = "`/etc/schedctl/schedctl.toml` (or `--config FILE`), then `SCHEDCTL_{}_<KEY>` environment variables"
    return [
        Table("[node]", NodeConfig, daemon.format("NODE"), ("start", "node")),
        Table("[coordinator]", CoordinatorConfig, daemon.format("COORDINATOR"), ("start", "coordinator")),
        Table("[loadgen]", LoadgenConfig, daemon.format("LOADGEN"), ("start", "loadgen")),
        Table("[security]", SecurityConfig, daemon.format("SECURITY") + "; every daemon and `schedctl status`"),
        Table("[metrics]", MetricsConfig, daemon.format("METRICS") + "; the coordinator, node agent and load "
              "generator (`--metrics-bind` on their `schedctl start` commands), each also from its own "
              "`[metrics.coordinator]`, `[metrics.node]` or `[metrics.loadgen]` table (docs/metrics.md)"),
        Table("[experiment]", ExperimentSpec, "an experiment file (`schedctl experiment run --config FILE`)",
              ("experiment", "run"), skip=("workload", "nodes", "slo")),
        Table("[experiment.slo]", Slo, "an experiment file: the SLOs goodput counts"),
        Table("[workload]", WorkloadSpec, "an experiment file (the defaults are the experiment's)",
              ("experiment", "run"), defaults=DEFAULT_WORKLOAD),
        Table("[[nodes]]", NodeGroup, "an experiment file, one table per group of identical emulated nodes"),
    ]


def field_comments(cls: type) -> dict[str, str]:
    """The comment beside each field, else the comment lines just above it (section rules excluded)."""
    out: dict[str, str] = {}
    above: list[str] = []
    for line in inspect.getsource(cls).splitlines()[1:]:
        text = line.strip()
        if text.startswith("#"):
            above = [] if text.startswith("# ---") else [*above, text.lstrip("#").strip()]
            continue
        match = re.match(r"^ {4}(\w+): [^#]*?(?:  # (.*))?$", line)
        if match:
            out[match[1]] = match[2] or " ".join(above)
        above = []
    return out


def flags_of(path: tuple[str, ...]) -> dict[str, str]:
    """Option parameter name -> its first long flag, for a `schedctl` command."""
    from cli.main import app

    cmd: Any = typer.main.get_command(app)
    for name in path:
        cmd = cmd.commands[name]
    return {p.name: next((o for o in p.opts if o.startswith("--")), p.opts[0])
            for p in cmd.params if getattr(p, "opts", None) and p.name}


def flag_for(name: str, flags: dict[str, str]) -> str:
    for candidate in (FLAG_ALIASES.get(name), name, name.removesuffix("_s"), name.removesuffix("s")):
        if candidate in flags:
            return f"`{flags[candidate]}`"
    return CONFIG_ONLY


def toml_value(value: Any) -> str:
    """A default as it is written in TOML, on one line; "(unset)" for None."""
    return "(unset)" if value is None else "`" + _inline(value).replace("|", "\\|") + "`"


def _inline(value: Any) -> str:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        value = {k: v for k, v in dataclasses.asdict(value).items() if v is not None}
    if hasattr(value, "text"):  # a length distribution: its spelling
        value = value.text
    if isinstance(value, tuple | list):
        return "[" + ", ".join(_inline(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k} = {_inline(v)}" for k, v in value.items()) + "}"
    return tomli_w.dumps({"x": value}).strip().removeprefix("x = ")


def render_table(table: Table, flags_for: Callable[[tuple[str, ...]], dict[str, str]] = flags_of) -> str:
    comments = field_comments(table.cls)
    flags = flags_for(table.command) if table.command else {}
    rows = ["| key | default | flag | what |", "|---|---|---|---|"]
    for f in dataclasses.fields(table.cls):
        if f.name in table.skip:
            continue
        default = table.defaults.get(f.name, _default(f))
        what = comments.get(f.name, "").replace("|", "\\|")
        rows.append(f"| `{f.name}` | {toml_value(default)} | {flag_for(f.name, flags) if flags else CONFIG_ONLY} "
                    f"| {what} |")
    return f"## `{table.title}`\n\nRead from {table.where}.\n\n" + "\n".join(rows) + "\n"


def _default(f: dataclasses.Field[Any]) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return None


def render() -> str:
    head = (
        "# Configuration reference\n\n"
        "<!-- Generated by `python scripts/config_reference.py` from the config dataclasses; do not edit.\n"
        "     tests/layout/test_docs.py fails when this file and the code disagree. -->\n\n"
        "Every daemon reads its table of `/etc/schedctl/schedctl.toml` (or `--config FILE`), then\n"
        "`SCHEDCTL_<DAEMON>_<KEY>` environment variables, then its flags; an unknown key or a value of the\n"
        "wrong type is refused with one line naming the key. The flag column names the flag that sets a\n"
        "key; `config only` keys are set in the file or the environment. An experiment file\n"
        "(`schedctl experiment run --config FILE`) holds `[experiment]`, `[experiment.slo]`, `[workload]`\n"
        "and `[[nodes]]`. The gossip protocol's timings come from `gossip_preset` (`lan`, `wan`, `local`,\n"
        "`ci`: `daemons/gossip/config.py`); the emulator's settings are the flags of\n"
        "`schedctl start emulator --help`.\n"
    )
    return head + "".join("\n" + render_table(t) for t in tables())
