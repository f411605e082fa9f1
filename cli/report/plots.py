"""PNG plots of one run, and the TTFT CDF of several runs side by side.

Figures are built on `matplotlib.figure.Figure` directly, never through pyplot: no global
figure registry to leak, no GUI backend to pick up on a desktop, safe to call from a
long-running process. PNGs are written by the Agg canvas.

Files (in the run directory unless stated otherwise):
- ttft_cdf.png          TTFT CDF of the successful requests;
- nodes.png             per node over time (gaps = dead): memory utilisation, GPU compute
                        utilisation (NVML's, or the emulator's busy fraction; an empty panel
                        says "not measured"), queue depth with the cluster-wide total;
- actions.png           SERVE / SERVE_LOADING / COLD_START / MIGRATE / unplaced counts, split
                        ok vs failed, the cache hit rate in the title;
- timeline.png          rolling-window p50/p99 TTFT and success rate over scheduled time,
                        with faults (red), recoveries (green) and other events (grey) marked;
- recovery.png          only for a run with faults: the fault timeline. Success rate and
                        p50/p99 TTFT of the requests arriving in [t, t + 10 s) (the window
                        recovery.py judges recovery on, so the recovery marker sits where the
                        curves meet the dashed bars) and, thin, in [t, t + 1 s) (where the
                        failures really are: a window ahead dips before the fault); per
                        fault its line (shaded while a pause or a restart's downtime lasts),
                        first detection, drain end and recovery end; below, every verdict
                        about a faulted target, one row per observer (gossip peers' `by=`,
                        the collector, the coordinator);
- ttft_cdf_compare.png  (comparison output dir) one CDF line per run.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from cli.report.recovery import COORDINATOR, COORDINATOR_DETECTIONS, SUCCESS_FRACTION, TTFT_FACTOR
from cli.report.results import ACTIONS, RunData
from cli.report.summary import cache_hits, cluster_queue, is_fault, is_recovery
from daemons.rundir import FAULT, Event, Recovery, RequestRow

TTFT_CDF = "ttft_cdf.png"
NODES = "nodes.png"
ACTIONS_PNG = "actions.png"
TIMELINE = "timeline.png"
RECOVERY = "recovery.png"
TTFT_CDF_COMPARE = "ttft_cdf_compare.png"

# Service recovery is judged on a rolling 10 s window (recovery.py); plot the same window.
WINDOW_S = 10.0
_DPI = 110
_OTHER_EVENT_COLORS = ("tab:orange", "tab:purple", "tab:brown", "tab:gray", "tab:olive")


def write_run_plots(run: RunData) -> list[Path]:
    """The four single-run plots into the run directory, and the fault timeline if it had faults."""
    d = run.run_dir
    label = run.manifest.scheduler
    paths = [
        plot_ttft_cdf([(label, run)], d / TTFT_CDF),
        plot_nodes(run, d / NODES),
        plot_actions(run, d / ACTIONS_PNG),
        plot_timeline(run, d / TIMELINE),
    ]
    if any(e.kind == FAULT for e in run.events):
        paths.append(plot_recovery(run, d / RECOVERY))
    return paths


def write_compare_plot(runs: Sequence[tuple[str, RunData]], out_dir: Path) -> Path:
    out_dir.mkdir(parents=True, exist_ok=True)
    return plot_ttft_cdf(runs, out_dir / TTFT_CDF_COMPARE)


def ttft_ms(requests: Sequence[RequestRow]) -> np.ndarray:
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
    fig, (mem, gpu, queue) = _figure(3, sharex=True)
    for node in sorted({s.node for s in run.nodes}):
        samples = sorted((s for s in run.nodes if s.node == node), key=lambda s: s.t_s)
        t = np.asarray([s.t_s for s in samples])
        # NaN while dead: matplotlib leaves a gap instead of drawing a misleading zero.
        util = np.asarray([100 * s.memory_utilization if s.alive else np.nan for s in samples])
        busy = np.asarray([100 * s.gpu_utilization if s.alive else np.nan for s in samples])
        depth = np.asarray([s.queue_depth if s.alive else np.nan for s in samples])
        mem.plot(t, util, label=node, lw=1.2)
        gpu.plot(t, busy, label=node, lw=1.2)
        queue.plot(t, depth, label=node, lw=1.2)
    totals = cluster_queue(run.nodes)
    if totals:
        queue.plot([t for t, _ in totals], [q for _, q in totals], color="black", lw=1.8, label="cluster total")
    if not any(math.isfinite(s.gpu_utilization) for s in run.nodes):
        gpu.text(0.5, 0.5, "GPU compute utilisation not measured in this run", transform=gpu.transAxes,
                 ha="center", va="center", fontsize=8, color="grey")
    mem.set(ylabel="memory utilisation (%)", ylim=(0, 105), title=f"Nodes: {_run_title(run)}")
    gpu.set(ylabel="GPU compute (%)", ylim=(0, 105))
    queue.set(ylabel="queue depth", xlabel="time (s)")
    queue.set_ylim(bottom=0)
    marked = recovery_events(run)
    for ax in (mem, gpu, queue):
        _mark_events(ax, marked, labels=ax is mem)
    _legend(mem)
    _legend(queue)
    return _save(fig, path)


def action_counts(requests: Sequence[RequestRow]) -> dict[str, tuple[int, int]]:
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
    ax.set(ylabel="requests", title=f"Actions taken: {_run_title(run)}, cache hit rate {_hit_rate(run)}")
    ax.set_ylim(0, max(1, int((ok + failed).max(initial=0))) * 1.15)
    _legend(ax)
    return _save(fig, path)


def _hit_rate(run: RunData) -> str:
    rate = cache_hits(run.requests)[1]
    return "-" if math.isnan(rate) else f"{100 * rate:.1f}%"


def rolling(requests: Sequence[RequestRow], window_s: float = WINDOW_S, step_s: float = 1.0,
            ahead: bool = False) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(t, p50 TTFT ms, p99 TTFT ms, success rate %) of the requests scheduled in the windows
    (t − window_s, t], or in [t, t + window_s) when `ahead` (recovery.py's window: the
    service that requests arriving from t on get)."""
    by_time = sorted(requests, key=lambda r: r.scheduled_s)
    sched = np.asarray([r.scheduled_s for r in by_time])
    ok = np.asarray([r.ok for r in by_time], dtype=bool)
    ttft = np.asarray([1000 * r.ttft_s if r.ok else np.nan for r in by_time])
    end = float(sched[-1]) if sched.size else 0.0
    if ahead:
        grid = np.arange(0.0, end + step_s / 2, step_s)
        lo, hi = np.searchsorted(sched, grid, side="left"), np.searchsorted(sched, grid + window_s, side="left")
    else:
        grid = np.arange(step_s, end + step_s, step_s) if end > 0 else np.asarray([step_s])
        lo, hi = np.searchsorted(sched, grid - window_s, side="right"), np.searchsorted(sched, grid, side="right")
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
    marked = recovery_events(run)
    for ax in (lat, succ):
        _mark_events(ax, marked, labels=ax is lat)
    _legend(lat)
    return _save(fig, path)


# ----- the fault timeline (recovery.png) --------------------------------------------------

# Verdicts about a faulted target in the bottom strip: suspicion orange, death black,
# silence grey, coming back green; (colour, marker) per event kind.
VERDICT_STYLE: dict[str, tuple[str, str]] = {
    "suspect": ("tab:orange", "v"), "dead": ("black", "X"), "node_dead": ("black", "X"),
    "silent": ("tab:gray", "s"), "coordinator_silent": ("tab:gray", "s"),
    "alive": ("tab:green", "^"), "heard_again": ("tab:green", "o"), "node_recovered": ("tab:green", "o"),
    "node_restarted": ("tab:green", "D"), "coordinator_active": ("tab:blue", "D"),
}
# Who wrote a verdict that names no observer (`by=`): the collector's detector or the coordinator.
_EMITTER = {"silent": "collector", "heard_again": "collector", "coordinator_silent": "collector",
            "node_dead": "coordinator", "node_recovered": "coordinator", "node_restarted": "coordinator"}
# Events that end a fault that lasts (cli/experiment/faults.py): SIGCONT, the restart is up,
# the partition healed.
_FAULT_ENDS = ("resumed", "started_again", "healed")
# (colour, line style, legend label) of the per-fault markers.
_MARKERS = {"detected": ("tab:orange", ":", "first detection"), "drained": ("tab:purple", "-.", "drain end"),
            "recovered": ("tab:green", "--", "recovery end")}


@dataclass(frozen=True)
class FaultMarks:
    """One fault on the timeline; times in seconds from t0, NaN for what did not happen."""

    label: str  # KIND:TARGET
    target: str
    t_s: float
    until_s: float  # end of a pause, of a restart's downtime, of a partition; NaN: stays down
    detected: float
    drained: float
    recovered: float
    base_success: float  # 0..1, the pre-fault baseline recovery was judged against
    base_p99_ttft_s: float


def fault_marks(run: RunData) -> list[FaultMarks]:
    """Every fault of the run, with its recovery figures (recovery.csv)."""
    return [_marks(r, run.events) for r in run.recoveries]


def _marks(r: Recovery, events: Sequence[Event]) -> FaultMarks:
    return FaultMarks(f"{r.fault or 'fault'}:{r.target}", r.target, r.t_s, _fault_end(r, events),
                      r.t_s + r.detection_s, r.t_s + r.drain_s, r.t_s + r.recovery_s,
                      r.base_success, r.base_p99_ttft_s)


def _fault_end(r: Recovery, events: Sequence[Event]) -> float:
    """The event that ended the fault, else AT + its DURATION, else NaN (it stays down)."""
    ends = [e.t_s for e in events if e.kind in _FAULT_ENDS and e.target == r.target and e.t_s >= r.t_s]
    if ends:
        return min(ends)
    for e in events:
        if e.kind == FAULT and e.target == r.target and abs(e.t_s - r.t_s) < 1e-6:
            duration = e.fields().get("duration_s")
            return r.t_s + float(duration) if duration else math.nan
    return math.nan


def recovery_events(run: RunData) -> list[Event]:
    """The run's events with each fault's outcome as one more: `recovered` when service came
    back (at fault + recovery_s), `not_recovered` (at the fault) when it did not; after the
    events, as the plots have always listed them."""
    outcomes = [Event(r.t_s + r.recovery_s, "recovered", r.target) if r.recovered
                else Event(r.t_s, "not_recovered", r.target) for r in run.recoveries]
    return [*run.events, *outcomes]


def verdict_rows(events: Sequence[Event], targets: set[str]) -> dict[str, list[Event]]:
    """Verdicts about the faulted targets, by observer (and target, when there are several)."""
    rows: dict[str, list[Event]] = {}
    for e in events:
        about = COORDINATOR if e.kind in COORDINATOR_DETECTIONS else e.target
        if e.kind not in VERDICT_STYLE or about not in targets:
            continue
        observer = e.fields().get("by") or _EMITTER.get(e.kind) or e.target
        rows.setdefault(observer if len(targets) == 1 else f"{observer} on {about}", []).append(e)
    return dict(sorted(rows.items()))


def plot_recovery(run: RunData, path: Path, window_s: float = WINDOW_S) -> Path:
    """The fault timeline (see the module docstring); any fault may lack a detection, a
    baseline or a recovery: what did not happen is not drawn."""
    marks = fault_marks(run)
    rows = verdict_rows(run.events, {m.target for m in marks})
    fig, (succ, lat, strip) = _figure(3, sharex=True, height=7.5 + 0.25 * len(rows),
                                      ratios=(3, 3, 1 + 0.25 * len(rows)))
    succ.set_title(f"Faults and recovery: {_run_title(run)}")
    end = _draw_service(succ, lat, run.requests, window_s)
    for number, m in enumerate(marks, 1):
        _draw_fault((succ, lat, strip), m, number)
        _draw_thresholds(succ, lat, m, end)
    _draw_verdicts(strip, rows)
    strip.set(xlabel="time from t0 (s)")
    for ax in (succ, lat):
        _legend_beside(ax)
    return _save(fig, path)


def _draw_service(succ: Axes, lat: Axes, requests: Sequence[RequestRow], window_s: float) -> float:
    """Success and TTFT of the requests arriving in [t, t + window_s), recovery.py's window,
    bold; over a tenth of it, thin: a long window ahead starts falling before the fault."""
    fine = window_s / 10
    t, p50, p99, success = rolling(requests, window_s, step_s=fine / 2, ahead=True)
    tf, _, p99f, successf = rolling(requests, fine, step_s=fine / 2, ahead=True)
    succ.plot(tf, successf, color="tab:green", lw=0.7, alpha=0.45, label=f"[t, t + {fine:g} s)")
    succ.plot(t, success, color="tab:green", lw=1.6, label=f"[t, t + {window_s:g} s)")
    succ.set(ylabel="success rate of arrivals (%)", ylim=(-2, 108))
    lat.plot(tf, p99f, color="tab:orange", lw=0.7, alpha=0.45, label=f"p99 [t, t + {fine:g} s)")
    lat.plot(t, p50, color="tab:blue", lw=1.6, label=f"p50 [t, t + {window_s:g} s)")
    lat.plot(t, p99, color="tab:orange", lw=1.6, label=f"p99 [t, t + {window_s:g} s)")
    lat.set(ylabel="TTFT of arrivals (ms)")
    _log_if_wide(lat, np.concatenate([p50, p99, p99f]))
    return float(t[-1])


def _draw_fault(axes: Sequence[Axes], m: FaultMarks, number: int) -> None:
    """Lines on every panel; legend labels on the top one (repeats are merged there)."""
    for i, ax in enumerate(axes):
        ax.axvline(m.t_s, color="tab:red", lw=1.2, label="fault" if i == 0 else None)
        if math.isfinite(m.until_s):
            ax.axvspan(m.t_s, m.until_s, color="tab:red", alpha=0.12, lw=0)
        for name, (color, style, text) in _MARKERS.items():
            when = getattr(m, name)
            if math.isfinite(when):
                ax.axvline(when, color=color, ls=style, lw=1.2, label=text if i == 0 else None)
    note = f"#{number} {m.label}" + ("" if math.isfinite(m.recovered) else " (not recovered)")
    axes[0].annotate(note, (m.t_s, 1.0), xycoords=("data", "axes fraction"), xytext=(2, -10),
                     textcoords="offset points", fontsize=8, color="tab:red")


def _draw_thresholds(succ: Axes, lat: Axes, m: FaultMarks, end: float) -> None:
    """The bars recovery.py sets (≥ 99 % of the baseline success, p99 ≤ 1.2x), until recovery."""
    stop = m.recovered if math.isfinite(m.recovered) else max(end, m.t_s)
    for ax, bar in ((succ, 100 * SUCCESS_FRACTION * m.base_success), (lat, 1000 * TTFT_FACTOR * m.base_p99_ttft_s)):
        if math.isfinite(bar):
            ax.hlines(bar, m.t_s, stop, colors="grey", linestyles="--", lw=0.8, label="recovery bar")


def _legend_beside(ax: Axes) -> None:
    """A legend right of the axes, one entry per label (every fault labels its markers)."""
    handles, labels = ax.get_legend_handles_labels()
    unique = dict(zip(labels, handles, strict=True))
    if unique:
        ax.legend(list(unique.values()), list(unique), loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=7)


def _draw_verdicts(ax: Axes, rows: dict[str, list[Event]]) -> None:
    ax.grid(False)
    if not rows:
        ax.text(0.5, 0.5, "no verdict about a faulted target", transform=ax.transAxes, ha="center",
                va="center", fontsize=8, color="grey")
        ax.set_yticks([])
        return
    seen: set[str] = set()
    for y, hits in enumerate(rows.values()):
        for e in hits:
            color, marker = VERDICT_STYLE[e.kind]
            ax.scatter([e.t_s], [y], color=color, marker=marker, s=28, label=None if e.kind in seen else e.kind)
            seen.add(e.kind)
    ax.set_yticks(range(len(rows)), list(rows), fontsize=8)
    ax.set_ylim(-0.7, len(rows) - 0.3)
    ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=7, title="verdicts", title_fontsize=7)


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


def _figure(rows: int, sharex: bool = False, height: float | None = None,
            ratios: Sequence[float] | None = None) -> tuple[Figure, list[Axes]]:
    fig = Figure(figsize=(9, height or 3.4 * rows), dpi=_DPI, layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(rows, 1, sharex=sharex, squeeze=False, height_ratios=ratios)
    for ax in axes[:, 0]:
        ax.grid(True, alpha=0.3)
    return fig, list(axes[:, 0])


def _legend(ax: Axes) -> None:
    if ax.get_legend_handles_labels()[0]:
        ax.legend(loc="best", fontsize=8)


def _save(fig: Figure, path: Path) -> Path:
    fig.savefig(path, format="png")
    return path
