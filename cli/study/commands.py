"""`schedctl study run|report`: a thin Typer layer over cli/study."""

from __future__ import annotations

import signal
import threading
from pathlib import Path
from typing import Annotated

import typer

from cli.errors import exit_on_config_error
from cli.experiment.spec import BOTH
from cli.study.ledger import DONE, FAILED, Ledger
from cli.study.presets import PRESETS, parse_arms, preset
from cli.study.spec import Study, from_dict, load
from daemons.core.errors import ConfigError

study_app = typer.Typer(help="Run studies (arms × points × repeats, with confidence intervals) and report.",
                        no_args_is_help=True)


@study_app.command("run")
@exit_on_config_error
def run_command(
    study: Annotated[str | None, typer.Argument(
        help=f"A preset ({', '.join(PRESETS)}) or a study file (.toml).", show_default=False)] = None,
    repeats: Annotated[int | None, typer.Option(help="Seeds per point (every arm replays each).")] = None,
    duration: Annotated[float | None, typer.Option(help="Seconds of arrivals per run (overrides the study's).")] = None,
    quick: Annotated[bool, typer.Option("--quick", help="A 1-2 minute version of the study (CI).")] = False,
    arms: Annotated[str | None, typer.Option(
        help="A preset's schedulers: centralized, gossip, hybrid, a comma-separated list, both or all "
             "(default: centralized,gossip).", show_default=False)] = None,
    resume: Annotated[Path | None, typer.Option(
        "--resume", help="Finish an interrupted study directory; runs already done are never redone.")] = None,
    studies_dir: Annotated[Path, typer.Option(help="Where study directories go.")] = Path("studies"),
    yes: Annotated[bool, typer.Option("--yes", help="Run a study estimated to take more than a day.")] = False,
) -> None:
    """Run a study: every arm at every point, --repeats times with paired seeds, then its report.

    Writes studies/<name>_<YYYYmmdd_HHMMSS>/: study.json (every run and its status), runs/
    (each run's ordinary results directory), aggregates.csv, differences.csv,
    hypotheses.csv, plots, report.md and report.html.

    Presets (the prototype's experiments; each default finishes within 20 minutes on a
    2-core machine): performance, fault-tolerance, utilization, scaling.

    Examples:

    \b
      schedctl study run performance --quick
      schedctl study run performance --repeats 5 --duration 300
      schedctl study run performance --arms centralized,gossip,hybrid
      schedctl study run my_study.toml
      schedctl study run --resume studies/performance_20261204_180000
      schedctl study run scaling-sim --yes
    """
    if resume is not None:
        if study is not None or repeats is not None or duration is not None or quick or arms is not None:
            raise ConfigError("--resume finishes a study as it was planned: drop the study name and "
                              "--repeats/--duration/--quick/--arms")
        ledger = Ledger.load(resume)
    else:
        if study is None:
            raise ConfigError(f"name a study: a preset ({', '.join(PRESETS)}) or a study file (.toml)")
        if duration is not None and not duration > 0:
            raise ConfigError(f"--duration must be > 0 seconds, got {duration:g}")
        resolved = _resolve(study, repeats, duration, quick, arms)
        _check_estimate(resolved, yes)
        from cli.study.runner import new_study_dir

        ledger = Ledger.new(new_study_dir(resolved, studies_dir), resolved)
    typer.echo(f"study {ledger.study.name}: {len(ledger.runs)} runs in {ledger.study_dir}")
    _run(ledger)


def _check_estimate(study: Study, yes: bool) -> None:
    """A study estimated to take more than a day runs only with --yes (cli/study/estimate.py)."""
    from cli.study.estimate import ASK_ABOVE_S, describe, study_seconds

    seconds = study_seconds(study)
    runs = len(study.points()) * len(study.arms) * len(study.seeds)
    if seconds > ASK_ABOVE_S and not yes:
        raise ConfigError(f"study {study.name} would take about {describe(seconds)} ({runs} runs): pass --yes to "
                          "run it anyway, or shrink it (fewer points, nodes or repeats, a shorter --duration)")
    typer.echo(f"study {study.name}: about {describe(seconds)} estimated")


def _resolve(name: str, repeats: int | None, duration: float | None, quick: bool, arms: str | None) -> Study:
    path = Path(name)
    if name.endswith(".toml") or path.is_file():
        if arms is not None:
            raise ConfigError(f"--arms picks a preset's schedulers; study file {name} lists its own [[arms]]: "
                              "edit them there, or drop --arms")
        return load(path, quick, duration, repeats)
    chosen = parse_arms(arms) if arms is not None else BOTH
    return from_dict(preset(name, quick, duration, chosen), f"preset {name}", repeats=repeats)


def _run(ledger: Ledger) -> None:
    from cli.experiment.runner import ArmFailed
    from cli.study.runner import run_study

    stop = threading.Event()
    previous = {sig: signal.signal(sig, lambda *_: _interrupt(stop)) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        run_study(ledger, typer.echo, stop)
    except ArmFailed as exc:  # a mistake in the study's input, which every run would repeat
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    except KeyboardInterrupt:
        typer.echo(f"aborted: resume with `schedctl study run --resume {ledger.study_dir}`", err=True)
        raise typer.Exit(130) from None
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    _render(ledger)
    if stop.is_set():
        typer.echo(f"interrupted: resume with `schedctl study run --resume {ledger.study_dir}`", err=True)
        raise typer.Exit(130)
    failed = [r.id for r in ledger.runs if r.status == FAILED]
    if failed:
        typer.echo(f"error: {len(failed)} run(s) failed ({', '.join(failed)}): see each one's error.txt; "
                   f"`schedctl study run --resume {ledger.study_dir}` retries them", err=True)
        raise typer.Exit(1)


def _interrupt(stop: threading.Event) -> None:
    if stop.is_set():
        raise KeyboardInterrupt
    typer.echo("\nstopping: finishing the run in progress's bookkeeping (Ctrl-C again to abort)", err=True)
    stop.set()


def _render(ledger: Ledger) -> None:
    from cli.study.aggregate import aggregate, write_csvs
    from cli.study.plots import write_plots
    from cli.study.report import write_report

    agg = aggregate(ledger)
    write_csvs(agg)
    write_plots(agg)
    md, page = write_report(agg)
    for v in agg.verdicts:
        d = v.difference.diff
        typer.echo(f"hypothesis: {v.hypothesis.text} [{v.hypothesis.metric}]: {v.verdict} "
                   f"(mean difference {d.mean:.4g}, 95% CI [{d.low:.4g}, {d.high:.4g}], N={d.n})"
                   + (f" — {v.note}" if v.note else ""))
    done = sum(1 for r in agg.results if r.status == DONE)
    typer.echo(f"report: {page} and {md} ({done} of {len(agg.results)} runs)")


@study_app.command("report")
@exit_on_config_error
def report_command(
    study_dir: Annotated[Path, typer.Argument(help="A study directory: studies/<name>_<time>/.")],
    resummarize: Annotated[bool, typer.Option(
        "--resummarize", help="First rewrite every run's recovery.csv and summary.csv from its "
                              "requests/nodes/events CSVs "
                              "(figures a newer schedctl measures).")] = False,
) -> None:
    """Re-render a study's aggregates, plots and report from its run directories.

    A run whose directory was deleted is listed as missing and left out of the figures.

    Examples:

    \b
      schedctl study report studies/performance_20261204_180000
      schedctl study report studies/utilization_20261204_180000 --resummarize
    """
    ledger = Ledger.load(study_dir)
    if resummarize:
        from cli.report.run_report import write_report as write_run_report

        for entry in ledger.runs:
            if ledger.finished(entry):  # recovery.csv and summary.csv as today's report writes them
                write_run_report(ledger.study_dir / entry.run_dir, plots=False)
    _render(ledger)
