"""write_report: recovery figures computed once, written as data, and what every reader shows."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from cli.report import load_run, report_command, write_report
from cli.report.plots import fault_marks
from daemons.rundir import RECOVERY, read_recoveries
from tests.report.builders import RECOVERIES, event, req, write_csv, write_run
from tests.report.test_plots import PAUSE_EVENTS, PAUSE_REQUESTS

app = typer.Typer(pretty_exceptions_enable=False)
app.command("report")(report_command)
app.command("other")(lambda: None)  # two commands: `report` stays a sub-command


def pause_run(tmp_path: Path) -> Path:
    """node-b paused at 5 s, recovered at 17 s (tests/report/test_plots.py), and a second fault,
    a kill of node-a at 12 s, that the service rides out (all later arrivals succeed): recovered
    once MIN_EVIDENCE (5) requests after it were served well, the window (12 s, 17 s]: 5 s.
    Requests go on to 29 s."""
    events = [*PAUSE_EVENTS, event(12.0, "fault", "node-a", "kind=kill"), event(13.0, "node_dead", "node-a")]
    more = [req(f"r{i}", i, i + 0.125, i + 0.5) for i in range(20, 30)]
    return write_run(tmp_path, scheduler="gossip", requests=[*PAUSE_REQUESTS, *more], events=events,
                     planned_requests=30)


def test_the_recovery_figures_written_are_the_ones_the_report_prints(tmp_path: Path) -> None:
    run_dir = pause_run(tmp_path)
    result = CliRunner().invoke(app, ["report", str(run_dir)])
    assert result.exit_code == 0, result.output
    found = read_recoveries(run_dir / RECOVERY)
    assert [(r.t_s, r.target, r.fault) for r in found] == [(5.0, "node-b", "pause"), (12.0, "node-a", "kill")]
    assert [r.recovery_s for r in found] == [12.0, 5.0]
    assert found[0].detection_s == 0.5 and found[0].drain_s == 1.25
    mean = sum(r.recovery_s for r in found) / len(found)
    # the text report ...
    assert f"recovery    avg {mean:.2f} s over 2 recoveries (2 faults)" in result.stdout
    assert str(run_dir / RECOVERY) in result.stdout.splitlines()[-1]  # "wrote ..."
    # ... summary.csv ...
    with (run_dir / "summary.csv").open(newline="") as fh:
        summary = next(csv.DictReader(fh))
    assert (float(summary["avg_recovery_time"]), summary["recovery_count"]) == (mean, "2")
    # ... and the fault timeline all show the figures of recovery.csv
    marks = fault_marks(load_run(run_dir))
    assert [(m.t_s, m.detected, m.drained, m.recovered) for m in marks] == [
        (r.t_s, r.t_s + r.detection_s, r.t_s + r.drain_s, r.t_s + r.recovery_s) for r in found]
    assert (run_dir / "recovery.png").stat().st_size > 0


def test_recovery_csv_is_read_back_not_computed_again(tmp_path: Path) -> None:
    """Readers take recovery.csv as it is: a figure changed in the file shows everywhere."""
    run_dir = pause_run(tmp_path)
    write_report(run_dir, plots=False)
    with (run_dir / RECOVERY).open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    write_csv(run_dir / RECOVERY, list(rows[0]), [rows[0] | {"recovery_s": "7"}, rows[1]])
    run = load_run(run_dir)
    assert [r.recovery_s for r in run.recoveries] == [7.0, 5.0]
    assert fault_marks(run)[0].recovered == 12.0


def test_write_report_derives_recovery_csv_again(tmp_path: Path) -> None:
    """Re-rendering recomputes recovery.csv from requests and events: a stale file is replaced."""
    run_dir = write_run(tmp_path, recoveries=RECOVERIES)  # figures these requests do not give
    report = write_report(run_dir, plots=False)
    assert [p.name for p in report.written] == ["recovery.csv", "summary.csv"]
    # builders' two faults: the service never gets back to the baseline before the run ends
    assert [(r.t_s, r.recovered) for r in read_recoveries(run_dir / RECOVERY)] == [(2.0, False), (7.0, False)]
    assert math.isnan(report.summary.avg_recovery_time) and report.summary.fault_count == 2
    assert [(r.t_s, r.recovered) for r in report.run.recoveries] == [(2.0, False), (7.0, False)]


@pytest.mark.parametrize("plots", [True, False])
def test_write_report_writes_what_it_says(tmp_path: Path, plots: bool) -> None:
    run_dir = pause_run(tmp_path)
    report = write_report(run_dir, plots=plots)
    assert all(p.is_file() and p.parent == run_dir for p in report.written)
    assert ("recovery.png" in [p.name for p in report.written]) is plots
