"""The winners table: one row per metric, one column per run, and which run did better.

Rows come from `METRICS`: each names a Summary field, its display unit and whether lower
or higher is better. The Winner column, decided on the values *as displayed* (e.g. 1
decimal of a percent, so no run wins by a difference the reader cannot see):
- the run's header when its value is strictly the best;
- "tie" when every run shows the best value; "tie: a, c" when only some do (the others
  are worse, and the reader should see which runs share first place);
- "n/a" when the metric is missing (NaN) in some run: that difference cannot be judged;
- "-" when the metric has no better direction (counts of one action, GPU compute
  utilisation) or fewer than two runs exist.

A lossy run cannot win on latency alone: TTFT, TPOT and latency are figures of the
successful requests only, and a run that fails its slow requests looks fast. When the
runs' success rates differ by more than LOSS_MARGIN (one percentage point), every
latency cell shows the success rate it was measured on ("812.00 (55.0% ok)"), and a
latency row won by a run other than the most successful one says so instead of naming
it: "n/a (gossip lost 45.0% of requests)". The most successful run keeps its latency wins.
No confidence intervals yet: one run each, a winner means "better in this run".

Column headers are the runs' scheduler types when they are all different (the usual
centralized vs gossip case), else the run directory names.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from cli.report.summary import Summary
from cli.report.text import render_markdown_table, render_text_table

COMPARISON_CSV = "comparison.csv"
COMPARISON_MD = "comparison.md"
TIE = "tie"
NOT_JUDGED = "n/a"
PROTOTYPE_COLUMNS = ("centralized", "gossip")
NONE = "-"

Better = Literal["lower", "higher", ""]


@dataclass(frozen=True)
class Metric:
    """One row of the table: a Summary field shown as `value * scale` with `decimals`."""

    key: str
    label: str
    better: Better
    scale: float = 1.0
    decimals: int = 2
    suffix: str = ""
    successes_only: bool = False  # a figure of the successful requests (latency): see the docstring
    cell: Callable[[Summary, str], str] | None = None  # rewrites the shown text ("-" for NaN)

    def raw(self, summary: Summary) -> float | None:
        value: float | None = getattr(summary, self.key)
        return value

    def value(self, summary: Summary | None) -> float:
        """The displayed number (NaN when missing), rounded as the table shows it."""
        raw = None if summary is None else self.raw(summary)
        if raw is None or math.isnan(raw):
            return math.nan
        return round(float(raw) * self.scale, self.decimals)

    def text(self, summary: Summary | None) -> str:
        value = self.value(summary)
        text = NONE if math.isnan(value) else f"{value:.{self.decimals}f}{self.suffix}"
        return self.cell(summary, text) if summary is not None and self.cell else text


NOT_RECOVERED = "not recovered"


def _recovery_cell(s: Summary, text: str) -> str:
    """"not recovered" in words, never "-" (which reads "nothing to report"), and how many
    faults the average covers when some did not recover."""
    if s.fault_count <= s.recovery_count:
        return text
    if not s.recovery_count:
        return NOT_RECOVERED
    return f"{text} ({s.recovery_count} of {s.fault_count} recovered)"


MS, PCT = 1000.0, 100.0
LOSS_MARGIN = 0.01  # success rates further apart than this (0..1) make latency rows conditional

# Higher memory utilisation wins, as in the prototype's report: the same workload served
# with more of the GPU memory in use means fewer idle, loaded-but-unused replicas. GPU
# compute utilisation has no winner: more busy time for the same work can mean smaller
# batches as well as more work done. Action counts have none either (they depend on how
# many requests were placed); the cache hit rate is the judged figure.
METRICS: tuple[Metric, ...] = (
    Metric("success_rate", "Success Rate (%)", "higher", PCT, 1, "%"),
    Metric("goodput", "Goodput (req/s)", "higher", decimals=3),
    Metric("request_throughput", "Throughput (req/s)", "higher", decimals=3),
    Metric("output_token_throughput", "Output Throughput (tok/s)", "higher", decimals=1),
    Metric("avg_ttft", "Avg TTFT (ms)", "lower", MS, successes_only=True),
    Metric("p50_ttft", "P50 TTFT (ms)", "lower", MS, successes_only=True),
    Metric("p95_ttft", "P95 TTFT (ms)", "lower", MS, successes_only=True),
    Metric("p99_ttft", "P99 TTFT (ms)", "lower", MS, successes_only=True),
    Metric("avg_tpot", "Avg TPOT (ms)", "lower", MS, successes_only=True),
    Metric("p50_tpot", "P50 TPOT (ms)", "lower", MS, successes_only=True),
    Metric("p99_tpot", "P99 TPOT (ms)", "lower", MS, successes_only=True),
    Metric("avg_latency", "Avg Latency (ms)", "lower", MS, successes_only=True),
    Metric("p50_latency", "P50 Latency (ms)", "lower", MS, successes_only=True),
    Metric("p95_latency", "P95 Latency (ms)", "lower", MS, successes_only=True),
    Metric("p99_latency", "P99 Latency (ms)", "lower", MS, successes_only=True),
    Metric("avg_memory_utilization", "Avg Memory Util", "higher", PCT, 1, "%"),
    Metric("p95_memory_utilization", "P95 Memory Util", "higher", PCT, 1, "%"),
    Metric("avg_gpu_utilization", "Avg GPU Compute Util", "", PCT, 1, "%"),
    Metric("p95_gpu_utilization", "P95 GPU Compute Util", "", PCT, 1, "%"),
    Metric("avg_queue_depth", "Avg Queue Depth", "lower"),
    Metric("p95_queue_depth", "P95 Queue Depth", "lower"),
    Metric("max_queue_depth", "Max Queue Depth", "lower"),
    Metric("avg_cluster_queue_depth", "Avg Cluster Queue", "lower"),
    Metric("max_cluster_queue_depth", "Max Cluster Queue", "lower"),
    Metric("avg_recovery_time", "Avg Recovery Time (s)", "lower", cell=_recovery_cell),
    Metric("timeout_count", "Timeouts", "lower", decimals=0),
    Metric("cache_hit_rate", "Cache Hit Rate (%)", "higher", PCT, 1, "%"),
    Metric("serve_count", "SERVE (warm)", "", decimals=0),
    Metric("serve_loading_count", "SERVE_LOADING", "", decimals=0),
    Metric("cold_start_count", "COLD_START", "", decimals=0),
    Metric("migrate_count", "MIGRATE", "", decimals=0),
    # Spread over the nodes, per second, time-averaged (dispersion.py): 1 = every node equally loaded.
    Metric("queue_jain", "Queue Depth Jain Index", "higher", decimals=3),
    Metric("mem_util_jain", "Memory Util Jain Index", "higher", decimals=3),
    Metric("compute_util_jain", "GPU Compute Jain Index", "higher", decimals=3),
    Metric("requests_affected", "Requests Affected by Faults", "lower", decimals=0),
    Metric("host_cpu_p50", "P50 Host CPU (%)", "", PCT, 0, "%"),
)


@dataclass(frozen=True)
class Row:
    metric: Metric
    values: tuple[float, ...]  # displayed numbers, NaN where missing
    texts: tuple[str, ...]
    winner: str  # a header, "tie", "tie: a, b", "n/a" or "-"


@dataclass(frozen=True)
class Comparison:
    headers: tuple[str, ...]  # one per run
    rows: tuple[Row, ...]

    @property
    def title(self) -> str:
        return "COMPARISON REPORT: " + " VS ".join(h.upper() for h in self.headers)

    def table_rows(self) -> list[list[str]]:
        return [[r.metric.label, *r.texts, r.winner] for r in self.rows]


def run_labels(summaries: Sequence[Summary]) -> tuple[str, ...]:
    """Scheduler types when they tell the runs apart, else the run directory names."""
    types = [s.scheduler_type for s in summaries]
    if len(set(types)) == len(types):
        return tuple(types)
    names = [Path(s.run_dir).name or s.experiment_name for s in summaries]
    # Two dirs with one name (results/a/x and results/b/x) still need distinct headers.
    return tuple(names) if len(set(names)) == len(names) else tuple(s.run_dir for s in summaries)


@dataclass(frozen=True)
class ClassMetric(Metric):
    """A row of one workload class's figures (summary.ClassFigures field `key`)."""

    klass: str = ""

    def raw(self, summary: Summary) -> float | None:
        figures = next((c for c in summary.classes if c.name == self.klass), None)
        return None if figures is None else float(getattr(figures, self.key))


# Rows per class (key in ClassFigures, label, better, scale, decimals, suffix).
CLASS_METRICS: tuple[tuple[str, str, Better, float, int, str], ...] = (
    ("ttft_p50", "P50 TTFT (ms)", "lower", MS, 2, ""),
    ("ttft_p99", "P99 TTFT (ms)", "lower", MS, 2, ""),
    ("latency_p99", "P99 Latency (ms)", "lower", MS, 2, ""),
    ("goodput", "Goodput (req/s)", "higher", 1.0, 3, ""),
    ("slo_attainment", "SLO Attainment (%)", "higher", PCT, 1, "%"),
    ("shed", "Shed", "lower", 1.0, 0, ""),
)


# Hybrid runs (daemons/policy/hybrid.py): which path placed the served requests.
HYBRID_METRICS = (
    Metric("decided_by_peer", "Decided by Peer", "", decimals=0),
    Metric("decided_by_coordinator", "Decided by Coordinator", "", decimals=0),
    Metric("decided_by_peer_degraded", "Decided by Peer (degraded)", "", decimals=0),
)


def hybrid_metrics(summaries: Sequence[Summary | None]) -> tuple[Metric, ...]:
    """The decided-by rows when a hybrid run is compared (none otherwise: all 0 elsewhere)."""
    return HYBRID_METRICS if any(s is not None and s.scheduler_type == "hybrid" for s in summaries) else ()


def class_metrics(summaries: Sequence[Summary | None]) -> tuple[Metric, ...]:
    """Rows per workload class when the runs have more than one class (none otherwise)."""
    names = list(dict.fromkeys(c.name for s in summaries if s is not None for c in s.classes))
    if len(names) < 2:
        return ()
    return tuple(ClassMetric(key, f"{name}: {label}", better, scale, decimals, suffix,
                             successes_only=key.startswith(("ttft", "latency")), klass=name)
                 for name in names for key, label, better, scale, decimals, suffix in CLASS_METRICS)


def compare(summaries: Sequence[Summary | None], labels: Sequence[str] | None = None,
            metrics: Sequence[Metric] | None = None) -> Comparison:
    """Build the table; `labels` (one per summary) default to `run_labels`.

    A None summary is a run that did not happen: its column shows "-", and a winner is
    decided among the others (none when fewer than two are left).
    """
    if labels is None:
        labels = run_labels([s for s in summaries if s is not None])
    headers = tuple(labels)
    if len(headers) != len(summaries):
        raise ValueError("one label per summary")
    if metrics is None:
        metrics = (*METRICS, *hybrid_metrics(summaries), *class_metrics(summaries))
    rows = tuple(_row(m, summaries, headers) for m in metrics)
    return Comparison(headers, rows)


def _row(metric: Metric, summaries: Sequence[Summary | None], headers: Sequence[str]) -> Row:
    values = tuple(metric.value(s) for s in summaries)
    texts = tuple(metric.text(s) for s in summaries)
    present = [(h, v) for h, v, s in zip(headers, values, summaries, strict=True) if s is not None]
    decided = winner([v for _, v in present], metric.better, [h for h, _ in present])
    success = {h: s.success_rate for h, s in zip(headers, summaries, strict=True) if s is not None}
    if metric.successes_only and lossy(success):
        texts = tuple(t if s is None or t == NONE or math.isnan(s.success_rate) else
                      f"{t} ({100 * s.success_rate:.1f}% ok)"
                      for t, s in zip(texts, summaries, strict=True))
        decided = lossy_winner(decided, success)
    return Row(metric, values, texts, decided)


def lossy(success: dict[str, float]) -> bool:
    """Whether the runs' success rates (0..1) differ by more than LOSS_MARGIN (NaN: no)."""
    rates = [r for r in success.values() if not math.isnan(r)]
    return len(rates) >= 2 and max(rates) - min(rates) > LOSS_MARGIN


def lossy_winner(decided: str, success: dict[str, float]) -> str:
    """A latency winner stands only if no run served clearly more of its requests."""
    best = max(r for r in success.values() if not math.isnan(r))
    if decided not in success or success[decided] >= best - LOSS_MARGIN:
        return decided
    return f"{NOT_JUDGED} ({decided} lost {100 * (1 - success[decided]):.1f}% of requests)"


def winner(values: Sequence[float], better: Better, headers: Sequence[str]) -> str:
    """The header of the strictly best value; "tie" when every value is the best, "tie: a, c"
    when some share it; "n/a" when a value is missing; "-" with no direction or one run."""
    if not better or len(values) < 2:
        return NONE
    if any(math.isnan(v) for v in values):
        return NOT_JUDGED
    best = min(values) if better == "lower" else max(values)
    leaders = [h for h, v in zip(headers, values, strict=True) if v == best]
    if len(leaders) == 1:
        return leaders[0]
    return TIE if len(leaders) == len(values) else f"{TIE}: {', '.join(leaders)}"


def prototype_comparison(summaries: Sequence[Summary]) -> Comparison:
    """Columns Centralized | Gossip as in the prototype's report; a missing run shows "-".

    Runs of those two types are placed by type. Any other set of runs (a hybrid arm, two
    runs of one type, three or more runs) gets a column each, headed by its scheduler type
    when those differ, else by its run directory (`run_labels`): a hybrid run is never
    reported, or declared the winner, under "Gossip".
    """
    if not summaries:
        raise ValueError("the prototype report takes at least one summary")
    kinds = [s.scheduler_type.lower() for s in summaries]
    if len(summaries) > 2 or len(set(kinds)) != len(kinds) or not set(kinds) <= set(PROTOTYPE_COLUMNS):
        return compare(summaries)
    slots: list[Summary | None] = [None, None]
    for s, kind in zip(summaries, kinds, strict=True):
        slots[PROTOTYPE_COLUMNS.index(kind)] = s
    return compare(slots, [c.capitalize() for c in PROTOTYPE_COLUMNS])


def render_text(comparison: Comparison) -> str:
    """The aligned plain-text report in the prototype's layout."""
    headers = ["Metric", *comparison.headers, "Winner"]
    return render_text_table(comparison.title, headers, comparison.table_rows())


def render_markdown(comparison: Comparison) -> str:
    headers = ["Metric", *comparison.headers, "Winner"]
    return render_markdown_table(headers, comparison.table_rows())


def write_comparison(comparison: Comparison, out_dir: Path) -> tuple[Path, Path]:
    """Write comparison.csv (numbers in the label's unit) and comparison.md into `out_dir`."""
    out_dir.mkdir(parents=True, exist_ok=True)
    csv_path, md_path = out_dir / COMPARISON_CSV, out_dir / COMPARISON_MD
    with csv_path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["metric", "key", "better", *comparison.headers, "winner"])
        for r in comparison.rows:
            cells = ["" if math.isnan(v) else f"{v:.{r.metric.decimals}f}" for v in r.values]
            writer.writerow([r.metric.label, r.metric.key, r.metric.better or NONE, *cells, r.winner])
    title = "# Comparison: " + " vs ".join(comparison.headers)
    md_path.write_text(f"{title}\n\n{render_markdown(comparison)}", encoding="utf-8")
    return csv_path, md_path
