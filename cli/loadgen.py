"""`schedctl loadgen plan` and `schedctl start loadgen`: a thin layer over `daemons.loadgen`.

`plan` writes a request schedule without sending anything, so both schedulers can replay
the identical list; `start loadgen` sends a schedule (from a file, or generated from the
same workload flags) open-loop and records every request.
"""

from __future__ import annotations

import json
import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import FrameType
from typing import Annotated, Any

import typer

from cli.errors import exit_on_config_error
from daemons.bus.metrics import MetricsConfig, serve
from daemons.bus.security import CurveClient, Security
from daemons.core.errors import ConfigError
from daemons.core.logs import setup_logging
from daemons.loadgen import (
    LoadgenConfig,
    PlannedRequest,
    Progress,
    Results,
    WorkloadSpec,
    parse_length,
    plan_fitted,
    read_schedule_csv,
    run,
    write_requests_csv,
    write_schedule_csv,
    write_summary_json,
)
from daemons.loadgen.metrics import LoadgenMetrics

loadgen_app = typer.Typer(help="Plan load-generator workloads (see also `schedctl start loadgen`).",
                          no_args_is_help=True)

Duration = Annotated[float, typer.Option("--duration", help="Seconds of arrivals (trace replay: 0 = all).")]
Rps = Annotated[float, typer.Option("--rps", help="Mean requests per second.")]
Cv = Annotated[float, typer.Option("--cv", help="CV of the gaps: 1 Poisson, 8 bursty, 0 constant.")]
Seed = Annotated[int, typer.Option("--seed", help="Seed of every random choice.")]
Models = Annotated[str, typer.Option("--models", help="Comma-separated model names, most popular first.")]
Zipf = Annotated[float | None, typer.Option("--zipf", metavar="S", help="Zipf popularity with exponent S.")]
Weights = Annotated[str | None, typer.Option("--weights", help="Comma-separated weight per model.")]
PromptTokens = Annotated[str | None, typer.Option(
    "--prompt-tokens", help="N | uniform:A-B | lognormal:mean=M,median=D[,max=X] | trace "
    "(default: Azure conv lognormal, or the trace's column).")]
OutputTokens = Annotated[str | None, typer.Option("--output-tokens", help="As --prompt-tokens, for max_new_tokens.")]
TraceFile = Annotated[Path | None, typer.Option("--trace", help="Azure-format trace CSV to replay or sample.")]
Arrivals = Annotated[str, typer.Option("--arrivals", help="auto (trace if --trace) | gamma | trace.")]
Speedup = Annotated[float, typer.Option("--trace-speedup", help="Replay the trace this many times faster.")]
Classes = Annotated[str | None, typer.Option(
    "--classes", help="Workload classes NAME:SHARE[:ttft=MS][:tpot=MS],... (interactive, standard, batch), "
    "e.g. interactive:0.3:ttft=500,batch:0.7 (default: one class).")]


@contextmanager
def writing(path: Path) -> Iterator[None]:
    """An output file that cannot be written is a user mistake: one line naming the fix."""
    try:
        yield
    except OSError as exc:
        raise ConfigError(f"cannot write {path}: {exc.strerror}; check the directory exists and is writable") \
            from None


def workload_spec(duration: float, rps: float, cv: float, seed: int, models: str, zipf: float | None,
                  weights: str | None, prompt_tokens: str | None, output_tokens: str | None,
                  trace: Path | None, arrivals: str, trace_speedup: float,
                  classes: str | None = None) -> WorkloadSpec:
    """The WorkloadSpec the workload flags describe."""
    if zipf is not None and weights is not None:
        raise ConfigError("--zipf and --weights both set the popularity; pass only one")
    table: dict[str, Any] = {
        "duration_s": duration, "rps": rps, "cv": cv, "seed": seed, "models": models,
        "popularity": "zipf" if zipf is not None else "weights" if weights is not None else "uniform",
        "arrivals": arrivals, "trace_speedup": trace_speedup, "trace": str(trace) if trace else "",
    }
    if zipf is not None:
        table["zipf_s"] = zipf
    if weights is not None:
        table["weights"] = _floats(weights, "--weights")
    if prompt_tokens is not None:
        table["prompt_tokens"] = parse_length(prompt_tokens, "--prompt-tokens")
    if output_tokens is not None:
        table["output_tokens"] = parse_length(output_tokens, "--output-tokens")
    if classes is not None:
        table["classes"] = classes
    return WorkloadSpec.from_dict(table)


def _floats(text: str, flag: str) -> list[float]:
    try:
        return [float(part) for part in text.split(",")]
    except ValueError:
        raise ConfigError(f"{flag} {text!r}: expected comma-separated numbers like 0.7,0.2,0.1") from None


@loadgen_app.command("plan")
@exit_on_config_error
def plan_command(
    out: Annotated[Path, typer.Option("-o", "--out", help="Schedule CSV to write.")],
    duration: Duration = 300.0, rps: Rps = 5.0, cv: Cv = 8.0, seed: Seed = 42,
    models: Models = "facebook/opt-125m", zipf: Zipf = None, weights: Weights = None,
    prompt_tokens: PromptTokens = None, output_tokens: OutputTokens = None,
    trace: TraceFile = None, arrivals: Arrivals = "auto", trace_speedup: Speedup = 1.0,
    classes: Classes = None,
) -> None:
    """Write a request schedule (one row per request, with its send time) without sending it.

    Exactly round(rps x duration) requests with gamma gaps (CV 1 = Poisson), as vLLM bench
    serve; or a trace replayed with its own timestamps. The same flags give the same file.

    \b
    Examples:

    \b
      schedctl loadgen plan --duration 300 --rps 5 --cv 8 -o schedule.csv
      schedctl loadgen plan --models a,b,c --zipf 1.1 --prompt-tokens uniform:64-512 -o schedule.csv
      schedctl loadgen plan --trace AzureLLMInferenceTrace_conv.csv --duration 600 -o schedule.csv
      schedctl loadgen plan --classes interactive:0.3:ttft=500,batch:0.7 -o schedule.csv
    """
    spec = workload_spec(duration, rps, cv, seed, models, zipf, weights, prompt_tokens, output_tokens,
                         trace, arrivals, trace_speedup, classes)
    schedule, notes = plan_fitted(spec)  # fitted to each model's context, clipping said
    with writing(out):
        write_schedule_csv(out, schedule)
    for note in notes:
        typer.echo(note, err=True)
    span = schedule[-1].t_s if schedule else 0.0
    typer.echo(f"wrote {len(schedule)} requests over {span:.1f} s to {out}")


@exit_on_config_error
def start_loadgen(
    out: Annotated[Path, typer.Option("--out", help="Per-request records CSV to write "
                                      "(a .summary.json is written beside it).")],
    schedule: Annotated[Path | None, typer.Option("--schedule", help="Schedule CSV from `schedctl loadgen plan` "
                                                  "(else the workload flags generate one).")] = None,
    config: Annotated[Path | None, typer.Option("--config", "-c", help="TOML file with a [loadgen] table.")] = None,
    coordinator: Annotated[str | None, typer.Option("--coordinator",
                                                    help="Centralized mode: the coordinator's endpoint.")] = None,
    standby: Annotated[str | None, typer.Option("--standby", help="Centralized mode: the standby "
                                                "coordinator's endpoint (followed when it takes over).")] = None,
    entry: Annotated[list[str] | None, typer.Option("--entry",
                                                    help="Gossip mode: a peer's endpoint (repeatable).")] = None,
    timeout: Annotated[float | None, typer.Option("--timeout", help="Seconds after its scheduled time before a "
                                                  "request is recorded as a timeout [default: 120].")] = None,
    name: Annotated[str | None, typer.Option("--name", help="Sender name in every envelope.")] = None,
    nice: Annotated[int | None, typer.Option("--nice", help="Nice value of the sending thread during the run "
                                             "(e.g. -10 on a busy host; needs root or CAP_SYS_NICE).")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", help="No progress lines.")] = False,
    metrics_bind: Annotated[str | None, typer.Option("--metrics-bind", help="HOST:PORT of a Prometheus /metrics "
                                                     "endpoint during the run ([metrics] bind; empty = off).")] = None,
    duration: Duration = 300.0, rps: Rps = 5.0, cv: Cv = 8.0, seed: Seed = 42,
    models: Models = "facebook/opt-125m", zipf: Zipf = None, weights: Weights = None,
    prompt_tokens: PromptTokens = None, output_tokens: OutputTokens = None,
    trace: TraceFile = None, arrivals: Arrivals = "auto", trace_speedup: Speedup = 1.0,
    classes: Classes = None,
) -> None:
    """Send a workload open-loop to a coordinator (centralized) or to peers (gossip), recording every request.

    Every request leaves at its scheduled time however slow earlier ones are; latencies are
    measured from that time. Progress goes to stderr once a second; SIGINT or SIGTERM stops
    early and still writes the records. Settings: --config [loadgen] table, then
    SCHEDCTL_LOADGEN_* environment variables, then flags. Keys without a flag
    (retries, attempt_timeout_s, priority...) are config-only: docs/configuration.md lists them all.

    Examples:

    \b
      schedctl loadgen plan --duration 60 --rps 20 -o schedule.csv
      schedctl start loadgen --schedule schedule.csv --coordinator tcp://127.0.0.1:5555 \\
          --out requests.csv
      schedctl start loadgen --schedule schedule.csv --entry tcp://10.0.0.2:5560 \\
          --entry tcp://10.0.0.3:5560 --out requests.csv
      schedctl start loadgen --duration 60 --rps 20 --cv 8 --coordinator tcp://127.0.0.1:5555 \\
          --out requests.csv
      schedctl start loadgen --schedule schedule.csv --coordinator tcp://10.0.0.5:5555 \\
          --standby tcp://10.0.0.6:5555 --out requests.csv
    """
    setup_logging("loadgen")
    cfg = LoadgenConfig.load(config, {**_overrides(coordinator, entry or [], timeout, name), "nice": nice,
                                      "standby": standby})
    notes: list[str] = []
    if schedule is not None:
        requests = read_schedule_csv(schedule)
    else:
        requests, notes = plan_fitted(workload_spec(duration, rps, cv, seed, models, zipf, weights, prompt_tokens,
                                                    output_tokens, trace, arrivals, trace_speedup, classes))
    if not out.parent.is_dir():  # fail before a long run, not after it
        raise ConfigError(f"--out {out}: directory {out.parent} does not exist; create it first")
    for note in notes:
        typer.echo(note, err=True)
    security = Security.load(config)  # [security]: CURVE to the coordinator and nodes
    metrics = MetricsConfig.load(config, {"bind": metrics_bind}, "loadgen")  # [metrics]: Prometheus endpoint
    with serving_metrics(metrics) as counted:
        results = _run_with_signals(cfg, requests, quiet, security.client, counted)
    summary_path = out.with_suffix(".summary.json")
    with writing(out):
        write_requests_csv(out, results)
        write_summary_json(summary_path, results)
    typer.echo(_summary_text(results.summary(), out, summary_path))


def _overrides(coordinator: str | None, entry: list[str], timeout: float | None, name: str | None) -> dict[str, Any]:
    if coordinator and entry:
        raise ConfigError("pass either --coordinator (centralized) or --entry (gossip), not both")
    flags: dict[str, Any] = {"timeout_s": timeout, "name": name}
    if coordinator:
        flags.update(mode="centralized", coordinator=coordinator)
    if entry:
        flags.update(mode="gossip", entry=tuple(entry))
    return flags


@contextmanager
def serving_metrics(config: MetricsConfig) -> Iterator[LoadgenMetrics | None]:
    """The run's metrics, served on [metrics] bind while it lasts; None when that is empty."""
    if not config.enabled:
        yield None
        return
    metrics = LoadgenMetrics()
    endpoint = serve(metrics.registry, config.bind)
    try:
        yield metrics
    finally:
        endpoint.close()


def _run_with_signals(config: LoadgenConfig, requests: list[PlannedRequest], quiet: bool,
                      curve: CurveClient | None, metrics: LoadgenMetrics | None = None) -> Results:
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        return run(config, requests, progress=None if quiet else _print_progress, stop=stop, curve=curve,
                   metrics=metrics)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _print_progress(progress: Progress) -> None:
    print(progress.line(), file=sys.stderr, flush=True)


def _summary_text(summary: dict[str, Any], out: Path, summary_path: Path) -> str:
    lines = [
        f"{summary['total']} requests: {summary['ok']} ok, {summary['error']} error, {summary['timeout']} timeout"
        + (f", {summary['not_sent']} not sent (stopped early)" if summary.get("not_sent") else ""),
        f"send rate {summary['send_rps']} req/s, send lag p99 {summary['send_lag_ms_p99']} ms",
        f"TTFT p50/p99 {summary['ttft_ms_p50']}/{summary['ttft_ms_p99']} ms, "
        f"latency p50/p99 {summary['latency_ms_p50']}/{summary['latency_ms_p99']} ms (from scheduled time)",
    ]
    if summary["errors_by_code"]:
        lines.append(f"errors: {json.dumps(summary['errors_by_code'])}")
    if any(summary["ignored"].values()):
        lines.append(f"ignored replies: {json.dumps({k: v for k, v in summary['ignored'].items() if v})}")
    lines.append(f"wrote {out} and {summary_path}")
    return "\n".join(lines)
