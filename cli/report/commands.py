"""`schedctl experiment report` and `schedctl experiment compare`, as plain functions.

The experiment runner registers them on its Typer sub-app:

    experiment_app.command("report")(report_command)
    experiment_app.command("compare")(compare_command)

Exit status: 0 when all is well; 2 for a user error (missing directory, malformed file:
one `error: ...` line, see cli.errors); 1 when the reports were written but a run did not
record exactly one row per planned request, since its figures then undercount failures.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Annotated

import typer

from cli.errors import exit_on_config_error
from cli.report.compare import compare, prototype_comparison, render_text, write_comparison
from cli.report.results import RunData, Slo, load_run
from cli.report.summary import SUMMARY, Summary, summarize_run, write_summary_csv
from cli.report.text import format_summary
from daemons.core.errors import ConfigError

RECORD_MISMATCH_EXIT = 1

SloTtft = Annotated[float | None, typer.Option(
    "--slo-ttft-ms", min=0, help="TTFT SLO for goodput, ms (overrides manifest.json).")]
SloTpot = Annotated[float | None, typer.Option(
    "--slo-tpot-ms", min=0, help="TPOT SLO for goodput, ms (overrides manifest.json).")]
SloE2el = Annotated[float | None, typer.Option(
    "--slo-e2el-ms", min=0, help="End-to-end latency SLO for goodput, ms (overrides manifest.json).")]
Plots = Annotated[bool, typer.Option("--plots/--no-plots", help="Write PNG plots (matplotlib).")]


@exit_on_config_error
def report_command(
    run_dir: Annotated[Path, typer.Argument(help="A results directory: results/<name>_<scheduler>_<time>/.")],
    slo_ttft_ms: SloTtft = None,
    slo_tpot_ms: SloTpot = None,
    slo_e2el_ms: SloE2el = None,
    plots: Plots = True,
) -> None:
    """Summarize one run: print its figures, write summary.csv and the plots into its directory.

    Goodput counts the successful requests that meet every SLO, taken from manifest.json
    unless a --slo-* flag overrides it. Exits 1 if the run recorded other than one row
    per planned request.

    Examples:

        schedctl experiment report results/smoke_gossip_20250101_120000

        schedctl experiment report results/smoke_gossip_20250101_120000 --slo-ttft-ms 500 --no-plots
    """
    run = load_run(run_dir)
    summary = summarize_run(run, Slo(slo_ttft_ms, slo_tpot_ms, slo_e2el_ms))
    typer.echo(format_summary(summary), nl=False)
    written = [write_summary_csv(summary, run_dir / SUMMARY)]
    if plots:
        written += _run_plots(run)
    typer.echo("wrote " + ", ".join(str(p) for p in written))
    _exit_on_mismatch([summary])


@exit_on_config_error
def compare_command(
    run_dirs: Annotated[list[Path], typer.Argument(help="Two or more results directories.")],
    out: Annotated[Path | None, typer.Option(
        "--out", "-o", help="Where comparison.csv/.md go (default: the first run dir's parent).")] = None,
    slo_ttft_ms: SloTtft = None,
    slo_tpot_ms: SloTpot = None,
    slo_e2el_ms: SloE2el = None,
    plots: Plots = True,
) -> None:
    """Compare runs metric by metric and name the winner of each.

    Prints the table (columns: the scheduler types when they differ, else the directory
    names), writes comparison.csv, comparison.md and ttft_cdf_compare.png into --out, and
    summary.csv into each run directory. Exits 1 if a run recorded other than one row per
    planned request.

    Examples:

        schedctl experiment compare results/smoke_centralized_* results/smoke_gossip_*

        schedctl experiment compare results/a_gossip_* results/b_gossip_* -o reports/
    """
    if len(run_dirs) < 2:
        raise ConfigError("compare needs two or more results directories; for one run use "
                          "`schedctl experiment report DIR`")
    slo = Slo(slo_ttft_ms, slo_tpot_ms, slo_e2el_ms)
    runs = [load_run(d) for d in run_dirs]
    summaries = [summarize_run(r, slo) for r in runs]
    comparison = compare(summaries)
    typer.echo(render_text(comparison), nl=False)
    from cli.study.paired import paired_comparison  # cli.study reads cli.report: imported when used

    paired = paired_comparison(summaries, [r.manifest.raw.get("seed") for r in runs])
    if paired is not None:  # several runs of the same arms: means, intervals, paired differences
        typer.echo(paired, nl=False)
    out_dir = out if out is not None else run_dirs[0].resolve().parent
    written = [*write_comparison(comparison, out_dir)]
    written += [write_summary_csv(s, r.run_dir / SUMMARY) for s, r in zip(summaries, runs, strict=True)]
    if plots:
        from cli.report.plots import write_compare_plot  # matplotlib is slow to import

        written.append(write_compare_plot(list(zip(comparison.headers, runs, strict=True)), out_dir))
    typer.echo("wrote " + ", ".join(str(p) for p in written))
    _exit_on_mismatch(summaries)


def print_prototype_report(summaries: Sequence[Summary]) -> None:
    """Print the prototype's report (Metric | Centralized | Gossip | Winner) for 1 or 2 runs.

    What `schedctl experiment run` prints at the end; a scheduler that did not run
    (--centralized-only, --gossip-only) shows "-". Record mismatches follow as warnings;
    deciding the exit status is left to the caller (see `Summary.records_ok`).
    """
    typer.echo(render_text(prototype_comparison(summaries)), nl=False)
    for s in summaries:
        if s.record_check:
            typer.echo(f"warning: {s.scheduler_type} run {s.run_dir}: {s.record_check}", err=True)


def _run_plots(run: RunData) -> list[Path]:
    from cli.report.plots import write_run_plots  # matplotlib is slow to import

    return write_run_plots(run)


def _exit_on_mismatch(summaries: Sequence[Summary]) -> None:
    bad = [s for s in summaries if s.record_check]
    for s in bad:
        typer.echo(f"error: {s.run_dir}: {s.record_check}; the figures above undercount lost requests, "
                   "check the runner's log", err=True)
    if bad:
        raise typer.Exit(RECORD_MISMATCH_EXIT)
