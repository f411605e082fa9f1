"""A study's plots (PNG, matplotlib's Agg canvas, never pyplot: see cli/report/plots.py).

- metric_<key>.png   per metric, one bar per arm (grouped by point) at its mean, with the
                     95% t-interval as an error bar and the number of runs behind each bar;
- sweep_<key>.png    with a sweep axis, the metric against it, one line per arm and value of
                     the other axes, error bars, and each curve's saturation point marked
                     (goodput: the offered load where mean goodput peaks).
"""

from __future__ import annotations

import math
from pathlib import Path

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from cli.study.aggregate import Aggregate
from cli.study.ledger import point_label
from cli.study.metrics import info


def write_plots(agg: Aggregate) -> list[Path]:
    paths = [_metric_plot(agg, m) for m in agg.metrics]
    if agg.study.sweep:
        paths += [_sweep_plot(agg, m) for m in agg.metrics]
    return [p for p in paths if p is not None]


def _metric_plot(agg: Aggregate, metric: str) -> Path | None:
    shown = info(metric)
    arms = [a.name for a in agg.study.arms]
    labels = [point_label(p) for p in agg.points]
    if all(agg.cell(p, a, metric).n == 0 for p in range(len(labels)) for a in arms):
        return None  # not measured by any run: the report says so
    fig = Figure(figsize=(max(6.0, 1.2 * len(labels) * len(arms)), 4.2))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    width = 0.8 / len(arms)
    for k, arm in enumerate(arms):
        xs, means, errs, ns = [], [], [], []
        for p in range(len(labels)):
            c = agg.cell(p, arm, metric)
            xs.append(p + (k - (len(arms) - 1) / 2) * width)
            means.append(c.mean * shown.scale)
            errs.append(0.0 if math.isnan(c.half_width) else c.half_width * shown.scale)
            ns.append(c.n)
        ax.bar(xs, means, width, yerr=errs, capsize=4, label=arm)
        for x, y, n in zip(xs, means, ns, strict=True):
            if not math.isnan(y):  # at the bar's foot, clear of the error bar
                ax.annotate(f"N={n}", (x, 0), textcoords="offset points", xytext=(0, 4), ha="center", fontsize=8)
    ticks = labels if agg.study.vary else ["all runs"]
    ax.set_xticks(range(len(labels)), ticks, rotation=20 if len(labels) > 3 else 0, fontsize=8)
    ax.set_xlabel("parameter point" if agg.study.vary else "")
    ax.set_ylabel(shown.label)
    ax.set_title(f"{agg.study.name}: {shown.label}\nmean and 95% CI (Student t) over repeats; N = runs per bar",
                 fontsize=10)
    ax.legend(title="arm")
    fig.tight_layout()
    path = agg.study_dir / f"metric_{metric}.png"
    fig.savefig(path, dpi=100)
    return path


def _sweep_plot(agg: Aggregate, metric: str) -> Path | None:
    sweep, shown = agg.study.sweep, info(metric)
    curves: dict[tuple[str, str], list[tuple[float, float, float, int]]] = {}
    for index, point in enumerate(agg.points):
        settings = dict(point)
        others = point_label({k: v for k, v in settings.items() if k != sweep})
        for a in agg.study.arms:
            c = agg.cell(index, a.name, metric)
            if c.n:
                err = 0.0 if math.isnan(c.half_width) else c.half_width * shown.scale
                curves.setdefault((a.name, others), []).append((float(settings[sweep]), c.mean * shown.scale,
                                                                 err, c.n))
    if not curves:
        return None
    fig = Figure(figsize=(7.5, 4.5))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    saturation = {(s.arm, s.others): s.x for s in agg.saturation}
    for (arm, others), points in sorted(curves.items()):
        points.sort()
        xs, ys, errs, ns = zip(*points, strict=True)
        line = ax.errorbar(xs, ys, yerr=errs, marker="o", capsize=4,
                           label=f"{arm} {others} (N={min(ns)}-{max(ns)} runs/pt)" if min(ns) != max(ns)
                           else f"{arm} {others} (N={ns[0]} runs/pt)")
        x_sat = saturation.get((arm, others))
        if x_sat is not None:
            y_sat = ys[xs.index(x_sat)]
            ax.plot([x_sat], [y_sat], marker="*", markersize=16, color=line.lines[0].get_color(),
                    markeredgecolor="black", linestyle="none")
    unit = "(req/s)" if sweep == "rps" else ""
    ax.set_xlabel(f"{'offered load' if sweep == 'rps' else sweep} {unit}".strip())
    ax.set_ylabel(shown.label)
    ax.set_title(f"{agg.study.name}: {shown.label} vs {sweep}\nmean and 95% CI; ★ = saturation (peak goodput)",
                 fontsize=10)
    ax.legend(fontsize=7)
    fig.tight_layout()
    path = agg.study_dir / f"sweep_{metric}.png"
    fig.savefig(path, dpi=100)
    return path
