"""`schedctl start coordinator`: a thin layer over `daemons.coordinator.run`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from cli.errors import exit_on_config_error
from daemons.core.logs import setup_logging
from daemons.policy.registry import DEFAULT_POLICY, names


@exit_on_config_error
def start_coordinator(
    config: Annotated[Path | None, typer.Option("--config", "-c",
                                                help="TOML file with a [coordinator] table.")] = None,
    bind: Annotated[str | None, typer.Option(help="ROUTER address for schedule and status requests.")] = None,
    state_bind: Annotated[str | None, typer.Option(help="SUB address node agents publish state to.")] = None,
    events_bind: Annotated[str | None, typer.Option(help="PUB address for cluster events.")] = None,
    policy: Annotated[str | None, typer.Option(help=f"Placement policy: {', '.join(names('centralized'))} "
                                                    f"(default {DEFAULT_POLICY}).")] = None,
    dead_after: Annotated[float | None, typer.Option(help="Seconds of silence before a node "
                                                          "is declared dead.")] = None,
    seed: Annotated[int | None, typer.Option(help="Seed for the policy's tie-breaking.")] = None,
    name: Annotated[str | None, typer.Option(help="Name in envelopes, events and status.")] = None,
    role: Annotated[str | None, typer.Option(help="standalone (default), or primary / backup of a "
                                                  "failover pair (needs --peer, --peer-events, --epoch-file).")] = None,
    peer: Annotated[str | None, typer.Option(help="The other coordinator's --bind address.")] = None,
    peer_events: Annotated[str | None, typer.Option(help="The other coordinator's --events-bind address.")] = None,
    epoch_file: Annotated[str | None, typer.Option(help="File holding this coordinator's epoch "
                                                        "(fsync'd before it serves in a new one).")] = None,
    failover_after: Annotated[float | None, typer.Option(help="Seconds of peer silence before a passive "
                                                              "coordinator asks the nodes to take over.")] = None,
    queue_limit: Annotated[int | None, typer.Option(help="Requests that may wait for capacity per model "
                                                         "(default 64); one more is refused `overloaded`.")] = None,
    queue_timeout: Annotated[float | None, typer.Option(help="Seconds a request may wait for capacity before "
                                                              "it is answered `queue_timeout` (default 120).")] = None,
    no_priority: Annotated[bool, typer.Option("--no-priority", help="Queue in arrival order whatever the "
                                              "request's class (default: higher classes first, with aging).")] = False,
    priority_aging: Annotated[float | None, typer.Option(help="Seconds of waiting worth one priority level "
                                                              "(default 5; 0 = arrival order).")] = None,
    admission: Annotated[str | None, typer.Option(help="queue (default: never shed) or slo: shed a request whose "
                                                       "predicted TTFT exceeds its class's TTFT SLO.")] = None,
    affinity: Annotated[str | None, typer.Option(help="static (default: the policy's own scores) or learned: rank "
                                                      "nodes by the TTFT each has measured for the model "
                                                      "(affinity-score, startup-optimal).")] = None,
    prewarm: Annotated[str | None, typer.Option(help="off (default) or on: load a model ahead of time on idle "
                                                     "capacity when its forecast arrival rate exceeds its "
                                                     "holders' capacity.")] = None,
    forecast_alpha: Annotated[float | None, typer.Option(help="Holt level weight, 0 < a <= 1 (default 0.5).")] = None,
    forecast_beta: Annotated[float | None, typer.Option(help="Holt trend weight, 0 <= b <= 1 (default 0.3; "
                                                             "0: no trend).")] = None,
    forecast_horizon: Annotated[float | None, typer.Option(help="Seconds ahead the pre-warm forecast looks "
                                                                "(default 5: about a load time).")] = None,
    prewarm_instance_rps: Annotated[float | None, typer.Option(
        help="Requests per second one ready instance serves before pre-warming another copy pays off "
             "(default 2).")] = None,
    metrics_bind: Annotated[str | None, typer.Option(help="HOST:PORT of a Prometheus /metrics endpoint "
                                                          "([metrics] bind; empty = off, the default).")] = None,
    rebalance: Annotated[bool | None, typer.Option("--rebalance/--no-rebalance",
                                                   help="Every second, live-migrate a running request from the "
                                                        "most to the least loaded node when that narrows their "
                                                        "gap (Llumnix pair migration).")] = None,
    live_migration: Annotated[bool | None, typer.Option(
        "--live-migration/--no-live-migration",
        help="Carry out a policy's MIGRATE by live-migrating running requests (default); off: the "
             "policy's next best option instead.")] = None,
    model_map_every: Annotated[float | None, typer.Option(
        help="Hybrid scheduling: publish the model -> nodes map on the events PUB every SECONDS, and "
             "soon after each placement that loads a model (default 0: never).")] = None,
    log_level: Annotated[str, typer.Option(envvar="SCHEDCTL_LOG_LEVEL",
                                           help="DEBUG (a line per request), INFO, WARNING")] = "INFO",
) -> None:
    """Run the centralized scheduler in the foreground (SIGTERM or Ctrl-C stops it).

    Settings come from the [coordinator] table of --config (default
    /etc/schedctl/schedctl.toml when present), then SCHEDCTL_COORDINATOR_<KEY>
    environment variables, then these flags. Keys without a flag
    (max_nodes, reap_after_s, heartbeat_s...) and the [security] table (CURVE keys) are
    config-only: docs/configuration.md lists them all.

    Examples:

    \b
      schedctl start coordinator
      schedctl start coordinator --policy startup-optimal --dead-after 2
      schedctl start coordinator --metrics-bind 127.0.0.1:9464
      schedctl start coordinator --rebalance
      schedctl start coordinator --model-map-every 1
      schedctl start coordinator --policy startup-optimal --affinity learned --prewarm on
      SCHEDCTL_COORDINATOR_BIND=tcp://10.0.0.5:5555 schedctl start coordinator
      schedctl start coordinator --role backup --name standby --peer tcp://10.0.0.5:5555 \\
          --peer-events tcp://10.0.0.5:5557 --epoch-file /var/lib/schedctl/epoch
    """
    from daemons.bus import activation
    from daemons.bus.metrics import MetricsConfig
    from daemons.bus.security import Security
    from daemons.coordinator import CoordinatorConfig, run

    overrides = {"bind": bind, "state_bind": state_bind, "events_bind": events_bind,
                 "policy": policy, "dead_after_s": dead_after, "seed": seed, "name": name, "role": role,
                 "peer": peer, "peer_events": peer_events, "epoch_file": epoch_file,
                 "failover_after_s": failover_after, "queue_limit": queue_limit,
                 "queue_timeout_s": queue_timeout, "priority": False if no_priority else None,
                 "admission": admission, "priority_aging_s": priority_aging, "rebalance": rebalance,
                 "live_migration": live_migration, "model_map_s": model_map_every, "affinity": affinity,
                 "prewarm": prewarm, "forecast_alpha": forecast_alpha, "forecast_beta": forecast_beta,
                 "forecast_horizon_s": forecast_horizon, "prewarm_instance_rps": prewarm_instance_rps}
    activation.adopt()  # sockets and the duty to die with it, from a launcher (experiment run)
    cfg = CoordinatorConfig.load(config, overrides)
    security = Security.load(config)  # [security]: CURVE + ZAP when curve_dir is set
    metrics = MetricsConfig.load(config, {"bind": metrics_bind}, "coordinator")  # [metrics]: Prometheus endpoint
    setup_logging("coordinator", log_level)
    run(cfg, security, metrics)
