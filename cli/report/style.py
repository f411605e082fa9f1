"""The rules every schedctl plot follows, and the helpers that apply them.

A plot must not be able to mislead a reader who looks only at the picture:

1. Title: every figure says what it shows and of which run(s) (`figure(..., title=)`).
2. Units: every axis label names its unit, "TTFT (ms)", "time from t0 (s)" (`label`);
   `save` refuses a figure whose x axis or a y axis has no "(unit)" (categorical axes
   are marked with `categorical`).
3. Legends: every line, bar or marker that needs a name has one, in a legend (`legend`).
4. Failures shown: a latency view counts every request that was sent. A failed request
   has an infinite latency, so a CDF ends at 1 − failed share, and the gap is annotated
   (`draw_cdf`); a windowed success view never hides a failure behind a flat 100 % line
   (plots.py draws the failure rate on a symlog axis).
5. N behind each point: a curve's legend label gives the requests behind it
   (`with_n`: "gossip (n=120, 9 failed)"); windowed panels draw the requests per window.
6. Comparisons overlay: two arms compared are drawn on one axes with one scale, never as
   two files or side-by-side panels with their own scales.
7. Time windows trail: a value plotted (or judged) at t uses only what happened in
   (t − w, t] (`trailing`), so nothing appears before its cause.
8. Wide ranges: latency axes turn logarithmic when values span more than 20x (`log_if_wide`),
   so warm millisecond requests are not flattened to zero by second-long cold starts.
9. Colours mean one thing: red is a fault or a failure, green a recovery or a success;
   other series (nodes, runs) cycle through SERIES_COLORS, which hold neither.

Figures are built on `matplotlib.figure.Figure` directly, never through pyplot: no global
figure registry to leak, no GUI backend to pick up, safe in a long-running process.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from matplotlib.artist import Artist
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

DPI = 110
SERIES_COLORS = ("tab:blue", "tab:orange", "tab:purple", "tab:brown", "tab:pink", "tab:cyan", "tab:olive",
                 "tab:gray", "navy", "gold")  # rule 9: no red, no green
LOG_SPAN = 20.0  # rule 8: log scale beyond this max/min ratio
_CATEGORICAL = "categorical"


def label(name: str, unit: str) -> str:
    """An axis label with its unit (rule 2): label("TTFT", "ms") -> "TTFT (ms)"."""
    return f"{name} ({unit})"


def with_n(name: str, n: int, failed: int = 0) -> str:
    """A legend label with the requests behind the curve (rule 5)."""
    return f"{name} (n={n}, {failed} failed)" if failed else f"{name} (n={n})"


def figure(rows: int, title: str, sharex: bool = False, height: float | None = None,
           ratios: Sequence[float] | None = None) -> tuple[Figure, list[Axes]]:
    """A figure of `rows` stacked axes with a grid, titled on the first (rule 1)."""
    fig = Figure(figsize=(9, height or 3.4 * rows), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    axes = list(fig.subplots(rows, 1, sharex=sharex, squeeze=False, height_ratios=ratios)[:, 0])
    for ax in axes:
        ax.grid(True, alpha=0.3)
        ax.set_prop_cycle(color=SERIES_COLORS)
    axes[0].set_title(title)
    return fig, axes


def categorical(ax: Axes) -> None:
    """Mark an axes whose y ticks are names (observers, actions): no unit is due (rule 2)."""
    ax.set_gid(_CATEGORICAL)


def legend(ax: Axes, beside: bool = False, also: Sequence[Axes] = ()) -> None:
    """One legend entry per label (rule 3), with those of the twin axes `also`; right of
    the axes when `beside` (clear of a twin's right-hand axis)."""
    unique: dict[str, Artist] = {}
    for source in (ax, *also):
        handles, labels = source.get_legend_handles_labels()
        unique.update((text, h) for h, text in zip(handles, labels, strict=True) if text not in unique)
    if not unique:
        return
    if beside:
        ax.legend(list(unique.values()), list(unique), loc="upper left", fontsize=7,
                  bbox_to_anchor=(1.1 if also else 1.0, 1.0))
    else:
        ax.legend(list(unique.values()), list(unique), loc="best", fontsize=8)


def draw_n(ax: Axes, t: np.ndarray, n: np.ndarray) -> Axes:
    """The requests behind each windowed point (rule 5): a grey step on a right-hand axis."""
    twin = ax.twinx()
    twin.step(t, n, where="post", color="grey", lw=0.7, alpha=0.6, label="requests per window")
    twin.set(ylabel=label("requests", "per window"))
    twin.set_ylim(bottom=0)
    return twin


def trailing(times: np.ndarray, grid: np.ndarray, window_s: float) -> tuple[np.ndarray, np.ndarray]:
    """Index ranges [lo, hi) of the sorted `times` inside (t − window_s, t] per t of `grid` (rule 7)."""
    return np.searchsorted(times, grid - window_s, side="right"), np.searchsorted(times, grid, side="right")


def cdf_of_sent(values: np.ndarray, failed: int) -> tuple[np.ndarray, np.ndarray]:
    """(sorted values, fraction of *every sent request* at or below each) (rule 4).

    A failed request counts as an infinite value: the fractions stop at 1 − failed share."""
    finite = np.sort(values[np.isfinite(values)])
    sent = finite.size + failed
    return finite, np.arange(1, finite.size + 1) / max(sent, 1)


def draw_cdf(ax: Axes, name: str, values: np.ndarray, failed: int, color: str | None = None) -> None:
    """One CDF step line over every sent request, its end annotated with the failed share."""
    x, y = cdf_of_sent(values, failed)
    sent = x.size + failed
    if not sent:
        return
    lines = ax.step(x, y, where="post", color=color, label=with_n(name, sent, failed)) if x.size else \
        ax.plot([], [], color=color, label=with_n(name, sent, failed))
    if failed and x.size:
        share = failed / sent
        ax.annotate(f"{100 * share:.1f}% failed", (float(x[-1]), float(y[-1])), xytext=(4, -12),
                    textcoords="offset points", fontsize=8, color=lines[0].get_color())


def log_if_wide(ax: Axes, values: np.ndarray, axis: str = "y") -> None:
    """Log scale when the positive values span over LOG_SPAN (rule 8), else from zero."""
    finite = values[np.isfinite(values) & (values > 0)]
    if finite.size and finite.max() / finite.min() > LOG_SPAN:
        (ax.set_xscale if axis == "x" else ax.set_yscale)("log")
    elif axis == "y":
        ax.set_ylim(bottom=0)


def check(fig: Figure) -> None:
    """Raise ValueError when the figure breaks rule 1 or 2 (a bug in the plot, not the data)."""
    axes = [ax for ax in fig.get_axes() if ax.get_visible() and ax.axison]
    if not any(ax.get_title() for ax in axes) and not fig.get_suptitle():
        raise ValueError("a figure without a title")
    if not any(_has_unit(ax.get_xlabel()) for ax in axes):
        raise ValueError("a figure without an x label with its unit")
    for ax in axes:
        if ax.get_gid() != _CATEGORICAL and ax.get_yaxis().get_visible() and not _has_unit(ax.get_ylabel()):
            raise ValueError(f"a y axis without its unit: {ax.get_ylabel()!r}")


def save(fig: Figure, path: Path) -> Path:
    """Check the rules, then write the PNG."""
    check(fig)
    fig.savefig(path, format="png")
    return path


def _has_unit(text: str) -> bool:
    return text.endswith(")") and "(" in text


def finite_max(values: np.ndarray, default: float = math.nan) -> float:
    finite = values[np.isfinite(values)]
    return float(finite.max()) if finite.size else default
