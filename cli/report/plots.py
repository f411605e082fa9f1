"""PNG plots of one run, and the TTFT CDF of several runs side by side.

Figures are built on `matplotlib.figure.Figure` directly, never through pyplot: no global
figure registry to leak, no GUI backend to pick up on a desktop, safe to call from a
long-running process. PNGs are written by the Agg canvas.

Files (in the run directory unless stated otherwise):
- ttft_cdf.png          TTFT CDF of the successful requests;
- nodes.png             per-node memory utilisation and queue depth over time (gaps = dead);
- actions.png           SERVE / COLD_START / MIGRATE / unplaced counts, split ok vs failed;
- timeline.png          rolling-window p50/p99 TTFT and success rate over scheduled time,
                        with faults (red), recoveries (green) and other events (grey) marked;
- ttft_cdf_compare.png  (comparison output dir) one CDF line per run.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from cli.report.results import ACTIONS, Event, RequestRecord, RunData
from cli.report.summary import is_fault, is_recovery

TTFT_CDF = "ttft_cdf.png"
NODES = "nodes.png"
ACTIONS_PNG = "actions.png"
TIMELINE = "timeline.png"
TTFT_CDF_COMPARE = "ttft_cdf_compare.png"

# REFERENCE §5.7 judges service recovery on a rolling 10 s window; plot the same window.
WINDOW_S = 10.0
_DPI = 110
_OTHER_EVENT_COLORS = ("tab:orange", "tab:purple", "tab:brown", "tab:gray", "tab:olive")


def write_run_plots(run: RunData) -> list[Path]:
    """All four single-run plots into the run directory."""
    d = run.run_dir
    label = run.manifest.scheduler
    return [
        plot_ttft_cdf([(label, run)], d / TTFT_CDF),
        plot_nodes(run, d / NODES),
        plot_actions(run, d / ACTIONS_PNG),
        plot_timeline(run, d / TIMELINE),
    ]


def write_compare_plot(runs: Sequence[tuple[str, RunData]], out_dir: Path) -> Path:
    out_dir.mkdir(parents=True, exist_ok=True)
    return plot_ttft_cdf(runs, out_dir / TTFT_CDF_COMPARE)


def ttft_ms(requests: Sequence[RequestRecord]) -> np.ndarray:
    """TTFTs of the successful requests in ms, sorted; requests without a first token dropped."""
    values = np.asarray([1000 * r.ttft_s for r in requests if r.ok], dtype=float)
    return np.sort(values[~np.isnan(values)])


def plot_ttft_cdf(runs: Sequence[tuple[str, RunData]], path: Path) -> Path:
    fig, ax = _figure(1)
    spans: list[tuple[float, float]] = []
    for label, run in runs:
        ttft = ttft_ms(run.requests)
        if ttft.size:
            frac = np.arange(1, ttft.size + 1) / ttft.size
            ax[0].step(ttft, frac, where="post", label=f"{label} (n={ttft.size})")
            spans.append((float(ttft[0]), float(ttft[-1])))
    _log_if_wide(ax[0], np.asarray([x for span in spans for x in span]), axis="x")
    for q in (0.5, 0.99):
        ax[0].axhline(q, color="grey", lw=0.6, ls=":")
    ax[0].set(xlabel="TTFT from scheduled time (ms)", ylabel="fraction of successful requests",
              title="TTFT CDF", ylim=(0, 1.02))
    _legend(ax[0])
    return _save(fig, path)


def plot_nodes(run: RunData, path: Path) -> Path:
    fig, (mem, queue) = _figure(2, sharex=True)
    for node in sorted({s.node for s in run.nodes}):
        samples = sorted((s for s in run.nodes if s.node == node), key=lambda s: s.t_s)
        t = np.asarray([s.t_s for s in samples])
        # NaN while dead: matplotlib leaves a gap instead of drawing a misleading zero.
        util = np.asarray([100 * s.memory_utilization if s.alive else np.nan for s in samples])
        depth = np.asarray([s.queue_depth if s.alive else np.nan for s in samples])
        mem.plot(t, util, label=node, lw=1.2)
        queue.plot(t, depth, label=node, lw=1.2)
    mem.set(ylabel="memory utilisation (%)", ylim=(0, 105), title=f"Nodes: {_run_title(run)}")
    queue.set(ylabel="queue depth", xlabel="time (s)")
    queue.set_ylim(bottom=0)
    for ax in (mem, queue):
        _mark_events(ax, run.events, labels=ax is mem)
    _legend(mem)
    return _save(fig, path)


def action_counts(requests: Sequence[RequestRecord]) -> dict[str, tuple[int, int]]:
    """(ok, failed) per action: the known three always, then others and "unplaced" if any."""
    counts = {a: (0, 0) for a in ACTIONS}
    for r in requests:
        ok, failed = counts.get(r.action or "unplaced", (0, 0))
        counts[r.action or "unplaced"] = (ok + 1, failed) if r.ok else (ok, failed + 1)
    return counts


def plot_actions(run: RunData, path: Path) -> Path:
    fig, (ax,) = _figure(1, height=3.6)
    counts = action_counts(run.requests)
    names = list(counts)
    ok = np.asarray([counts[n][0] for n in names])
    failed = np.asarray([counts[n][1] for n in names])
    ax.bar(names, ok, color="tab:green", label="ok")
    ax.bar(names, failed, bottom=ok, color="tab:red", label="failed")
    for i, total in enumerate(ok + failed):
        ax.annotate(str(total), (i, total), ha="center", va="bottom", fontsize=9)
    ax.set(ylabel="requests", title=f"Placement actions: {_run_title(run)}")
    ax.set_ylim(0, max(1, int((ok + failed).max(initial=0))) * 1.15)
    _legend(ax)
    return _save(fig, path)


def rolling(requests: Sequence[RequestRecord], window_s: float = WINDOW_S,
            step_s: float = 1.0) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(t, p50 TTFT ms, p99 TTFT ms, success rate %) over windows (t − window_s, t]."""
    by_time = sorted(requests, key=lambda r: r.scheduled_s)
    sched = np.asarray([r.scheduled_s for r in by_time])
    ok = np.asarray([r.ok for r in by_time], dtype=bool)
    ttft = np.asarray([1000 * r.ttft_s if r.ok else np.nan for r in by_time])
    end = float(sched[-1]) if sched.size else 0.0
    grid = np.arange(step_s, end + step_s, step_s) if end > 0 else np.asarray([step_s])
    lo = np.searchsorted(sched, grid - window_s, side="right")
    hi = np.searchsorted(sched, grid, side="right")
    p50, p99, success = (np.full(grid.size, np.nan) for _ in range(3))
    for i, (a, b) in enumerate(zip(lo, hi, strict=True)):
        if b > a:
            success[i] = 100 * ok[a:b].mean()
            window = ttft[a:b][~np.isnan(ttft[a:b])]
            if window.size:
                p50[i], p99[i] = np.percentile(window, [50, 99], method="linear")
    return grid, p50, p99, success


def plot_timeline(run: RunData, path: Path, window_s: float = WINDOW_S) -> Path:
    fig, (lat, succ) = _figure(2, sharex=True)
    # Steps of a tenth of the window keep long runs to a few thousand points.
    t, p50, p99, success = rolling(run.requests, window_s, step_s=max(1.0, window_s / 10))
    lat.plot(t, p50, label="p50 TTFT", lw=1.2)
    lat.plot(t, p99, label="p99 TTFT", lw=1.2)
    lat.set(ylabel="TTFT (ms)", title=f"Rolling {window_s:g} s window: {_run_title(run)}")
    _log_if_wide(lat, np.concatenate([p50, p99]))
    succ.plot(t, success, color="tab:green", lw=1.2, label="success rate")
    succ.set(ylabel="success rate (%)", xlabel="scheduled time (s)", ylim=(-2, 102))
    for ax in (lat, succ):
        _mark_events(ax, run.events, labels=ax is lat)
    _legend(lat)
    return _save(fig, path)


def _mark_events(ax: Axes, events: Sequence[Event], labels: bool) -> None:
    """Vertical lines at events; one legend entry per kind; text names the target."""
    seen: list[str] = []
    for ev in events:
        first = ev.kind not in seen
        if first:
            seen.append(ev.kind)
        color, style = _event_style(ev, seen.index(ev.kind))
        ax.axvline(ev.t_s, color=color, ls=style, lw=1.0, label=ev.kind if first and labels else None)
        if labels and ev.target and is_fault(ev):
            ax.annotate(ev.target, (ev.t_s, 1.0), xycoords=("data", "axes fraction"), xytext=(2, -10),
                        textcoords="offset points", fontsize=8, color=color)


def _log_if_wide(ax: Axes, values: np.ndarray, axis: str = "y") -> None:
    """Log scale when values span over 20x: cold starts put seconds-long TTFTs beside
    millisecond warm hits, and a linear axis would flatten the warm ones to zero."""
    finite = values[np.isfinite(values) & (values > 0)]
    if finite.size and finite.max() / finite.min() > 20:
        (ax.set_xscale if axis == "x" else ax.set_yscale)("log")
    elif axis == "y":
        ax.set_ylim(bottom=0)


def _event_style(ev: Event, order: int) -> tuple[str, str]:
    """Faults red and solid, recoveries green and dashed, each other kind its own dotted colour."""
    if is_fault(ev):
        return "tab:red", "-"
    if is_recovery(ev):
        return "tab:green", "--"
    return _OTHER_EVENT_COLORS[order % len(_OTHER_EVENT_COLORS)], ":"


def _run_title(run: RunData) -> str:
    return f"{run.manifest.name} ({run.manifest.scheduler})"


def _figure(rows: int, sharex: bool = False, height: float | None = None) -> tuple[Figure, list[Axes]]:
    fig = Figure(figsize=(9, height or 3.4 * rows), dpi=_DPI, layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(rows, 1, sharex=sharex, squeeze=False)
    for ax in axes[:, 0]:
        ax.grid(True, alpha=0.3)
    return fig, list(axes[:, 0])


def _legend(ax: Axes) -> None:
    if ax.get_legend_handles_labels()[0]:
        ax.legend(loc="best", fontsize=8)


def _save(fig: Figure, path: Path) -> Path:
    fig.savefig(path, format="png")
    return path
