"""The scaling study's saturation point (cli/study/aggregate.py `knee`) on hand-made curves."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import pytest

from cli.study.aggregate import LoadPoint, knee
from cli.study.metrics import read_run_metrics

NAN = math.nan


def _curve(*points: tuple[float, float]) -> list[LoadPoint]:
    """(offered req/s, good requests / sent) per point."""
    return [LoadPoint(x, good) for x, good in points]


def test_the_first_load_whose_goodput_falls_below_ninety_percent_of_offered() -> None:
    # goodput keeps rising in req/s (no peak: 3, 10.8, 14) but falls behind the offered load at 12 req/s
    x, why = knee(_curve((30.0, 14 / 30), (3.0, 1.0), (12.0, 0.85)))
    assert x == 12.0
    assert "85.0% of requests met the SLOs" in why and "90%" in why


def test_exactly_ninety_percent_is_not_saturated() -> None:
    x, _ = knee(_curve((10.0, 0.9), (20.0, (0.95 + 0.85) / 2)))
    assert x is None  # (0.95 + 0.85) / 2 is 0.8999999999999999 in floating point


def test_cold_starts_at_light_load_are_not_saturation() -> None:
    """The scaling preset's 10 s runs: ~8% of requests wait for a model load at every load, so
    the lightest points sit at ~92% (their p99 TTFT, a cold start, is above the SLO); the knee is
    where the share falls below 90%, not the first point."""
    x, why = knee(_curve((3.0, 0.917), (12.0, 0.896), (30.0, 0.765)))
    assert x == 12.0
    assert "89.6% of requests met the SLOs" in why


def test_a_curve_that_keeps_up_is_not_saturated() -> None:
    assert knee(_curve((1.0, 1.0), (4.0, 0.97))) == (None, "")


def test_unmeasured_points_are_skipped() -> None:
    x, _ = knee(_curve((3.0, NAN), (6.0, 0.5)))
    assert x == 6.0


def test_goodput_in_requests_from_summary_columns(tmp_path: Path) -> None:
    """slo_attainment = good_requests / total_requests: a long drain after the last arrival
    lowers goodput per second, not the share of requests served within the SLOs."""
    with (tmp_path / "summary.csv").open("w", newline="") as fh:
        csv.writer(fh).writerows([["total_requests", "good_requests", "goodput", "measured_duration"],
                                  ["30", "27", "1.08", "25.0"]])
    assert read_run_metrics(tmp_path)["slo_attainment"] == pytest.approx(0.9)


def test_no_slo_no_attainment(tmp_path: Path) -> None:
    with (tmp_path / "summary.csv").open("w", newline="") as fh:
        csv.writer(fh).writerows([["total_requests", "good_requests", "goodput"], ["30", "0", ""]])
    assert "slo_attainment" not in read_run_metrics(tmp_path)
