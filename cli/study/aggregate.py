"""A study's figures from its runs' own files: per point, arm and metric a mean with its 95%
interval; per point, metric and pair of arms the paired difference and its decision; per
hypothesis and point a verdict; for a sweep, each curve's saturation point.

Written as CSV into the study directory (values in the metric's stored unit, as
summary.csv has them: seconds, fractions 0..1):
- aggregates.csv   point, point_label, arm, metric, n, mean, ci_low, ci_high
- differences.csv  point, point_label, metric, arm_a, arm_b, n, mean_diff, ci_low, ci_high, decision
- hypotheses.csv   hypothesis, metric, arm, other, direction, point, point_label, n, mean_diff,
                   ci_low, ci_high, relative, cohen_dz, verdict
A run that is not done (failed, interrupted, or its directory deleted) adds nothing; the
report lists it with its status.
"""

from __future__ import annotations

import csv
import dataclasses
import itertools
import math
from dataclasses import dataclass
from pathlib import Path

from cli.study.ledger import DONE, MISSING, Ledger, RunEntry, point_label
from cli.study.metrics import GOOD_SHARE, info, read_run_metrics
from cli.study.spec import Hypothesis, Settings, Study
from cli.study.stats import INCONCLUSIVE, Difference, Interval, compare_paired, mean_ci, verdict

AGGREGATES, DIFFERENCES, HYPOTHESES = "aggregates.csv", "differences.csv", "hypotheses.csv"
NOT_MEASURED = "not measured"


@dataclass(frozen=True)
class RunResult:
    entry: RunEntry
    status: str  # the ledger's, or MISSING when a done run's directory or summary.csv is gone
    values: dict[str, float]


@dataclass(frozen=True)
class Cell:
    point: int
    arm: str
    metric: str
    interval: Interval


@dataclass(frozen=True)
class Pair:
    point: int
    metric: str
    difference: Difference
    decision: str


@dataclass(frozen=True)
class Verdict:
    hypothesis: Hypothesis
    point: int
    difference: Difference
    verdict: str  # supported | refuted | inconclusive
    note: str = ""  # why it is inconclusive when no interval could be formed


GOODPUT_SHARE = 0.9  # saturated once fewer than this share of the sent requests meet every SLO
_EPS = 1e-9  # a mean of 0.95 and 0.85 is 0.8999999999999999 in floating point: still 90%


@dataclass(frozen=True)
class Saturation:
    arm: str
    others: str  # the point's other axes, e.g. "nodes=4"
    x: float | None  # the knee (see `knee`); None when no measured point is past it
    why: str = ""  # which side of the rule the knee is on


@dataclass(frozen=True)
class LoadPoint:
    """One point of a sweep curve: mean figures over the repeats (NaN: not measured)."""

    x: float  # the sweep value
    good_share: float  # goodput in requests: requests meeting every SLO / requests sent


def knee(curve: list[LoadPoint]) -> tuple[float | None, str]:
    """The saturation point: the lowest sweep value at which goodput falls below GOODPUT_SHARE
    of the offered load; (None, "") when no measured point does. A peak of goodput is not the
    rule: past its capacity an open-loop cluster keeps completing about as much per second while
    queues and TTFT grow, so goodput flattens rather than falls, and a peak may never show within
    the swept range. Goodput is compared with the offered load in requests (good / sent), not per
    second of the measured window, which also counts the drain after the last arrival and would
    put a short run below any share. Tail TTFT is not a rule of its own: a short run's p99 is its
    cold starts (a model load takes seconds), above a seconds-scale SLO at any load, so it marked
    every curve saturated at its lightest point; the requests it delays already count against
    the share through the TTFT SLO."""
    for p in sorted(curve, key=lambda q: q.x):
        if not math.isnan(p.good_share) and p.good_share < GOODPUT_SHARE - _EPS:
            return p.x, f"{p.good_share:.1%} of requests met the SLOs, < {GOODPUT_SHARE:.0%}"
    return None, ""


@dataclass(frozen=True)
class Aggregate:
    study: Study
    study_dir: Path
    results: tuple[RunResult, ...]
    metrics: tuple[str, ...]
    cells: tuple[Cell, ...]
    pairs: tuple[Pair, ...]
    verdicts: tuple[Verdict, ...]
    saturation: tuple[Saturation, ...]

    @property
    def points(self) -> list[Settings]:
        return self.study.points()

    def cell(self, point: int, arm: str, metric: str) -> Interval:
        for c in self.cells:
            if (c.point, c.arm, c.metric) == (point, arm, metric):
                return c.interval
        return Interval(math.nan, math.nan, math.nan, 0)


def collect(ledger: Ledger) -> tuple[RunResult, ...]:
    out = []
    for entry in ledger.runs:
        if entry.status != DONE:
            out.append(RunResult(entry, entry.status, {}))
            continue
        run_dir = ledger.study_dir / entry.run_dir
        try:
            out.append(RunResult(entry, DONE, read_run_metrics(run_dir)))
        except OSError:  # deleted, or its summary.csv is: the report marks it missing
            out.append(RunResult(entry, MISSING, {}))
    return tuple(out)


def aggregate(ledger: Ledger) -> Aggregate:
    study = ledger.study
    results = collect(ledger)
    metrics = tuple(dict.fromkeys([*study.metrics, *(h.metric for h in study.hypotheses)]))
    series = _series(results)
    points = range(len(study.points()))
    arms = [a.name for a in study.arms]
    cells = tuple(Cell(p, arm, m, mean_ci(list(series.get((p, arm, m), {}).values())))
                  for p in points for arm in arms for m in metrics)
    pairs = []
    for p, m, (a, b) in itertools.product(points, metrics, itertools.combinations(arms, 2)):
        diff = compare_paired(a, series.get((p, a, m), {}), b, series.get((p, b, m), {}))
        pairs.append(Pair(p, m, diff, diff.decision(info(m).better)))
    verdicts = tuple(_verdict(h, p, series) for h in study.hypotheses for p in points)
    agg = Aggregate(study, ledger.study_dir, results, metrics, cells, tuple(pairs), verdicts, ())
    return dataclasses.replace(agg, saturation=_saturation(agg, series))


def _series(results: tuple[RunResult, ...]) -> dict[tuple[int, str, str], dict[int, float]]:
    """(point, arm, metric) -> {seed: value} over the done runs."""
    out: dict[tuple[int, str, str], dict[int, float]] = {}
    for r in results:
        if r.status != DONE:
            continue
        for metric, value in r.values.items():
            out.setdefault((r.entry.point_index, r.entry.arm, metric), {})[r.entry.seed] = value
    return out


def _verdict(h: Hypothesis, point: int, series: dict[tuple[int, str, str], dict[int, float]]) -> Verdict:
    a, b = series.get((point, h.arm, h.metric), {}), series.get((point, h.other, h.metric), {})
    diff = compare_paired(h.arm, a, h.other, b)
    if not a and not b:
        return Verdict(h, point, diff, INCONCLUSIVE, f"{h.metric} {NOT_MEASURED} (no run's summary.csv has it)")
    if not diff.diff.defined:
        return Verdict(h, point, diff, INCONCLUSIVE, f"{diff.diff.n} paired run(s) with a value: no interval")
    return Verdict(h, point, diff, verdict(diff, h.direction))


def _saturation(agg: Aggregate, series: dict[tuple[int, str, str], dict[int, float]]) -> tuple[Saturation, ...]:
    """Per arm and value of the other axes, the sweep's knee (`knee`), whether or not the
    study shows goodput."""
    sweep = agg.study.sweep
    if not sweep:
        return ()
    curves: dict[tuple[str, str], list[LoadPoint]] = {}
    for index, point in enumerate(agg.points):
        settings = dict(point)
        others = point_label({k: v for k, v in settings.items() if k != sweep})
        for a in agg.study.arms:
            curves.setdefault((a.name, others), []).append(
                LoadPoint(float(settings[sweep]), _mean(series, index, a.name, GOOD_SHARE)))
    out = []
    for (arm, others), curve in curves.items():
        if all(math.isnan(p.good_share) for p in curve):
            continue
        x, why = knee(curve)
        out.append(Saturation(arm, others, x, why))
    return tuple(out)


def _mean(series: dict[tuple[int, str, str], dict[int, float]], point: int, arm: str, metric: str) -> float:
    return mean_ci(list(series.get((point, arm, metric), {}).values())).mean


def _num(value: float) -> str:
    return "" if math.isnan(value) else f"{value:.9g}"


def write_csvs(agg: Aggregate) -> list[Path]:
    labels = [point_label(p) for p in agg.points]
    paths = [agg.study_dir / name for name in (AGGREGATES, DIFFERENCES, HYPOTHESES)]
    with paths[0].open("w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["point", "point_label", "arm", "metric", "n", "mean", "ci_low", "ci_high"])
        for c in agg.cells:
            i = c.interval
            w.writerow([c.point, labels[c.point], c.arm, c.metric, i.n, _num(i.mean), _num(i.low), _num(i.high)])
    with paths[1].open("w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["point", "point_label", "metric", "arm_a", "arm_b", "n", "mean_diff", "ci_low", "ci_high",
                    "decision"])
        for q in agg.pairs:
            d = q.difference.diff
            w.writerow([q.point, labels[q.point], q.metric, q.difference.a, q.difference.b, d.n, _num(d.mean),
                        _num(d.low), _num(d.high), q.decision])
    with paths[2].open("w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["hypothesis", "metric", "arm", "other", "direction", "point", "point_label", "n", "mean_diff",
                    "ci_low", "ci_high", "relative", "cohen_dz", "verdict", "note"])
        for v in agg.verdicts:
            diff, h = v.difference, v.hypothesis
            w.writerow([h.text, h.metric, h.arm, h.other, h.direction, v.point, labels[v.point], diff.diff.n,
                        _num(diff.diff.mean), _num(diff.diff.low), _num(diff.diff.high), _num(diff.relative),
                        _num(diff.cohen_dz),
                        v.verdict, v.note])
    return paths
