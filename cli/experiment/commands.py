"""`schedctl experiment run|report|compare`."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from cli.errors import exit_on_config_error
from cli.experiment.spec import ExperimentSpec, from_dict, load_file, parse_schedulers, scaled_nodes
from cli.report.commands import compare_command, print_prototype_report, report_command
from cli.report.text import format_summary
from daemons.core.errors import ConfigError
from daemons.loadgen.workload import from_dict as workload_from_dict
from daemons.policy.registry import DEFAULT_GOSSIP_POLICY, DEFAULT_POLICY, names

if TYPE_CHECKING:
    from cli.experiment.runner import RunOutcome
    from cli.report.run_report import RunReport
    from cli.report.summary import Summary

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
    policy: Annotated[str | None, typer.Option(help=f"The coordinator's placement policy (centralized): "
                                                    f"{', '.join(names('centralized'))} "
                                                    f"(default {DEFAULT_POLICY}).")] = None,
    gossip_policy: Annotated[str | None, typer.Option(help=f"The peers' placement policy (gossip): "
                                                           f"{', '.join(names('gossip'))} "
                                                           f"(default {DEFAULT_GOSSIP_POLICY}).")] = None,
    seed: Annotated[int | None, typer.Option(help="Seed of the request schedule.")] = None,
    scheduler: Annotated[str | None, typer.Option(
        help="centralized | gossip | hybrid | both (centralized,gossip) | all, or a comma-separated list "
             "such as centralized,gossip,hybrid: each arm replays the identical schedule.")] = None,
    centralized_only: Annotated[bool, typer.Option("--centralized-only",
                                                   help="Same as --scheduler centralized.")] = False,
    gossip_only: Annotated[bool, typer.Option("--gossip-only", help="Same as --scheduler gossip.")] = False,
    config: Annotated[Path | None, typer.Option("--config", "-c", help="TOML experiment file.")] = None,
    from_manifest: Annotated[Path | None, typer.Option(
        "--from", help="Repeat the run of this manifest.json (its scheduler only; --scheduler both for both).")] = None,
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
    classes: Annotated[str | None, typer.Option(
        "--classes", help="Workload classes NAME:SHARE[:ttft=MS][:tpot=MS],... (interactive, standard, batch), "
                          "e.g. interactive:0.3:ttft=500,batch:0.7; shares add up to 1. Default: one class.")] = None,
    no_priority: Annotated[bool, typer.Option(
        "--no-priority", help="Queues serve requests in arrival order whatever their class (default: higher "
                              "classes first, with aging).")] = False,
    max_running: Annotated[int | None, typer.Option(
        "--max-running", help="Requests per model a node sends its backend at once; more wait in the node's "
                              "priority queue (default 0: no limit).")] = None,
    admission: Annotated[str | None, typer.Option(
        "--admission", help="queue (default: never shed) or slo: shed a request whose predicted TTFT exceeds "
                            "its class's TTFT SLO (outcome `shed`).")] = None,
    affinity: Annotated[str | None, typer.Option(
        "--affinity", help="static (default: the policies' own scores) or learned: rank nodes by the TTFT each "
                           "has measured for the model (affinity-score, startup-optimal, the gossip "
                           "policies).")] = None,
    prewarm: Annotated[str | None, typer.Option(
        "--prewarm", help="off (default) or on: the coordinator (or each gossip peer) forecasts every model's "
                          "arrival rate and loads it ahead of time on idle capacity when the forecast exceeds "
                          "its holders' capacity; evictions go by least expected use.")] = None,
    popularity_shift: Annotated[int | None, typer.Option(
        "--popularity-shift", help="Split the run into this many phases; each phase rotates the models' "
                                   "popularity ranking by one, so the most popular model changes (default 0: "
                                   "no shift).", min=0)] = None,
    standby_coordinator: Annotated[bool, typer.Option(
        "--standby-coordinator", help="Centralized, hybrid: run a standby coordinator that takes over when the "
                                      "primary dies (Binary Star with the nodes as witnesses).")] = False,
    rebalance: Annotated[bool, typer.Option(
        "--rebalance", help="Centralized: every second the coordinator live-migrates a running request from "
                            "the most to the least loaded node when that narrows their gap (Llumnix).")] = False,
    no_live_migration: Annotated[bool, typer.Option(
        "--no-live-migration", help="Centralized: never carry out a policy's MIGRATE (startup-optimal); take "
                                    "its next best option instead, to compare with live migration.")] = False,
    insecure: Annotated[bool, typer.Option(
        "--insecure", help="Run the local cluster without CURVE (by default every run makes its own keys "
                           "and every daemon checks who sends what): to measure what CURVE costs.")] = False,
    backend: Annotated[str | None, typer.Option(
        "--backend", help="How each node serves its emulated GPU: emulator (an emulator process per loaded "
                          "model, speaking TGI's HTTP; the default) or emulator-inproc (the same engine inside "
                          "the node: one process per node, for large clusters).")] = None,
    watch: Annotated[bool, typer.Option(
        "--watch", help="Open the live dashboard (`schedctl watch`) on this run; q closes it and the run "
                        "goes on, printing its progress and report as without --watch.")] = False,
    engine: Annotated[str | None, typer.Option(
        "--engine", help="real (default): the daemons as processes on loopback; sim: the same logic in one "
                         "process on a virtual clock, for clusters far larger than this machine.")] = None,
    decision_cost_us: Annotated[float | None, typer.Option(
        "--decision-cost-us", help="--engine sim: CPU microseconds the coordinator spends per decision (default: "
                                   "the simulator's measured figure; scripts/bench_coordinator.py measures "
                                   "yours).")] = None,
) -> None:
    """Run a workload through a local cluster of emulated GPU nodes and report.

    Starts the coordinator and node agents as real processes on loopback, replays one
    request schedule (open loop), writes results/<name>_<scheduler>_<time>/ and prints the
    comparison, then tears everything down (also on Ctrl-C). It says first how long it
    will take, then prints a progress line every 10 s.

    Settings without a flag (gossip_preset, retries, attempt_timeout_s, failover_after_s,
    [experiment.slo], the [workload] shapes and the [[nodes]] groups) are set in an
    experiment file (--config; docs/configuration.md lists every key).

    Examples:

    \b
      schedctl experiment run --duration 60 --rps 5 --cv 8 --name quick
      schedctl experiment run --config experiment.toml
      schedctl experiment run --from results/quick_centralized_20260101_120000/manifest.json
      schedctl experiment run --cluster ansible/.keys/prod/cluster.toml --duration 300
      schedctl experiment run --duration 20 --rps 2 --fault 5:kill:node-1 \\
          --fault 8:pause:node-0:6
      schedctl experiment run --duration 20 --rps 2 --fault 4:partition:node-1:5
      schedctl experiment run --scheduler centralized --standby-coordinator \\
          --fault 30:kill:coordinator
      schedctl experiment run --scheduler centralized --classes interactive:0.3:ttft=500,batch:0.7 \\
          --max-running 4 --admission slo
      schedctl experiment run --scheduler centralized --popularity-shift 3 --prewarm on
      schedctl experiment run --policy startup-optimal --affinity learned
      schedctl experiment run --duration 60 --fault 20:kill:node-1 --watch
      schedctl experiment run --scheduler centralized,gossip,hybrid --nodes 10 --seed 42
      schedctl experiment run --scheduler hybrid --fault 20:kill:coordinator
      schedctl experiment run --nodes 32 --backend emulator-inproc --rps 4
      schedctl experiment run --engine sim --nodes 1000 --rps 500 --duration 600

    A partition fault needs root (network namespaces).
    """
    base = _base_spec(config, from_manifest)
    spec = _with_flags(base, duration=duration, rps=rps, cv=cv, name=name, nodes=nodes, policy=policy,
                       gossip_policy=gossip_policy, seed=seed,
                       scheduler=_scheduler_flag(scheduler, centralized_only, gossip_only),
                       results_dir=results_dir, faults=fault, standby_coordinator=standby_coordinator or None,
                       rebalance=rebalance or None, live_migration=False if no_live_migration else None,
                       timeout_s=timeout, insecure=insecure or None,
                       queue_limit=queue_limit, classes=classes, priority=False if no_priority else None,
                       max_running=max_running, admission=admission, backend=backend, engine=engine,
                       decision_cost_us=decision_cost_us, affinity=affinity, prewarm=prewarm,
                       popularity_shift=popularity_shift,
                       cluster_file=str(cluster) if cluster is not None else None)
    if watch and spec.engine == "sim":
        raise ConfigError("--watch is the real engine's live dashboard (a simulated run takes no wall time to "
                          "watch): drop --watch, or run with --engine real")
    _run(spec, watch)


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
        spec = from_dict(data["spec"], str(manifest))
        # The manifest of one arm repeats that arm: its spec names every scheduler of the run.
        return _arm_of(spec, data.get("scheduler"))
    except ConfigError:
        raise
    except (TypeError, ValueError, AttributeError, KeyError) as exc:  # a value of the wrong shape
        raise ConfigError(f"{manifest}: its spec cannot be read ({type(exc).__name__}: {exc}): {fix}") from None


def _arm_of(spec: ExperimentSpec, arm: object) -> ExperimentSpec:
    """The spec of one arm of a run; the whole spec when the arm is unknown or cannot run alone
    (a fault on the coordinator in a gossip arm's manifest)."""
    if arm not in spec.schedulers or spec.schedulers == (arm,):
        return spec
    try:
        return dataclasses.replace(spec, schedulers=(arm,),
                                   standby_coordinator=spec.standby_coordinator and arm in ("centralized", "hybrid"),
                                   rebalance=spec.rebalance and arm == "centralized")
    except ConfigError:
        return spec


# Flags that set the ExperimentSpec field of the same name; _FLAGS: every flag _with_flags reads.
_SPEC_FLAGS = ("name", "policy", "gossip_policy", "results_dir", "cluster_file", "standby_coordinator", "timeout_s",
               "insecure", "queue_limit", "priority", "max_running", "admission", "rebalance", "live_migration",
               "backend", "engine", "decision_cost_us", "affinity", "prewarm")
_FLAGS = (*_SPEC_FLAGS, "duration", "rps", "cv", "seed", "classes", "popularity_shift", "faults", "scheduler",
          "nodes")


def _with_flags(spec: ExperimentSpec, **given: Any) -> ExperimentSpec:
    """`spec` with the flags that were given (not None); a flag a command does not have is None."""
    flags: dict[str, Any] = dict.fromkeys(_FLAGS) | given
    changes: dict[str, Any] = {}
    workload = {k: v for k, v in (("duration_s", flags["duration"]), ("rps", flags["rps"]),
                                  ("cv", flags["cv"]), ("seed", flags["seed"]),
                                  ("classes", flags["classes"]),
                                  ("popularity_shift", flags["popularity_shift"])) if v is not None}
    if workload:
        changes["workload"] = workload_from_dict({**spec.workload.to_dict(), **workload})
    for key in _SPEC_FLAGS:
        if flags[key] is not None:
            changes[key] = flags[key]
    if flags["faults"]:
        changes["faults"] = tuple(flags["faults"])
    if flags["scheduler"] is not None:
        changes["schedulers"] = parse_schedulers(flags["scheduler"])
    if flags["nodes"] is not None:
        changes["nodes"] = scaled_nodes(spec.nodes, flags["nodes"])
    return dataclasses.replace(spec, **changes) if changes else spec


def _run(spec: ExperimentSpec, watch: bool = False) -> None:
    from cli.experiment.runner import ArmFailed, run_experiment
    from cli.report.run_report import write_report

    summaries: list[Summary] = []
    reports: list[RunReport] = []

    def finish(outcome: RunOutcome) -> None:
        """The arm's report (as `experiment report` writes it) as soon as it is written: a later
        arm's failure keeps it."""
        reports.append(write_report(outcome.run_dir))
        summaries.append(reports[-1].summary)
        typer.echo(f"results: {outcome.run_dir}")

    stop = threading.Event()
    # Ctrl-C and SIGTERM (a supervisor, `timeout`) both stop the run and tear the cluster down.
    previous = {sig: signal.signal(sig, lambda *_: _interrupt(stop)) for sig in (signal.SIGINT, signal.SIGTERM)}
    failed: ArmFailed | None = None
    try:
        if watch:
            _run_watched(spec, stop, finish)
        else:
            run_experiment(spec, typer.echo, stop=stop, on_outcome=finish)
    except ArmFailed as exc:
        failed = exc
    except KeyboardInterrupt:  # a second Ctrl-C: the cluster's teardown has run on the way out
        typer.echo("aborted: the run in progress was not written", err=True)
        raise typer.Exit(130) from None
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if len(summaries) == 1 and failed is None:  # one scheduler ran: its summary, not a comparison with an empty column
        typer.echo(format_summary(summaries[0]), nl=False)
        _warn_on_mismatch(summaries[0])
    elif summaries:
        print_prototype_report(summaries)
    if len(reports) > 1:
        _write_arms_comparison(reports)
    if failed is not None:  # after the finished arms' report: what failed, in one line
        typer.echo(f"error: {failed}", err=True)
        raise typer.Exit(2 if failed.user_error else 1)
    if stop.is_set():
        typer.echo("interrupted: the results above cover the requests sent before the interruption; "
                   "requests never sent are recorded as not_sent", err=True)
        raise typer.Exit(130)
    if any(s.record_check for s in summaries):
        raise typer.Exit(1)


def _write_arms_comparison(reports: list[RunReport]) -> None:
    """The arms side by side, as `experiment compare` writes them (tables and the overlaid TTFT
    CDF), in NAME_compare_STAMP beside the arms' NAME_SCHEDULER_STAMP directories."""
    from cli.report.commands import write_comparison_files

    first = reports[0].run.run_dir
    head, _, stamp = first.name.rpartition(f"_{reports[0].summary.scheduler_type}_")
    out_dir = first.parent / f"{head}_compare_{stamp}"
    written = write_comparison_files([r.run for r in reports], [r.summary for r in reports], out_dir)
    typer.echo("comparison: " + ", ".join(str(p) for p in written))


def _run_watched(spec: ExperimentSpec, stop: threading.Event, finish: Callable[[RunOutcome], None]) -> None:
    """The run in a thread of its own, the dashboard in this (main) thread: quitting the
    dashboard leaves the run going. What the run says while the dashboard has the terminal
    is printed when it closes; Ctrl-C then stops the run as without --watch."""
    from cli.experiment.runner import run_experiment
    from cli.watch.command import check_terminal, watch_run

    check_terminal()  # before anything starts
    said: list[str] = []
    watching = threading.Event()
    watching.set()
    failure: list[BaseException] = []

    def say(line: str) -> None:
        if watching.is_set():
            said.append(line)
        else:
            typer.echo(line)

    def work() -> None:
        try:
            run_experiment(spec, say, stop=stop, on_outcome=finish)
        except BaseException as exc:  # handed to the main thread, which reports it as without --watch
            failure.append(exc)

    runner = threading.Thread(target=work, name="experiment")
    runner.start()
    try:
        watch_run(Path(spec.results_dir), os.getpid(), stop)
    except Exception as exc:  # the dashboard failed, not the run: it goes on as without --watch
        said.append(f"warning: the dashboard closed on an error ({type(exc).__name__}: {exc}); the run goes on")
    finally:
        watching.clear()
        for line in said:
            typer.echo(line)
    while runner.is_alive():
        runner.join(0.5)  # in slices: Ctrl-C (the main thread's signal handler) still stops the run
    if failure:
        raise failure[0]


def _warn_on_mismatch(summary: Summary) -> None:
    if summary.record_check:
        typer.echo(f"warning: {summary.scheduler_type} run {summary.run_dir}: {summary.record_check}", err=True)


def _interrupt(stop: threading.Event) -> None:
    if stop.is_set():
        raise KeyboardInterrupt
    typer.echo("\nstopping: finishing in-flight bookkeeping and tearing the cluster down "
               "(Ctrl-C again to abort)", err=True)
    stop.set()


@experiment_app.command("validate-sim")
@exit_on_config_error
def validate_sim_command(
    nodes: Annotated[str, typer.Option(help="Cluster sizes, comma-separated (default 4,16).")] = "4,16",
    loads: Annotated[str, typer.Option(help="Loads, comma-separated: light (0.25 req/s per node), high "
                                            "(1 req/s per node).")] = "light,high",
    duration: Annotated[float, typer.Option(help="Seconds of arrivals per run.", min=1.0)] = 30.0,
    scheduler: Annotated[str, typer.Option(help="centralized | gossip | both.")] = "both",
    config: Annotated[Path | None, typer.Option("--config", "-c", help="TOML experiment file as the base.")] = None,
    out: Annotated[Path, typer.Option(help="Where the runs and validation.csv go.")] = Path("results/validate-sim"),
    quick: Annotated[bool, typer.Option("--quick", help="2 nodes, light load, 6 s: a CI-sized check.")] = False,
) -> None:
    """Run the same spec and schedule with the simulated and the real engine and compare them.

    For every size and load, both engines run both arms on the same schedule, each with one
    random node killed at 40 % of the run; the table lists per metric (p50/p99 TTFT and TPOT,
    cache hit rate, cold starts, recovery time) the simulated value, the real value, their
    ratio and whether it is within 15 %. Rows whose real run saturated the host say so instead.
    Writes OUT/validation.csv beside the runs' results directories.

    Examples:

    \b
      schedctl experiment validate-sim --quick
      schedctl experiment validate-sim --nodes 4,16 --loads light,high --duration 30
    """
    from cli.experiment.validate import format_rows, validate, write_rows

    base = _with_flags(_base_spec(config, None), duration=None, rps=None, cv=None, name=None, nodes=None,
                       policy=None, gossip_policy=None, seed=None, scheduler=scheduler, results_dir=str(out),
                       faults=None, standby_coordinator=None, rebalance=None, live_migration=None, timeout_s=None,
                       insecure=None, queue_limit=None, classes=None, priority=None, max_running=None,
                       admission=None, engine=None, decision_cost_us=None, cluster_file=None)
    sizes = [2] if quick else _ints(nodes, "--nodes")
    chosen = ["light"] if quick else [x.strip() for x in loads.split(",") if x.strip()]
    unknown = [x for x in chosen if x not in ("light", "high")] or ([] if chosen else ["(none)"])
    if unknown:
        raise ConfigError(f"--loads {loads!r}: {', '.join(unknown)} unknown; use light, high or light,high")
    rows = validate(base, sizes, chosen, 6.0 if quick else duration, _summaries_of, typer.echo)
    path = write_rows(out / "validation.csv", rows)
    typer.echo(format_rows(rows), nl=False)
    typer.echo(f"validation: {path}")


def _ints(text: str, flag: str) -> list[int]:
    try:
        values = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise ConfigError(f"{flag} {text!r}: expected whole numbers separated by commas, e.g. 4,16") from None
    if not values or min(values) < 1:
        raise ConfigError(f"{flag} {text!r}: give at least one size, each >= 1")
    return values


def _summaries_of(spec: ExperimentSpec) -> list[Summary]:
    """Run `spec` (every arm) and return each arm's summary, its report written without plots."""
    from cli.experiment.runner import run_experiment
    from cli.report.run_report import write_report

    summaries: list[Summary] = []
    run_experiment(spec, lambda line: typer.echo("  " + line),
                   on_outcome=lambda o: summaries.append(write_report(o.run_dir, plots=False).summary))
    return summaries
