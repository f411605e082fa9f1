"""Plots: each file is a real, non-empty PNG; the rolling window has the right numbers."""

from __future__ import annotations

import math
from pathlib import Path

from cli.report import load_run
from cli.report.plots import action_counts, rolling, write_compare_plot, write_run_plots
from tests.report.builders import write_run

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def assert_png(path: Path) -> None:
    data = path.read_bytes()
    assert data.startswith(PNG_MAGIC), path
    assert len(data) > 5_000, path  # axes, lines and labels, not a blank canvas


def test_run_plots(tmp_path: Path) -> None:
    run = load_run(write_run(tmp_path))
    paths = write_run_plots(run)
    assert [p.name for p in paths] == ["ttft_cdf.png", "nodes.png", "actions.png", "timeline.png"]
    for p in paths:
        assert p.parent == run.run_dir
        assert_png(p)


def test_plots_of_an_empty_run(tmp_path: Path) -> None:
    run = load_run(write_run(tmp_path, requests=[], nodes=[], events=[], planned_requests=0))
    for p in write_run_plots(run):
        assert p.read_bytes().startswith(PNG_MAGIC)


def test_compare_plot(tmp_path: Path) -> None:
    runs = [(s, load_run(write_run(tmp_path, scheduler=s))) for s in ("centralized", "gossip")]
    path = write_compare_plot(runs, tmp_path / "out")
    assert path == tmp_path / "out" / "ttft_cdf_compare.png"
    assert_png(path)


def test_action_counts_split_ok_and_failed(tmp_path: Path) -> None:
    assert action_counts(load_run(write_run(tmp_path)).requests) == {
        "SERVE": (2, 1), "COLD_START": (1, 0), "MIGRATE": (1, 0), "unplaced": (0, 1)}


def test_rolling_window(tmp_path: Path) -> None:
    t, p50, p99, success = rolling(load_run(write_run(tmp_path)).requests, window_s=2.0, step_s=1.0)
    # Requests scheduled at 0..5; the window (t-2, t] at t=1 holds r1 and r2, both ok.
    assert list(t) == [1.0, 2.0, 3.0, 4.0, 5.0]
    assert (p50[0], success[0]) == (187.5, 100.0)
    # At t=5: r5 (timeout) and r6 (error) only, so no TTFT and 0 % success.
    assert math.isnan(p50[4]) and math.isnan(p99[4]) and success[4] == 0.0

