"""Runs a study: every planned run as an ordinary experiment run, one after another.

Each run is `cli.experiment.runner.run_experiment` on a one-scheduler experiment, writing
its usual results directory (and its report: recovery.csv, summary.csv, plots, timeline)
under `<study dir>/runs/`; study.json records each run's status as soon as it changes. A run
that fails is recorded `failed` (its error.txt says why) and the study goes on; a mistake in
the study's input (a ConfigError) stops it, as it would fail every run. Ctrl-C stops the run in progress, which
is recorded `interrupted`; `--resume DIR` then runs whatever is not `done`, never a run
that is.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

from cli.experiment.runner import ArmFailed, RunOutcome, run_experiment
from cli.report.run_report import write_report
from cli.study.ledger import DONE, FAILED, INTERRUPTED, Ledger, RunEntry, point_label
from cli.study.spec import Study

Say = Callable[[str], None]
RUNS = "runs"
STARTUP_S = 20.0  # a run's cost beyond its duration (cluster start, drain, plots): the first ETA's guess
PROGRESS_EVERY_S = 10  # one load generator progress line per this many seconds


def new_study_dir(study: Study, root: Path) -> Path:
    stamp = datetime.now().strftime("%Y%m%d_%H%M%S")
    path = root / f"{study.name}_{stamp}"
    path.mkdir(parents=True, exist_ok=False)
    return path


def run_study(ledger: Ledger, say: Say, stop: threading.Event) -> None:
    """Run every run of the ledger not yet done, in plan order, saying where the study stands."""
    todo = [r for r in ledger.runs if not ledger.finished(r)]
    total, done_before = len(ledger.runs), len(ledger.runs) - len(todo)
    if done_before:
        say(f"study: {done_before} of {total} runs already done; running the other {len(todo)}")
    started, walls = time.monotonic(), list[float]()
    for k, entry in enumerate(todo, start=done_before + 1):
        if stop.is_set():
            break
        eta = _eta(ledger.study, walls, total - k + 1, entry)
        say(f"study: run {k} of {total}: {entry.arm}, {point_label(entry.point)}, seed {entry.seed} "
            f"(elapsed {_clock(time.monotonic() - started)}, about {_clock(eta)} left)")
        t0 = time.monotonic()
        entry = _run_one(ledger, entry, say, stop)
        walls.append(time.monotonic() - t0)
        ledger.update(entry, wall_s=round(walls[-1], 1))
    finished = sum(1 for r in ledger.runs if ledger.finished(r))
    say(f"study: {finished} of {total} runs done in {_clock(time.monotonic() - started)}")


def _run_one(ledger: Ledger, entry: RunEntry, say: Say, stop: threading.Event) -> RunEntry:
    study = ledger.study
    arm = next(a for a in study.arms if a.name == entry.arm)
    spec = study.experiment(arm, tuple(entry.point.items()), entry.seed)
    spec = dataclasses.replace(spec, results_dir=str(ledger.study_dir / RUNS), name=f"{study.name}_{entry.id}")
    outcomes: list[RunOutcome] = []

    def finish(outcome: RunOutcome) -> None:
        write_report(outcome.run_dir)  # recovery.csv, summary.csv, plots: as `experiment run` finishes an arm
        outcomes.append(outcome)

    ticks = [0]

    def progress(line: str) -> None:
        ticks[0] += 1
        if ticks[0] % PROGRESS_EVERY_S == 0:
            say("    " + line)

    try:
        run_experiment(spec, lambda line: say("  " + line), lambda p: progress(p.line()), stop, on_outcome=finish)
    except ArmFailed as exc:
        rel = _relative(exc.run_dir, ledger.study_dir)
        entry = ledger.update(entry, status=FAILED, run_dir=rel, error=str(exc))
        if exc.user_error:
            raise
        say(f"study: run {entry.id} failed: {exc}")
        return entry
    (outcome,) = outcomes
    status = INTERRUPTED if outcome.interrupted else DONE
    return ledger.update(entry, status=status, run_dir=_relative(outcome.run_dir, ledger.study_dir), error="")


def _relative(path: Path, root: Path) -> str:
    try:
        return str(path.resolve().relative_to(root.resolve()))
    except ValueError:
        return str(path)


def _eta(study: Study, walls: list[float], remaining: int, entry: RunEntry) -> float:
    if walls:
        return sum(walls) / len(walls) * remaining
    duration = study.experiment(next(a for a in study.arms if a.name == entry.arm),
                                tuple(entry.point.items()), entry.seed).workload.duration_s
    return (duration + STARTUP_S) * remaining


def _clock(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    return f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"
