"""The study statistics against hand-computed values."""

from __future__ import annotations

import math
import random

import pytest

from cli.study.stats import (
    INCONCLUSIVE,
    REFUTED,
    SUPPORTED,
    compare_paired,
    mean_ci,
    paired_differences,
    t_critical,
    verdict,
)


@pytest.mark.parametrize(("df", "t"), [(1, 12.706), (2, 4.303), (4, 2.776), (9, 2.262), (30, 2.042),
                                       (40, 2.021), (60, 2.000), (120, 1.980)])
def test_t_quantiles_match_the_table(df: int, t: float) -> None:
    assert t_critical(df) == pytest.approx(t, abs=1e-3)


def test_t_needs_a_degree_of_freedom() -> None:
    with pytest.raises(ValueError):
        t_critical(0)


def test_mean_ci_by_hand() -> None:
    # 1, 2, 3: mean 2, sd 1, se 1/sqrt(3); t(0.975, 2) = 4.3027
    i = mean_ci([1.0, 2.0, 3.0])
    half = 4.3027 / math.sqrt(3)
    assert (i.mean, i.n, i.sd) == (2.0, 3, 1.0)
    assert i.low == pytest.approx(2 - half) and i.high == pytest.approx(2 + half)


def test_nan_values_are_left_out_and_one_value_has_no_interval() -> None:
    i = mean_ci([5.0, math.nan])
    assert i.mean == 5.0 and i.n == 1 and not i.defined and not i.excludes_zero()
    assert mean_ci([]).n == 0 and math.isnan(mean_ci([]).mean)


def test_paired_difference_whose_interval_excludes_zero() -> None:
    # differences 1.0, 1.2, 0.8: mean 1.0, sd 0.2, half width 4.3027 * 0.2 / sqrt(3) = 0.497
    a = {1: 11.0, 2: 21.2, 3: 30.8}
    b = {1: 10.0, 2: 20.0, 3: 30.0}
    d = compare_paired("a", a, "b", b)
    assert d.diff.mean == pytest.approx(1.0) and d.diff.n == 3
    assert d.diff.low == pytest.approx(1.0 - 0.4968, abs=1e-3) and d.diff.excludes_zero()
    assert d.decision("higher") == "a" and d.decision("lower") == "b" and d.decision("") == "-"
    assert d.cohen_dz == pytest.approx(5.0)  # 1.0 / 0.2
    assert d.relative == pytest.approx(1.0 / 20.0)


def test_paired_difference_whose_interval_includes_zero() -> None:
    # differences 1, -1, 0.5: mean 1/6, the interval spans zero
    d = compare_paired("a", {1: 2.0, 2: 0.0, 3: 1.5}, "b", {1: 1.0, 2: 1.0, 3: 1.0})
    assert d.diff.low < 0 < d.diff.high
    assert d.decision("higher") == "no significant difference (3 runs)"
    assert verdict(d, "higher") == INCONCLUSIVE


def test_pairs_need_both_arms_and_one_pair_is_not_judged() -> None:
    assert paired_differences({1: 1.0, 2: math.nan, 3: 4.0}, {1: 0.5, 2: 1.0, 4: 9.0}) == [0.5]
    d = compare_paired("a", {1: 1.0}, "b", {1: 0.0})
    assert d.decision("higher").startswith("not judged (1 paired run")


def test_verdicts_follow_the_direction() -> None:
    higher = compare_paired("a", {1: 3.0, 2: 3.1, 3: 2.9}, "b", {1: 1.0, 2: 1.0, 3: 1.0})
    assert verdict(higher, "higher") == SUPPORTED and verdict(higher, "lower") == REFUTED


def test_identical_schedules_injected_difference_is_found_identical_arms_are_not() -> None:
    """Two arms on identical schedules: the per-seed noise is shared (the schedule), an arm's
    own noise is small. A fixed +0.05 is called apart; two identical arms are not."""
    rng = random.Random(7)
    schedule = {seed: rng.uniform(0.2, 0.8) for seed in range(5)}  # each seed's own level, shared
    base = {s: v + rng.gauss(0, 0.005) for s, v in schedule.items()}
    better = {s: v + 0.05 + rng.gauss(0, 0.005) for s, v in schedule.items()}
    same = dict(base)
    apart = compare_paired("better", better, "base", base)
    assert apart.decision("higher") == "better" and verdict(apart, "higher") == SUPPORTED
    together = compare_paired("same", same, "base", base)
    assert together.decision("higher") == "no significant difference (5 runs)"
    assert verdict(together, "higher") == INCONCLUSIVE
    # unpaired, the schedule's spread (±0.3) would hide the same +0.05
    assert not mean_ci(list(better.values())).low > mean_ci(list(base.values())).high
