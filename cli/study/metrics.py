"""One run's figures as a study reads them, and how each is shown.

A run's figures are its summary.csv (cli/report/summary.py defines them) plus three read
from its recovery.csv (daemons/rundir/recovery.py; cli/report/recovery.py defines each
figure): avg_detection_time and avg_drain_time (seconds, mean over the run's faults that
have one) and recovered_fraction (faults recovered / faults); and slo_attainment, goodput
counted in requests (good_requests / total_requests; absent without an SLO). A column a run does not have
(an older run, or a measure not written yet) is simply absent: its metric is "n/a".
Labels come from the comparison table's rows (cli/report/compare.py METRICS) where it has
one; only the figures it does not show are labelled here.
"""

from __future__ import annotations

import csv
import math
import statistics
from dataclasses import dataclass
from pathlib import Path

from cli.report.compare import METRICS
from cli.report.summary import SUMMARY
from cli.study.stats import Better, Interval
from daemons.rundir import RECOVERY, REQUESTS, read_recoveries, read_requests


@dataclass(frozen=True)
class MetricInfo:
    key: str
    label: str  # with its unit, as axes and tables show it
    better: Better
    scale: float = 1.0  # shown value = stored value × scale


_MS, _PCT = 1000.0, 100.0
NAN = math.nan
GOOD_SHARE = "slo_attainment"  # requests meeting every SLO / requests recorded: what a run adds to summary.csv
_DISPERSION: tuple[tuple[str, str, Better], ...] = (
    ("cv", "CV", "lower"), ("jain", "Jain's index", "higher"), ("max_over_mean", "max/mean", "lower"))
_COMPARED = {m.key for m in METRICS}
_EXTRA = {key: m for key, m in {
    "avg_detection_time": MetricInfo("avg_detection_time", "Avg detection time (s)", "lower"),
    "avg_drain_time": MetricInfo("avg_drain_time", "Avg drain time (s)", "lower"),
    "recovered_fraction": MetricInfo("recovered_fraction", "Faults recovered (%)", "higher", _PCT),
    "recovery_time_censored": MetricInfo("recovery_time_censored",
                                         "Recovery time, unrecovered faults at their lower bound (s)", "lower"),
    "slo_attainment": MetricInfo("slo_attainment", "Requests meeting every SLO (%)", "higher", _PCT),
    "failed_requests": MetricInfo("failed_requests", "Failed requests (count)", "lower"),
    # Per-node dispersion and host columns of summary.csv (cli/report/dispersion.py, host.py), labelled
    # here too so that a study reads them whatever the comparison table shows.
    **{f"{prefix}_{k}": MetricInfo(f"{prefix}_{k}", f"{what} {label} across nodes, time avg (ratio)", better)
       for prefix, what in (("queue", "Queue depth"), ("mem_util", "GPU memory util"),
                            ("compute_util", "GPU compute util"))
       for k, label, better in _DISPERSION},
    "host_saturated": MetricInfo("host_saturated", "Host saturated (1 = yes)", ""),
}.items() if key not in _COMPARED}  # the comparison table's label wins: one label per figure


def info(key: str) -> MetricInfo:
    """How `key` is labelled and judged: the comparison table's row when it has one."""
    if key in _EXTRA:
        return _EXTRA[key]
    for m in METRICS:
        if m.key == key:
            return MetricInfo(key, _with_unit(m.label, m.suffix, m.decimals), m.better, m.scale)
    return MetricInfo(key, f"{key} (value)", "")


def _with_unit(label: str, suffix: str, decimals: int) -> str:
    """The table's label with a unit for an axis (the table shows the % in its cells instead)."""
    if label.endswith(")"):
        return label
    if suffix == "%":
        return f"{label} (%)"
    if decimals == 0:
        return f"{label} (count)"
    return f"{label} (requests)" if "Queue" in label and "Jain" not in label else f"{label} (ratio)"


def shown_value(value: float, scale: float = 1.0) -> str:
    """A figure in its shown unit, 3 significant digits (whole numbers from 100 up); NaN is n/a."""
    if math.isnan(value):
        return "n/a"
    v = value * scale
    return f"{v:.3g}" if abs(v) < 100 else f"{v:.0f}"


def shown_interval(i: Interval, scale: float) -> str:
    """`mean [low, high] (N=n)`; without an interval (one value) `mean (N=1, no CI)`; none: n/a."""
    if i.n == 0:
        return "n/a"
    if not i.defined:
        return f"{shown_value(i.mean, scale)} (N={i.n}, no CI)"
    return f"{shown_value(i.mean, scale)} [{shown_value(i.low, scale)}, {shown_value(i.high, scale)}] (N={i.n})"


def read_run_metrics(run_dir: Path) -> dict[str, float]:
    """Every numeric cell of the run's summary.csv (empty = NaN) and the recovery figures."""
    values: dict[str, float] = {}
    with (run_dir / SUMMARY).open(newline="", encoding="utf-8") as fh:
        for row in csv.DictReader(fh):
            for key, cell in row.items():
                number = _number(cell)
                if number is not None:
                    values[key] = number
    values.update(_recovery_figures(run_dir / RECOVERY))
    if values.get("total_requests") and "good_requests" in values and not math.isnan(values.get("goodput", NAN)):
        values[GOOD_SHARE] = values["good_requests"] / values["total_requests"]  # goodput in requests, not per s
    return values


def _number(cell: str | None) -> float | None:
    if cell is None:
        return None
    if cell == "":
        return math.nan
    if cell in ("True", "False"):
        return float(cell == "True")
    try:
        return float(cell)
    except ValueError:
        return None


def _recovery_figures(path: Path) -> dict[str, float]:
    """Mean detection and drain over the faults that have one, the share recovered, and the
    censored recovery time; {} without faults (or without recovery.csv: a run the report has
    not finished).

    `recovery_time_censored` counts every fault: a recovered one at its recovery time, one
    that never recovered at the time from the fault to the last arrival (it had not
    recovered by then: a lower bound, as in survival analysis). Averaging the recovered
    faults alone (`avg_recovery_time`) would drop exactly the runs that did worst, and a
    paired comparison would lose their seeds."""
    if not path.is_file():
        return {}
    faults = read_recoveries(path)
    if not faults:
        return {}
    detection = [f.detection_s for f in faults if not math.isnan(f.detection_s)]
    drain = [f.drain_s for f in faults if not math.isnan(f.drain_s)]
    last = _last_arrival(path.parent / REQUESTS)
    censored = [f.recovery_s if f.recovered else max(0.0, last - f.t_s) for f in faults]
    return {"avg_detection_time": statistics.fmean(detection) if detection else math.nan,
            "avg_drain_time": statistics.fmean(drain) if drain else math.nan,
            "recovered_fraction": sum(f.recovered for f in faults) / len(faults),
            "recovery_time_censored": statistics.fmean(censored) if not math.isnan(last) else math.nan}


def _last_arrival(path: Path) -> float:
    """The last scheduled arrival of the run (NaN without requests.csv)."""
    if not path.is_file():
        return math.nan
    return max((r.scheduled_s for r in read_requests(path)), default=math.nan)
