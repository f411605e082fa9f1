"""`schedctl start node` and `schedctl node gpu`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from cli.errors import exit_on_config_error
from daemons.core.logs import setup_logging

node_app = typer.Typer(help="Inspect the node agent's view of this machine.", no_args_is_help=True)

ConfigOpt = Annotated[Path | None, typer.Option("--config", "-c", help="TOML file with a [node] table.")]


@exit_on_config_error
def start_node(
    config: ConfigOpt = None,
    name: Annotated[str | None, typer.Option(help="Node name, unique in the cluster.")] = None,
    bind: Annotated[str | None, typer.Option(help="ROUTER address for infer and status.")] = None,
    publish_to: Annotated[list[str] | None, typer.Option(help="SUB address to publish state to.")] = None,
    gpu_backend: Annotated[str | None, typer.Option(help="auto | nvml | emulated")] = None,
    gpu: Annotated[str | None, typer.Option(help="Emulated GPU profile, e.g. a100-80gb.")] = None,
    metrics_bind: Annotated[str | None, typer.Option(help="HOST:PORT of a Prometheus /metrics endpoint "
                                                          "([metrics] bind; empty = off, the default).")] = None,
    log_level: Annotated[str, typer.Option(envvar="SCHEDCTL_LOG_LEVEL",
                                           help="DEBUG (a line per request), INFO, WARNING")] = "INFO",
) -> None:
    """Run a GPU node agent in the foreground.

    Settings come from the [node] table of --config (default /etc/schedctl/schedctl.toml
    when present), then SCHEDCTL_NODE_<KEY> environment variables, then these flags.
    The other keys (models, backend, tgi_launcher, scheduler, gossip settings, queue
    limits...) and the [security] table (CURVE keys) are config-only: every key is in
    docs/configuration.md.

    Examples:

    \b
      schedctl start node --config /etc/schedctl/schedctl.toml
      schedctl start node --config /etc/schedctl/schedctl.toml --metrics-bind 127.0.0.1:9465
    """
    from daemons.bus import activation
    from daemons.bus.metrics import MetricsConfig
    from daemons.bus.security import Security
    from daemons.node.config import NodeConfig
    from daemons.node.server import run

    overrides = {"name": name, "bind": bind, "publish_to": tuple(publish_to) if publish_to else None,
                 "gpu_backend": gpu_backend, "gpu": gpu}
    activation.adopt()  # sockets and the duty to die with it, from a launcher (experiment run)
    cfg = NodeConfig.load(config, overrides)
    security = Security.load(config)  # [security]: CURVE + ZAP when curve_dir is set
    metrics = MetricsConfig.load(config, {"bind": metrics_bind}, "node")  # [metrics]: Prometheus endpoint
    setup_logging(f"node[{cfg.name}]", log_level, {"SCHEDCTL_NODE": cfg.name})
    run(cfg, security, metrics)


@node_app.command("gpu")
@exit_on_config_error
def node_gpu(
    config: ConfigOpt = None,
    gpu_backend: Annotated[str | None, typer.Option(help="auto | nvml | emulated")] = None,
    gpu: Annotated[str | None, typer.Option(help="Emulated GPU profile, e.g. a100-80gb.")] = None,
) -> None:
    """Print what the GPU probe sees, and why that probe was chosen.

    Example:

    \b
      schedctl node gpu
    """
    from daemons.node.catalog import Catalog
    from daemons.node.config import NodeConfig
    from daemons.node.gpu import choose_probe

    cfg = NodeConfig.load(config, {"gpu_backend": gpu_backend, "gpu": gpu})
    catalog = Catalog(cfg.models, cfg.gpu, cfg.checkpoint_tier, cfg.kv_tokens, cfg.init_s)
    probe = choose_probe(cfg.gpu_backend, cfg.gpu, catalog.gpu_memory)
    typer.echo(f"backend: {probe.backend}: {probe.reason}")
    for g in probe.read(0):
        typer.echo(f"gpu {g.index}: {g.name}  memory {g.memory_used / 2**30:.1f} / "
                   f"{g.memory_total / 2**30:.1f} GiB  compute {g.utilization:.0%}")
    probe.close()
