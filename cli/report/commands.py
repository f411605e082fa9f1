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
from cli.report.compare import (
    COMPARISON_CSV,
    COMPARISON_MD,
    compare,
    prototype_comparison,
    render_text,
    write_comparison,
)
from cli.report.host import saturation_warning
from cli.report.results import RunData, load_run
from cli.report.run_report import write_report
from cli.report.summary import SUMMARY, Summary, summarize_run, write_summary_csv
from cli.report.text import format_summary
from daemons.core.errors import ConfigError
from daemons.rundir import Slo

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
    """Summarize one run: print its figures, write recovery.csv, summary.csv and the plots into its directory.

    Goodput counts the successful requests that meet every SLO, taken from manifest.json
    unless a --slo-* flag overrides it. Exits 1 if the run recorded other than one row
    per planned request.

    Examples:

    \b
      schedctl experiment report results/smoke_gossip_20250101_120000
      schedctl experiment report results/smoke_gossip_20250101_120000 --slo-ttft-ms 500 --no-plots
    """
    report = write_report(run_dir, Slo(slo_ttft_ms, slo_tpot_ms, slo_e2el_ms), plots)
    typer.echo(format_summary(report.summary), nl=False)
    typer.echo("wrote " + ", ".join(str(p) for p in report.written))
    _exit_on_mismatch([report.summary])


@exit_on_config_error
def compare_command(
    run_dirs: Annotated[list[Path], typer.Argument(help="Two or more results directories.")],
    out: Annotated[Path | None, typer.Option(
        "--out", "-o", help="Where comparison.csv/.md go (default: the first run dir's parent).")] = None,
    slo_ttft_ms: SloTtft = None,
    slo_tpot_ms: SloTpot = None,
    slo_e2el_ms: SloE2el = None,
    plots: Plots = True,
    force: Annotated[bool, typer.Option("--force", help="Overwrite the comparison files of an earlier "
                                        "compare in --out.")] = False,
) -> None:
    """Compare runs metric by metric and name the winner of each.

    Prints the table (columns: the scheduler types when they differ, else the directory
    names), writes comparison.csv, comparison.md and ttft_cdf_compare.png into --out
    (refusing to overwrite an earlier comparison there without --force), and summary.csv
    into each run directory. Exits 1 if a run recorded other than one row per planned request.

    Examples:

    \b
      schedctl experiment compare results/smoke_centralized_* results/smoke_gossip_*
      schedctl experiment compare results/a_gossip_* results/b_gossip_* -o reports/
    """
    if len(run_dirs) < 2:
        raise ConfigError("compare needs two or more results directories; for one run use "
                          "`schedctl experiment report DIR`")
    out_dir = out if out is not None else run_dirs[0].resolve().parent
    _refuse_overwrite(out_dir, plots, force)
    slo = Slo(slo_ttft_ms, slo_tpot_ms, slo_e2el_ms)
    runs = [load_run(d) for d in run_dirs]
    summaries = [summarize_run(r, slo) for r in runs]
    comparison = compare(summaries)
    typer.echo(render_text(comparison), nl=False)
    _warn_saturated(summaries)
    from cli.study.paired import paired_comparison  # cli.study reads cli.report: imported when used

    paired = paired_comparison(summaries, [r.manifest.raw.get("seed") for r in runs])
    if paired is not None:  # several runs of the same arms: means, intervals, paired differences
        typer.echo(paired, nl=False)
    written = write_comparison_files(runs, summaries, out_dir, plots)
    written += [write_summary_csv(s, r.run_dir / SUMMARY) for s, r in zip(summaries, runs, strict=True)]
    typer.echo("wrote " + ", ".join(str(p) for p in written))
    _exit_on_mismatch(summaries)


def write_comparison_files(runs: Sequence[RunData], summaries: Sequence[Summary], out_dir: Path,
                           plots: bool = True) -> list[Path]:
    """comparison.csv, comparison.md and (with `plots`) the overlaid TTFT CDF of the runs in
    `out_dir`: what `compare` writes, and `experiment run` for both schedulers."""
    comparison = compare(summaries)
    written = [*write_comparison(comparison, out_dir)]
    if plots:
        from cli.report.plots import write_compare_plot  # matplotlib is slow to import

        written.append(write_compare_plot(list(zip(comparison.headers, runs, strict=True)), out_dir))
    return written


def _refuse_overwrite(out_dir: Path, plots: bool, force: bool) -> None:
    """An earlier comparison in `out_dir` (the runs' parent by default) is kept unless --force."""
    names = [COMPARISON_CSV, COMPARISON_MD]
    if plots:
        from cli.report.plots import TTFT_CDF_COMPARE

        names.append(TTFT_CDF_COMPARE)
    there = [out_dir / n for n in names if (out_dir / n).exists()]
    if there and not force:
        raise ConfigError(f"{', '.join(map(str, there))} already exist(s) from an earlier compare: pass --force "
                          "to overwrite, or -o DIR to write this comparison elsewhere")


def print_prototype_report(summaries: Sequence[Summary]) -> None:
    """Print the prototype's report (Metric | Centralized | Gossip | Winner) for 1 or 2 runs;
    three or more (a hybrid arm beside them) get a column each.

    What `schedctl experiment run` prints at the end; a scheduler that did not run
    (--centralized-only, --gossip-only) shows "-". Record mismatches follow as warnings;
    deciding the exit status is left to the caller (see `Summary.records_ok`).
    """
    typer.echo(render_text(prototype_comparison(summaries)), nl=False)
    for s in summaries:
        if s.record_check:
            typer.echo(f"warning: {s.scheduler_type} run {s.run_dir}: {s.record_check}", err=True)
    _warn_saturated(summaries)


def _warn_saturated(summaries: Sequence[Summary]) -> None:
    """One warning line per run whose host was saturated (cli/report/host.py)."""
    for s in summaries:
        if warning := saturation_warning(s.host_saturated_fraction, s.host_saturated):
            typer.echo(f"warning: {s.scheduler_type} run {s.run_dir}: {warning}", err=True)


def _exit_on_mismatch(summaries: Sequence[Summary]) -> None:
    bad = [s for s in summaries if s.record_check]
    for s in bad:
        typer.echo(f"error: {s.run_dir}: {s.record_check}; the figures above undercount lost requests, "
                   "check the runner's log", err=True)
    if bad:
        raise typer.Exit(RECORD_MISMATCH_EXIT)
