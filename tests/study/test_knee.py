"""The scaling study's saturation point (cli/study/aggregate.py `knee`) on hand-made curves."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import pytest

from cli.study.aggregate import LoadPoint, knee
from cli.study.metrics import read_run_metrics

NAN = math.nan


def _curve(*points: tuple[float, float, float]) -> list[LoadPoint]:
    """(offered req/s, good requests / sent, p99 TTFT s) per point."""
    return [LoadPoint(x, good, p99) for x, good, p99 in points]


def test_the_first_load_whose_goodput_falls_below_ninety_percent_of_offered() -> None:
    # goodput keeps rising in req/s (no peak: 3, 10.8, 14) but falls behind the offered load at 12 req/s
    x, why = knee(_curve((30.0, 14 / 30, 2.0), (3.0, 1.0, 0.3), (12.0, 0.85, 1.0)), slo_ttft_s=5.0)
    assert x == 12.0
    assert "85.0% of requests met the SLOs" in why and "90%" in why


def test_exactly_ninety_percent_is_not_saturated() -> None:
    x, _ = knee(_curve((10.0, 0.9, 0.5), (20.0, (0.95 + 0.85) / 2, 0.5)), slo_ttft_s=5.0)
    assert x is None  # (0.95 + 0.85) / 2 is 0.8999999999999999 in floating point


def test_p99_ttft_above_the_slo_saturates_even_with_full_goodput() -> None:
    x, why = knee(_curve((3.0, 1.0, 0.4), (6.0, 0.98, 6.5), (12.0, 0.7, 9.0)), slo_ttft_s=5.0)
    assert x == 6.0
    assert "p99 TTFT" in why


def test_without_a_ttft_slo_only_goodput_counts() -> None:
    x, _ = knee(_curve((3.0, 1.0, 60.0), (6.0, 1.0, 90.0)), slo_ttft_s=None)
    assert x is None


def test_a_curve_that_keeps_up_is_not_saturated() -> None:
    assert knee(_curve((1.0, 1.0, 0.2), (4.0, 0.97, 0.4)), slo_ttft_s=5.0) == (None, "")


def test_unmeasured_points_are_skipped() -> None:
    x, _ = knee(_curve((3.0, NAN, NAN), (6.0, 0.5, NAN)), slo_ttft_s=5.0)
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
