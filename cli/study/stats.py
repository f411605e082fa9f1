"""The statistics of a study: means, 95% confidence intervals, paired differences, verdicts.

Pure functions over lists of floats (stdlib only); NaN values (a figure a run could not
measure) are left out of every sample, and a sample's `n` says how many values remained.

Choice of interval: **Student t**, not the bootstrap. A study repeats each point a few
times (2-5 seeds); a percentile bootstrap over 3 values can only return values among
those 3 and is far too narrow, while the t-interval is exact for normal data and the
standard choice for the mean of a few paired differences (e.g. NIST/SEMATECH e-Handbook
§7.3.1, "paired t"). Arms are compared **paired**: within one seed every arm replays the
identical request schedule, so the difference per seed removes the schedule's own
variance and the interval is the t-interval of those differences,

    mean(d) ± t(0.975, n-1) · sd(d) / sqrt(n).

A winner is named only when that interval excludes zero; otherwise the arms show "no
significant difference (n runs)". With fewer than two pairs there is no interval at all.

Effect sizes: the mean difference (in the metric's unit, with its interval), the relative
difference (mean difference / |mean of the second arm|) and Cohen's d_z (mean difference /
sd of the differences), the standardised effect of a paired design.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal, TypeVar

K = TypeVar("K", bound=Hashable)  # what pairs two arms' runs: the seed
CONFIDENCE = 0.95
Better = Literal["lower", "higher", ""]
SUPPORTED, REFUTED, INCONCLUSIVE = "supported", "refuted", "inconclusive"

# Two-sided 95% critical values t(0.975, df) for df = 1..30 (any t table, e.g. NIST/SEMATECH
# e-Handbook §1.3.6.7.2); beyond 30 the Cornish-Fisher expansion below is within 1e-4.
_T975 = (12.7062, 4.3027, 3.1824, 2.7764, 2.5706, 2.4469, 2.3646, 2.3060, 2.2622, 2.2281,
         2.2010, 2.1788, 2.1604, 2.1448, 2.1314, 2.1199, 2.1098, 2.1009, 2.0930, 2.0860,
         2.0796, 2.0739, 2.0687, 2.0639, 2.0595, 2.0555, 2.0518, 2.0484, 2.0452, 2.0423)
_Z975 = 1.959964


def t_critical(df: int) -> float:
    """t(0.975, df): the multiplier of the standard error in a two-sided 95% interval."""
    if df < 1:
        raise ValueError(f"degrees of freedom must be >= 1, got {df}")
    if df <= len(_T975):
        return _T975[df - 1]
    z = _Z975  # Cornish-Fisher expansion of the t quantile around the normal one
    return (z + (z**3 + z) / (4 * df) + (5 * z**5 + 16 * z**3 + 3 * z) / (96 * df**2)
            + (3 * z**7 + 19 * z**5 + 17 * z**3 - 15 * z) / (384 * df**3))


@dataclass(frozen=True)
class Interval:
    """A sample's mean and its 95% t-interval; low/high are NaN with fewer than two values."""

    mean: float
    low: float
    high: float
    n: int
    sd: float = math.nan

    @property
    def defined(self) -> bool:
        return not math.isnan(self.low)

    def excludes_zero(self) -> bool:
        return self.defined and (self.low > 0 or self.high < 0)

    @property
    def half_width(self) -> float:
        return (self.high - self.low) / 2 if self.defined else math.nan


def clean(values: Sequence[float]) -> list[float]:
    return [float(v) for v in values if not math.isnan(v)]


def mean_ci(values: Sequence[float]) -> Interval:
    """Mean and 95% Student-t interval of the non-NaN values."""
    sample = clean(values)
    n = len(sample)
    if n == 0:
        return Interval(math.nan, math.nan, math.nan, 0)
    mean = statistics.fmean(sample)
    if n == 1:
        return Interval(mean, math.nan, math.nan, 1)
    sd = statistics.stdev(sample)
    half = t_critical(n - 1) * sd / math.sqrt(n)
    return Interval(mean, mean - half, mean + half, n, sd)


def paired_differences(a: Mapping[K, float], b: Mapping[K, float]) -> list[float]:
    """a − b for every seed both arms measured (NaN on either side drops the pair)."""
    return [a[s] - b[s] for s in a if s in b and not (math.isnan(a[s]) or math.isnan(b[s]))]


@dataclass(frozen=True)
class Difference:
    """Arm `a` minus arm `b`, paired by seed, and what it lets one say."""

    a: str
    b: str
    diff: Interval
    relative: float  # mean difference / |mean of b|; NaN when b's mean is 0 or unknown
    cohen_dz: float  # mean difference / sd of the differences

    def decision(self, better: Better) -> str:
        """The arm that is better with 95% confidence, or why none is named."""
        n = self.diff.n
        if not better:
            return "-"
        if n < 2:
            return f"not judged ({n} paired run{'s' if n != 1 else ''}; needs 2)"
        if not self.diff.excludes_zero():
            return f"no significant difference ({n} runs)"
        a_higher = self.diff.low > 0
        return self.a if a_higher == (better == "higher") else self.b


def compare_paired(a_name: str, a: Mapping[K, float], b_name: str, b: Mapping[K, float]) -> Difference:
    """The paired difference a − b over the seeds both arms share."""
    diffs = paired_differences(a, b)
    interval = mean_ci(diffs)
    base = statistics.fmean(clean([b[s] for s in b])) if clean(list(b.values())) else math.nan
    relative = interval.mean / abs(base) if base and not math.isnan(base) else math.nan
    dz = interval.mean / interval.sd if interval.sd and not math.isnan(interval.sd) else math.nan
    return Difference(a_name, b_name, interval, relative, dz)


def verdict(difference: Difference, direction: Literal["higher", "lower"]) -> str:
    """A hypothesis "a's metric is {direction} than b's" at 95%: supported when the interval of
    a − b lies wholly on that side of zero, refuted when wholly on the other, else inconclusive."""
    d = difference.diff
    if not d.excludes_zero():
        return INCONCLUSIVE
    a_higher = d.low > 0
    return SUPPORTED if a_higher == (direction == "higher") else REFUTED
