"""Host CPU figures and the saturation verdict, from host.csv, in the summary and the report."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from cli.report import compare_command, report_command, summarize
from cli.report.host import host_figures, is_saturated, saturated_fraction
from cli.report.text import format_summary
from daemons.core.errors import ConfigError
from daemons.rundir import HOST_COLUMNS, HOSTS, HostSample, read_hosts
from tests.report.builders import write_run


def test_saturated_seconds_are_strictly_above_ninety_percent() -> None:
    assert saturated_fraction([0.95, 0.5, 0.91, 0.90]) == 0.5
    assert math.isnan(saturated_fraction([]))


def test_saturated_when_more_than_five_percent_of_seconds() -> None:
    assert is_saturated(0.05) is False and is_saturated(0.051) is True
    assert is_saturated(math.nan) is None


def test_figures() -> None:
    # 20 seconds, one above 90 %: 5 %, not more than 5 % -> not saturated
    samples = [HostSample(t, 0.5, 0.25) for t in range(19)] + [HostSample(19, 0.95, 0.75)]
    f = host_figures(samples)
    assert (f.host_cpu_p50, f.host_cpu_max, f.schedctl_cpu_p50, f.schedctl_cpu_max) == (0.5, 0.95, 0.25, 0.75)
    assert (f.host_saturated_fraction, f.host_saturated) == (0.05, False)
    empty = host_figures([])
    assert math.isnan(empty.host_cpu_p50) and empty.host_saturated is None


def write_host(run_dir: Path, cpu: list[float]) -> None:
    with (run_dir / HOSTS).open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(HOST_COLUMNS)
        writer.writerows([t, c, c / 2, c / 4, 12] for t, c in enumerate(cpu))


def test_summary_and_report_flag_a_saturated_host(tmp_path: Path) -> None:
    run_dir = write_run(tmp_path)
    write_host(run_dir, [0.99, 0.97, 0.2, 0.3])
    s = summarize(run_dir)
    assert (s.host_cpu_p50, s.host_cpu_max, s.schedctl_cpu_max) == (pytest.approx(0.635), 0.99, 0.495)
    assert (s.host_saturated_fraction, s.host_saturated) == (0.5, True)
    text = format_summary(s)
    assert "SATURATED" in text
    warning = [line for line in text.splitlines() if line.startswith("warning:")]
    assert len(warning) == 1 and "measure the host, not the scheduler" in warning[0] and "50%" in warning[0]


def test_an_idle_host_and_a_run_without_host_csv(tmp_path: Path) -> None:
    calm = write_run(tmp_path / "calm")
    write_host(calm, [0.1] * 10)
    assert summarize(calm).host_saturated is False
    assert "warning:" not in format_summary(summarize(calm))
    old = summarize(write_run(tmp_path / "old"))
    assert old.host_saturated is None and math.isnan(old.host_cpu_p50)
    assert "not sampled" in format_summary(old)


def test_a_bad_cell_is_one_error_naming_the_file(tmp_path: Path) -> None:
    (tmp_path / HOSTS).write_text("t_s,host_cpu,schedctl_cpu\n0,busy,0.1\n")
    with pytest.raises(ConfigError, match=r"host\.csv:2: column 'host_cpu' must be a number"):
        read_hosts(tmp_path / HOSTS)


def test_compare_warns_for_each_saturated_run(tmp_path: Path) -> None:
    busy, calm = write_run(tmp_path, scheduler="centralized"), write_run(tmp_path, scheduler="gossip")
    write_host(busy, [0.99] * 10)
    write_host(calm, [0.2] * 10)
    app = typer.Typer(no_args_is_help=True, pretty_exceptions_enable=False)
    app.command("report")(report_command)
    app.command("compare")(compare_command)
    result = CliRunner().invoke(app, ["compare", str(busy), str(calm), "--no-plots", "-o", str(tmp_path)])
    assert result.exit_code == 0, result.output
    warnings = [line for line in result.stderr.splitlines() if "not the scheduler" in line]
    assert len(warnings) == 1 and warnings[0].startswith(f"warning: centralized run {busy}: ")
    assert "Requests Affected by Faults" in result.stdout and "Queue Depth Jain Index" in result.stdout
