"""`schedctl experiment run|report|compare`."""

from __future__ import annotations

import dataclasses
import json
import signal
import threading
from pathlib import Path
from typing import Annotated, Any

import typer

from cli.errors import exit_on_config_error
from cli.experiment.spec import ExperimentSpec, from_dict, load_file, parse_schedulers, scaled_nodes
from cli.report.commands import compare_command, print_prototype_report, report_command
from daemons.core.errors import ConfigError
from daemons.loadgen.workload import from_dict as workload_from_dict

experiment_app = typer.Typer(help="Run experiments and report on their results.", no_args_is_help=True)
experiment_app.command("report")(report_command)
experiment_app.command("compare")(compare_command)


@experiment_app.command("run")
@exit_on_config_error
def run_command(
    duration: Annotated[float | None, typer.Option(
        help="Seconds of arrivals (default 60; the prototype's 300: --duration 300).")] = None,
    rps: Annotated[float | None, typer.Option(help="Mean requests per second (default 5).")] = None,
    cv: Annotated[float | None, typer.Option(help="CV of inter-arrival gaps; 1 = Poisson (default 8).")] = None,
    name: Annotated[str | None, typer.Option(help="Experiment name, used in result directory names.")] = None,
    nodes: Annotated[int | None, typer.Option(help="Number of emulated GPU nodes (same mix, scaled).")] = None,
    policy: Annotated[str | None, typer.Option(help="Coordinator placement policy.")] = None,
    seed: Annotated[int | None, typer.Option(help="Seed of the request schedule.")] = None,
    scheduler: Annotated[str | None, typer.Option(help="centralized | gossip | both.")] = None,
    centralized_only: Annotated[bool, typer.Option("--centralized-only",
                                                   help="Same as --scheduler centralized.")] = False,
    gossip_only: Annotated[bool, typer.Option("--gossip-only", help="Same as --scheduler gossip.")] = False,
    config: Annotated[Path | None, typer.Option("--config", "-c", help="TOML experiment file.")] = None,
    from_manifest: Annotated[Path | None, typer.Option("--from", help="Repeat the run of this manifest.json.")] = None,
    results_dir: Annotated[str | None, typer.Option(help="Where result directories go (default results).")] = None,
    cluster: Annotated[Path | None, typer.Option("--cluster", help="Drive a deployed cluster: the cluster file "
                                                 "ansible deploy.yml writes.")] = None,
    fault: Annotated[list[str] | None, typer.Option(
        "--fault", help="AT:KIND:TARGET[:DURATION], repeatable: kind kill|stop|pause|restart|partition, target "
                        "coordinator|node-K|random-node, AT seconds after t = 0 (replaces the file's faults); "
                        "pause and partition need DURATION, partition needs root (network namespaces).")] = None,
    timeout: Annotated[float | None, typer.Option(
        "--timeout", help="Seconds after its scheduled time before a request is recorded as a timeout "
                          "(default 120).", min=0.001)] = None,
    queue_limit: Annotated[int | None, typer.Option(
        "--queue-limit", help="Requests per model that may wait for capacity at the coordinator or a gossip "
                              "peer (default 64); they wait at most --timeout.")] = None,
    standby_coordinator: Annotated[bool, typer.Option(
        "--standby-coordinator", help="Centralized: run a standby coordinator that takes over when the "
                                      "primary dies (Binary Star with the nodes as witnesses).")] = False,
    insecure: Annotated[bool, typer.Option(
        "--insecure", help="Run the local cluster without CURVE (by default every run makes its own keys "
                           "and every daemon checks who sends what): to measure what CURVE costs.")] = False,
) -> None:
    """Run a workload through a local cluster of emulated GPU nodes and report.

    Starts the coordinator and node agents as real processes on loopback, replays one
    request schedule (open loop), writes results/<name>_<scheduler>_<time>/ and prints the
    comparison, then tears everything down (also on Ctrl-C).

    Examples:

        schedctl experiment run --duration 60 --rps 5 --cv 8 --name quick

        schedctl experiment run --config experiment.toml

        schedctl experiment run --from results/quick_centralized_20260101_120000/manifest.json

        schedctl experiment run --cluster ansible/.keys/prod/cluster.toml --duration 300

        schedctl experiment run --duration 20 --rps 2 --fault 5:kill:node-1 --fault 8:pause:node-0:6

        schedctl experiment run --duration 20 --rps 2 --fault 4:partition:node-1:5   (as root)

        schedctl experiment run --scheduler centralized --standby-coordinator --fault 30:kill:coordinator
    """
    base = _base_spec(config, from_manifest)
    spec = _with_flags(base, duration=duration, rps=rps, cv=cv, name=name, nodes=nodes, policy=policy,
                       seed=seed, scheduler=_scheduler_flag(scheduler, centralized_only, gossip_only),
                       results_dir=results_dir, faults=fault, standby_coordinator=standby_coordinator or None,
                       timeout_s=timeout, insecure=insecure or None,
                       queue_limit=queue_limit,
                       cluster_file=str(cluster) if cluster is not None else None)
    _run(spec)


def _scheduler_flag(scheduler: str | None, centralized_only: bool, gossip_only: bool) -> str | None:
    if centralized_only and gossip_only:
        raise ConfigError("--centralized-only and --gossip-only exclude each other; pick one "
                          "(or --scheduler both)")
    if centralized_only:
        return "centralized"
    return "gossip" if gossip_only else scheduler


def _base_spec(config: Path | None, manifest: Path | None) -> ExperimentSpec:
    if config and manifest:
        raise ConfigError("--config and --from exclude each other; pick one")
    if config:
        return load_file(config)
    if manifest:
        return _manifest_spec(manifest)
    return ExperimentSpec()


def _manifest_spec(manifest: Path) -> ExperimentSpec:
    """The spec a manifest.json recorded; anything else (corrupt, foreign, truncated) is one ConfigError."""
    fix = "pass the manifest.json of a results directory written by `schedctl experiment run`"
    try:
        data = json.loads(manifest.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ConfigError(f"cannot read manifest {manifest} ({exc}): {fix}") from None
    if not isinstance(data, dict) or not isinstance(data.get("spec"), dict):
        raise ConfigError(f"{manifest} is not an experiment manifest (no 'spec' table): {fix}")
    try:
        return from_dict(data["spec"], str(manifest))
    except ConfigError:
        raise
    except (TypeError, ValueError, AttributeError, KeyError) as exc:  # a value of the wrong shape
        raise ConfigError(f"{manifest}: its spec cannot be read ({type(exc).__name__}: {exc}): {fix}") from None


def _with_flags(spec: ExperimentSpec, **flags: Any) -> ExperimentSpec:
    changes: dict[str, Any] = {}
    workload = {k: v for k, v in (("duration_s", flags["duration"]), ("rps", flags["rps"]),
                                  ("cv", flags["cv"]), ("seed", flags["seed"])) if v is not None}
    if workload:
        changes["workload"] = workload_from_dict({**spec.workload.to_dict(), **workload})
    for key in ("name", "policy", "results_dir", "cluster_file", "standby_coordinator", "timeout_s", "insecure",
                "queue_limit"):
        if flags[key] is not None:
            changes[key] = flags[key]
    if flags["faults"]:
        changes["faults"] = tuple(flags["faults"])
    if flags["scheduler"] is not None:
        changes["schedulers"] = parse_schedulers(flags["scheduler"])
    if flags["nodes"] is not None:
        changes["nodes"] = scaled_nodes(spec.nodes, flags["nodes"])
    return dataclasses.replace(spec, **changes) if changes else spec


def _run(spec: ExperimentSpec) -> None:
    from cli.experiment.runner import ArmFailed, RunOutcome, finish_run, run_experiment
    from cli.report.summary import Summary

    summaries: list[Summary] = []

    def finish(outcome: RunOutcome) -> None:
        """Summary and plots of an arm as soon as it is written: a later arm's failure keeps them."""
        summaries.append(finish_run(outcome.run_dir))
        typer.echo(f"results: {outcome.run_dir}")

    stop = threading.Event()
    # Ctrl-C and SIGTERM (a supervisor, `timeout`) both stop the run and tear the cluster down.
    previous = {sig: signal.signal(sig, lambda *_: _interrupt(stop)) for sig in (signal.SIGINT, signal.SIGTERM)}
    failed: ArmFailed | None = None
    try:
        run_experiment(spec, typer.echo, lambda p: typer.echo(p.line()), stop, on_outcome=finish)
    except ArmFailed as exc:
        failed = exc
    except KeyboardInterrupt:  # a second Ctrl-C: the cluster's teardown has run on the way out
        typer.echo("aborted: the run in progress was not written", err=True)
        raise typer.Exit(130) from None
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if summaries:
        print_prototype_report(summaries)
    if failed is not None:  # after the finished arms' report: what failed, in one line
        typer.echo(f"error: {failed}", err=True)
        raise typer.Exit(2 if failed.user_error else 1)
    if stop.is_set():
        typer.echo("interrupted: the results above cover the requests sent before the interruption; "
                   "requests never sent are recorded as not_sent", err=True)
        raise typer.Exit(130)
    if any(s.record_check for s in summaries):
        raise typer.Exit(1)


def _interrupt(stop: threading.Event) -> None:
    if stop.is_set():
        raise KeyboardInterrupt
    typer.echo("\nstopping: finishing in-flight bookkeeping and tearing the cluster down "
               "(Ctrl-C again to abort)", err=True)
    stop.set()
