"""A study's plots (PNG), drawn by the rules of cli/report/style.py with its helpers.

- metric_<key>.png   per metric, one bar per arm (grouped by point) at its mean, with the
                     95% t-interval as an error bar and the number of runs behind each bar;
- sweep_<key>.png    with a sweep axis, the metric against it, one line per arm and value of
                     the other axes, error bars, N runs per point in the legend, and each
                     curve's saturation point marked (cli/study/aggregate.py `knee`).
"""

from __future__ import annotations

import math
from pathlib import Path

from cli.report import style
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
    fig, (ax,) = style.figure(1, f"{agg.study.name}: {shown.label}\nmean and 95% CI (Student t) over repeats; "
                                 "N = runs per bar", height=4.2)
    width = 0.8 / len(arms)
    for k, arm in enumerate(arms):
        xs, means, errs, ns = [], [], [], []
        for p in range(len(labels)):
            c = agg.cell(p, arm, metric)
            xs.append(p + (k - (len(arms) - 1) / 2) * width)
            means.append(c.mean * shown.scale)
            errs.append(0.0 if math.isnan(c.half_width) else c.half_width * shown.scale)
            ns.append(c.n)
        ax.bar(xs, means, width, yerr=errs, capsize=4, label=f"{arm} (N={min(ns)}-{max(ns)} runs)"
               if min(ns) != max(ns) else f"{arm} (N={ns[0]} runs)")
        for x, y, n in zip(xs, means, ns, strict=True):
            if not math.isnan(y):  # at the bar's foot, clear of the error bar
                ax.annotate(f"N={n}", (x, 0), textcoords="offset points", xytext=(0, 4), ha="center", fontsize=8)
    ticks = labels if agg.study.vary else ["all runs"]
    ax.set_xticks(range(len(labels)), ticks, rotation=20 if len(labels) > 3 else 0, fontsize=8)
    ax.set(xlabel=style.label("parameter point", "settings"), ylabel=shown.label)
    style.legend(ax)
    return style.save(fig, agg.study_dir / f"metric_{metric}.png")


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
    fig, (ax,) = style.figure(1, f"{agg.study.name}: {shown.label} vs {sweep}\nmean and 95% CI; "
                                 "★ = saturation point (< 90% of requests within SLO)", height=4.5)
    saturation = {(s.arm, s.others): s.x for s in agg.saturation}
    for (arm, others), points in sorted(curves.items()):
        points.sort()
        xs, ys, errs, ns = zip(*points, strict=True)
        runs = f"N={min(ns)}-{max(ns)} runs/pt" if min(ns) != max(ns) else f"N={ns[0]} runs/pt"
        line = ax.errorbar(xs, ys, yerr=errs, marker="o", capsize=4, label=f"{arm} {others} ({runs})")
        x_sat = saturation.get((arm, others))
        if x_sat is not None and x_sat in xs:
            ax.plot([x_sat], [ys[xs.index(x_sat)]], marker="*", markersize=16, color=line.lines[0].get_color(),
                    markeredgecolor="black", linestyle="none")
    xlabel = {"rps": style.label("offered load", "req/s"),
              "rps_per_node": style.label("offered load per node", "req/s")}
    ax.set(xlabel=xlabel.get(sweep, style.label(sweep, "setting")),
           ylabel=shown.label)
    style.legend(ax)
    return style.save(fig, agg.study_dir / f"sweep_{metric}.png")
