"""The scaling study's saturation point (cli/study/aggregate.py `knee`) on hand-made curves."""

from __future__ import annotations

import math

from cli.study.aggregate import LoadPoint, knee

NAN = math.nan


def _curve(*points: tuple[float, float, float]) -> list[LoadPoint]:
    """(offered req/s, goodput req/s, p99 TTFT s) per point; the sweep value is the offered load."""
    return [LoadPoint(x, x, good, p99) for x, good, p99 in points]


def test_the_first_load_whose_goodput_falls_below_ninety_percent_of_offered() -> None:
    # goodput keeps rising (no peak) but falls behind the offered load at 12 req/s
    x, why = knee(_curve((30.0, 14.0, 2.0), (3.0, 3.0, 0.3), (12.0, 10.0, 1.0)), slo_ttft_s=5.0)
    assert x == 12.0
    assert "goodput" in why and "90%" in why


def test_exactly_ninety_percent_is_not_saturated() -> None:
    x, _ = knee(_curve((10.0, 9.0, 0.5)), slo_ttft_s=5.0)
    assert x is None


def test_p99_ttft_above_the_slo_saturates_even_with_full_goodput() -> None:
    x, why = knee(_curve((3.0, 3.0, 0.4), (6.0, 5.9, 6.5), (12.0, 8.0, 9.0)), slo_ttft_s=5.0)
    assert x == 6.0
    assert "p99 TTFT" in why


def test_without_a_ttft_slo_only_goodput_counts() -> None:
    x, _ = knee(_curve((3.0, 3.0, 60.0), (6.0, 6.0, 90.0)), slo_ttft_s=None)
    assert x is None


def test_a_curve_that_keeps_up_is_not_saturated() -> None:
    assert knee(_curve((1.0, 1.0, 0.2), (4.0, 3.9, 0.4)), slo_ttft_s=5.0) == (None, "")


def test_unmeasured_points_are_skipped() -> None:
    x, _ = knee(_curve((3.0, NAN, NAN), (6.0, 2.0, NAN)), slo_ttft_s=5.0)
    assert x == 6.0
