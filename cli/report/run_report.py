"""One run's report, written into its directory: recovery.csv, summary.csv, the plots and timeline.html.

The one code path behind both `schedctl experiment run` (each arm, as soon as its files
are written) and `schedctl experiment report` (re-rendering, e.g. with other SLOs or after
a fix to a rule). Derived files are rewritten from the run's own records every time, in
dependency order: recovery.csv first, from requests.csv and events.csv (computed once,
here); then the run is loaded with it, so the summary (avg_recovery_time), the text report
and the plots all read the same recovery figures back as data.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from cli.report.recovery import recoveries
from cli.report.results import RunData, check_run_dir, load_run
from cli.report.summary import SUMMARY, Summary, summarize_run, write_summary_csv
from daemons.rundir import EVENTS, RECOVERY, REQUESTS, Slo, read_events, read_requests, write_recoveries


@dataclass(frozen=True)
class RunReport:
    """What write_report produced: the loaded run, its summary, the files written."""

    run: RunData
    summary: Summary
    written: list[Path]


def write_report(run_dir: Path, slo: Slo | None = None, plots: bool = True) -> RunReport:
    """Write recovery.csv, summary.csv and (with `plots`) the PNGs and timeline.html; `slo` overrides the manifest's."""
    written = [write_recovery(run_dir)]
    run = load_run(run_dir)
    summary = summarize_run(run, slo)
    written.append(write_summary_csv(summary, run_dir / SUMMARY))
    if plots:
        from cli.report.plots import write_run_plots  # matplotlib is slow to import
        from cli.report.timeline import write_timeline  # so is bokeh

        written += write_run_plots(run)
        written.append(write_timeline(run))
    return RunReport(run, summary, written)


def write_recovery(run_dir: Path) -> Path:
    """Each fault's recovery figures, from requests.csv and events.csv, into recovery.csv."""
    check_run_dir(run_dir)
    found = recoveries(read_requests(run_dir / REQUESTS), read_events(run_dir / EVENTS))
    write_recoveries(run_dir / RECOVERY, found)
    return run_dir / RECOVERY
