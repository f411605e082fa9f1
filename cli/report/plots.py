"""PNG plots of one run, and the overlaid TTFT CDF of several runs.

Every figure follows the rules in style.py (titles, units, legends, failures shown, N
behind each curve, overlays, trailing windows). Files (in the run directory unless
stated otherwise):
- ttft_cdf.png          TTFT CDF over every sent request: failed requests count as never
                        answered, so the curve stops at 1 − the failed share (annotated);
- nodes.png             per node (legend: node-1 (a100-80gb)) over time (gaps = dead):
                        memory utilisation, GPU compute utilisation (NVML's, or the
                        emulator's busy fraction; an empty panel says "not measured"),
                        queue depth with the cluster-wide total; over MAX_NODE_LINES
                        nodes, their spread per second instead (median, p10–p90, max);
- actions.png           SERVE / SERVE_LOADING / COLD_START / MIGRATE / unplaced counts, split
                        ok vs failed, the cache hit rate in the title;
- timeline.png          over trailing 10 s windows: p50/p99 TTFT, and the failure rate on a
                        symlog axis (0 %, then 1 %, 10 %, 100 %: a few failures are visible
                        and a healthy run is not half a flat 100 % line) with the requests
                        per window; faults (red), recoveries (green), other events marked;
- recovery.png          only for a run with faults. Top: the whole run, success rate and
                        p50/p99 TTFT over trailing windows (t − 10 s, t], the window
                        recovery.py judges on, bold, and (t − 1 s, t] thin (where the failures
                        are); per fault its line (shaded while a pause or a restart's downtime
                        lasts), first detection, drain end and recovery end (or "not
                        recovered"); below, every verdict about a faulted target, one row per
                        observer. Then one zoomed row per fault, fault − 15 s to its recovery
                        (or the first full window) + 15 s, with the recovery bars and the
                        window that proved recovery shaded;
- ttft_cdf_compare.png  (comparison output dir) the runs' CDFs overlaid, each over its sent
                        requests.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure, SubFigure

from cli.report import style
from cli.report.recovery import COORDINATOR, COORDINATOR_DETECTIONS, SUCCESS_FRACTION, TTFT_FACTOR
from cli.report.results import ACTIONS, RunData
from cli.report.summary import cache_hits, cluster_queue, is_fault, is_recovery
from daemons.rundir import FAULT, NOT_SENT, Event, Manifest, NodeSample, Recovery, RequestRow

TTFT_CDF = "ttft_cdf.png"
NODES = "nodes.png"
ACTIONS_PNG = "actions.png"
TIMELINE = "timeline.png"
RECOVERY = "recovery.png"
TTFT_CDF_COMPARE = "ttft_cdf_compare.png"
TTFT_CDF_BY_CLASS = "ttft_cdf_by_class.png"

# Service recovery is judged on a trailing 10 s window (recovery.py); plot the same window.
WINDOW_S = 10.0
ZOOM_MARGIN_S = 15.0  # the zoomed panel of a fault: fault − 15 s to recovery + 15 s
_OTHER_EVENT_COLORS = ("tab:orange", "tab:purple", "tab:brown", "tab:gray", "tab:olive")
TIME = style.label("time from t0", "s")


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
    if len(by_class(run.requests)) > 1:
        paths.append(style.save(class_cdf_figure(run), d / TTFT_CDF_BY_CLASS))
    return paths


def write_compare_plot(runs: Sequence[tuple[str, RunData]], out_dir: Path) -> Path:
    """The runs' TTFT CDFs overlaid on one axes (style rule 6) in `out_dir`."""
    out_dir.mkdir(parents=True, exist_ok=True)
    return plot_ttft_cdf(runs, out_dir / TTFT_CDF_COMPARE)


def ttft_ms(requests: Sequence[RequestRow]) -> tuple[np.ndarray, int]:
    """(TTFTs of the successful requests in ms, sorted; the number of sent requests that
    failed). Requests never sent are neither; a success without a first token is dropped."""
    values = np.asarray([1000 * r.ttft_s for r in requests if r.ok], dtype=float)
    failed = sum(1 for r in requests if not r.ok and r.status != NOT_SENT)
    return np.sort(values[~np.isnan(values)]), failed


def plot_ttft_cdf(runs: Sequence[tuple[str, RunData]], path: Path) -> Path:
    return style.save(ttft_cdf_figure(runs), path)


def ttft_cdf_figure(runs: Sequence[tuple[str, RunData]]) -> Figure:
    """One CDF per run over every request it sent (style rule 4), overlaid (rule 6)."""
    names = " vs ".join(label for label, _ in runs)
    what = _run_title(runs[0][1]) if len(runs) == 1 else f"{runs[0][1].manifest.name}: {names}"
    return _cdf_figure(f"TTFT CDF: {what}", [(label, run.requests) for label, run in runs])


def class_cdf_figure(run: RunData) -> Figure:
    """One CDF per workload class of one run (its requests sent), overlaid."""
    return _cdf_figure(f"TTFT CDF by class: {_run_title(run)}", sorted(by_class(run.requests).items()))


def by_class(requests: Sequence[RequestRow]) -> dict[str, list[RequestRow]]:
    """The requests per workload class ("" without classes)."""
    groups: dict[str, list[RequestRow]] = {}
    for r in requests:
        groups.setdefault(r.klass, []).append(r)
    return groups


def _cdf_figure(title: str, groups: Sequence[tuple[str, Sequence[RequestRow]]]) -> Figure:
    fig, (ax,) = style.figure(1, title)
    seen: list[np.ndarray] = []
    for label, requests in groups:
        ttft, failed = ttft_ms(requests)
        style.draw_cdf(ax, label, ttft, failed)
        seen.append(ttft)
    style.log_if_wide(ax, np.concatenate(seen) if seen else np.asarray([]), axis="x")
    for q in (0.5, 0.99):
        ax.axhline(q, color="grey", lw=0.6, ls=":")
    ax.axhline(1.0, color="black", lw=0.6)
    ax.set(xlabel=style.label("TTFT from scheduled time", "ms"),
           ylabel=style.label("share of sent requests", "0..1, failed = never"), ylim=(0, 1.04))
    style.legend(ax)
    return fig


def node_types(manifest: Manifest) -> dict[str, str]:
    """Node name -> GPU profile of a local run, from the spec in manifest.json.

    The local cluster names its nodes node-0, node-1, ... across the spec's [[nodes]]
    groups in order, each group `count` times (ExperimentSpec.node_names in
    cli/experiment/spec.py). A deployed cluster's nodes are its hosts: not known here."""
    spec = manifest.raw.get("spec")
    if not isinstance(spec, dict) or (spec.get("experiment") or {}).get("cluster_file"):
        return {}
    groups = spec.get("nodes") or []
    gpus = [str(g.get("gpu", "")) for g in groups if isinstance(g, dict) for _ in range(int(g.get("count", 1)))]
    return {f"node-{i}": gpu for i, gpu in enumerate(gpus) if gpu}


def node_label(node: str, types: dict[str, str]) -> str:
    return f"{node} ({types[node]})" if node in types else node


def plot_nodes(run: RunData, path: Path) -> Path:
    return style.save(nodes_figure(run), path)


MAX_NODE_LINES = 16  # more nodes than this: a line each is unreadable (and slow), so their spread


def _node_series(samples: Sequence[NodeSample]) -> tuple[np.ndarray, ...]:
    """Time, memory %, compute % and queue depth of samples; NaN while dead (matplotlib leaves a
    gap instead of drawing a misleading zero)."""
    t = np.asarray([s.t_s for s in samples])
    util = np.asarray([100 * s.memory_utilization if s.alive else np.nan for s in samples])
    busy = np.asarray([100 * s.gpu_utilization if s.alive else np.nan for s in samples])
    depth = np.asarray([s.queue_depth if s.alive else np.nan for s in samples], dtype=float)
    return t, util, busy, depth


def _lines_per_node(run: RunData, panels: Sequence[Axes]) -> None:
    types = node_types(run.manifest)
    for node in sorted({s.node for s in run.nodes}):
        t, *series = _node_series(sorted((s for s in run.nodes if s.node == node), key=lambda s: s.t_s))
        for ax, values in zip(panels, series, strict=True):
            ax.plot(t, values, label=node_label(node, types), lw=1.2)


def _spread_of_nodes(run: RunData, panels: Sequence[Axes]) -> None:
    """Per second of the run, the nodes' median, p10–p90 band and maximum on each panel."""
    t, *series = _node_series(run.nodes)
    # One sort, then each second's samples are a slice (a mask per second would scan every
    # sample once per second: minutes for a 10,000-node run).
    order = np.argsort(np.floor(t), kind="stable")
    grid, starts = np.unique(np.floor(t)[order], return_index=True)
    count = len({s.node for s in run.nodes})
    for ax, values in zip(panels, series, strict=True):
        rows = np.split(values[order], starts[1:])
        alive = [r[~np.isnan(r)] for r in rows]
        keep = np.asarray([len(r) > 0 for r in alive])
        if not keep.any():
            continue
        q = np.asarray([np.percentile(r, (10, 50, 90, 100)) for r, k in zip(alive, keep, strict=True) if k])
        x = grid[keep]
        ax.fill_between(x, q[:, 0], q[:, 2], alpha=0.25, lw=0, label=f"p10–p90 of {count} nodes")
        ax.plot(x, q[:, 1], lw=1.2, label="median node")
        ax.plot(x, q[:, 3], lw=0.8, ls="--", label="busiest node")


def nodes_figure(run: RunData) -> Figure:
    fig, (mem, gpu, queue) = style.figure(3, f"Nodes: {_run_title(run)}", sharex=True)
    many = len({s.node for s in run.nodes}) > MAX_NODE_LINES
    (_spread_of_nodes if many else _lines_per_node)(run, (mem, gpu, queue))
    totals = cluster_queue(run.nodes)
    if totals:
        queue.plot([t for t, _ in totals], [q for _, q in totals], color="black", lw=1.8, label="cluster total")
    if not any(math.isfinite(s.gpu_utilization) for s in run.nodes):
        gpu.text(0.5, 0.5, "GPU compute utilisation not measured in this run", transform=gpu.transAxes,
                 ha="center", va="center", fontsize=8, color="grey")
    mem.set(ylabel=style.label("memory utilisation", "%"), ylim=(0, 105))
    gpu.set(ylabel=style.label("GPU compute", "%"), ylim=(0, 105))
    queue.set(ylabel=style.label("queue depth", "requests"), xlabel=TIME)
    queue.set_ylim(bottom=0)
    marked = recovery_events(run)
    for ax in (mem, gpu, queue):
        _mark_events(ax, marked, labels=ax is mem)
    style.legend(mem, beside=True)
    style.legend(queue, beside=True)
    return fig


def action_counts(requests: Sequence[RequestRow]) -> dict[str, tuple[int, int]]:
    """(ok, failed) per action: the known three always, then others and "unplaced" if any."""
    counts = {a: (0, 0) for a in ACTIONS}
    for r in requests:
        ok, failed = counts.get(r.action or "unplaced", (0, 0))
        counts[r.action or "unplaced"] = (ok + 1, failed) if r.ok else (ok, failed + 1)
    return counts


def plot_actions(run: RunData, path: Path) -> Path:
    fig, (ax,) = style.figure(1, f"Actions taken: {_run_title(run)}, cache hit rate {_hit_rate(run)}", height=3.6)
    counts = action_counts(run.requests)
    names = list(counts)
    ok = np.asarray([counts[n][0] for n in names])
    failed = np.asarray([counts[n][1] for n in names])
    ax.bar(names, ok, color="tab:green", label="ok")
    ax.bar(names, failed, bottom=ok, color="tab:red", label="failed")
    for i, total in enumerate(ok + failed):
        ax.annotate(str(total), (i, total), ha="center", va="bottom", fontsize=9)
    ax.set(ylabel=style.label("requests", "count"), xlabel=style.label("action", "what the node did"))
    ax.set_ylim(0, max(1, int((ok + failed).max(initial=0))) * 1.15)
    style.legend(ax)
    return style.save(fig, path)


def _hit_rate(run: RunData) -> str:
    rate = cache_hits(run.requests)[1]
    return "not measured" if math.isnan(rate) else f"{100 * rate:.1f}%"


@dataclass(frozen=True)
class Windows:
    """Figures of the requests scheduled in the trailing windows (t − w, t], one per t."""

    t: np.ndarray
    p50: np.ndarray  # TTFT ms of the successes, NaN without one
    p99: np.ndarray
    success: np.ndarray  # % of the window's requests, NaN for an empty window
    n: np.ndarray  # requests in the window


def windows(requests: Sequence[RequestRow], window_s: float = WINDOW_S, step_s: float = 1.0) -> Windows:
    """The trailing windows (style rule 7) at t = step_s, 2 step_s, ... up to the last arrival.
    Requests never sent are left out: they were not asked of the system."""
    by_time = sorted((r for r in requests if r.status != NOT_SENT), key=lambda r: r.scheduled_s)
    sched = np.asarray([r.scheduled_s for r in by_time])
    ok = np.asarray([r.ok for r in by_time], dtype=bool)
    ttft = np.asarray([1000 * r.ttft_s if r.ok else np.nan for r in by_time])
    end = float(sched[-1]) if sched.size else 0.0
    grid = np.arange(step_s, end + step_s, step_s) if end > 0 else np.asarray([step_s])
    lo, hi = style.trailing(sched, grid, window_s)
    p50, p99, success = (np.full(grid.size, np.nan) for _ in range(3))
    for i, (a, b) in enumerate(zip(lo, hi, strict=True)):
        if b > a:
            success[i] = 100 * ok[a:b].mean()
            window = ttft[a:b][~np.isnan(ttft[a:b])]
            if window.size:
                p50[i], p99[i] = np.percentile(window, [50, 99], method="linear")
    return Windows(grid, p50, p99, success, (hi - lo).astype(float))


def rolling(requests: Sequence[RequestRow], window_s: float = WINDOW_S,
            step_s: float = 1.0) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(t, p50 TTFT ms, p99 TTFT ms, success rate %) of the trailing windows (t − window_s, t]."""
    w = windows(requests, window_s, step_s)
    return w.t, w.p50, w.p99, w.success


def plot_timeline(run: RunData, path: Path, window_s: float = WINDOW_S) -> Path:
    fig, (lat, fail) = style.figure(2, f"Trailing {window_s:g} s windows: {_run_title(run)}", sharex=True)
    # Steps of a tenth of the window keep long runs to a few thousand points.
    w = windows(run.requests, window_s, step_s=max(1.0, window_s / 10))
    lat.plot(w.t, w.p50, label="p50 TTFT", lw=1.2)
    lat.plot(w.t, w.p99, label="p99 TTFT", lw=1.2)
    lat.set(ylabel=style.label("TTFT of successes", "ms"))
    style.log_if_wide(lat, np.concatenate([w.p50, w.p99]))
    draw_failure_rate(fail, w)
    fail.set(xlabel=TIME)
    marked = recovery_events(run)
    for ax in (lat, fail):
        _mark_events(ax, marked, labels=ax is lat)
    style.legend(lat, beside=True)
    return style.save(fig, path)


def draw_failure_rate(ax: Axes, w: Windows) -> None:
    """The failure rate on a symlog axis (linear to 1 %, then log to 100 %): one failure in a
    hundred is as visible as a collapse, and a healthy run is a line at 0, not a wall at 100 %;
    the requests behind each window (style rule 5) in grey on the right."""
    ax.plot(w.t, 100 - w.success, color="tab:red", lw=1.2, label="failed")
    ax.set_yscale("symlog", linthresh=1.0)
    ax.set_ylim(0, 100)
    ax.set_yticks([0, 1, 10, 100], ["0", "1", "10", "100"])
    ax.set(ylabel=style.label("failed", "% of window"))
    if not np.nanmax(100 - w.success, initial=0.0) > 0:  # a line on the axis could be missed
        ax.text(0.5, 0.5, "no request failed", transform=ax.transAxes, ha="center", va="center", fontsize=9,
                color="grey")
    style.legend(ax, beside=True, also=[style.draw_n(ax, w.t, w.n)])


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
    baseline or a recovery: what did not happen is not drawn, and "not recovered" is written."""
    marks = fault_marks(run)
    rows = verdict_rows(run.events, {m.target for m in marks})
    strip_h = 1 + 0.25 * len(rows)
    fig = Figure(figsize=(10, 7.5 + 0.25 * len(rows) + 3.0 * len(marks)), dpi=style.DPI, layout="constrained")
    FigureCanvasAgg(fig)
    top, *zooms = fig.subfigures(1 + len(marks), 1, squeeze=False,
                                 height_ratios=[7.5 + 0.25 * len(rows)] + [3.0] * len(marks))[:, 0]
    succ, lat, strip = top.subplots(3, 1, sharex=True, height_ratios=(3, 3, strip_h))
    succ.set_title(f"Faults and recovery: {_run_title(run)}")
    fine, coarse = windows(run.requests, window_s / 10, window_s / 20), windows(run.requests, window_s, window_s / 20)
    n = _draw_service(succ, lat, fine, coarse, window_s)
    for number, m in enumerate(marks, 1):
        _draw_fault((succ, lat, strip), m, number, window_s)
    _draw_verdicts(strip, rows)
    strip.set(xlabel=TIME)
    for ax in (succ, lat):
        ax.grid(True, alpha=0.3)
    style.legend(succ, beside=True, also=[n])
    style.legend(lat, beside=True)
    for number, (m, sub) in enumerate(zip(marks, zooms, strict=True), 1):
        _draw_zoom(sub, m, number, fine, coarse, window_s)
    return style.save(fig, path)


def zoom_range(m: FaultMarks, window_s: float = WINDOW_S) -> tuple[float, float]:
    """Fault − 15 s to recovery + 15 s; without a recovery, to the first window recovery.py
    could have judged (fault + window) + 15 s."""
    end = m.recovered if math.isfinite(m.recovered) else m.t_s + window_s
    return m.t_s - ZOOM_MARGIN_S, end + ZOOM_MARGIN_S


def _draw_zoom(sub: SubFigure, m: FaultMarks, number: int, fine: Windows, coarse: Windows, window_s: float) -> None:
    succ, lat = sub.subplots(1, 2)
    outcome = f"recovered in {m.recovered - m.t_s:.1f} s" if math.isfinite(m.recovered) else "not recovered"
    sub.suptitle(f"Fault #{number} {m.label} at {m.t_s:.1f} s, zoomed: {outcome}", fontsize=10)
    _draw_service(succ, lat, fine, coarse, window_s)
    _draw_fault((succ, lat), m, number, window_s)
    lo, hi = zoom_range(m, window_s)
    lo = max(lo, min(0.0, m.t_s))  # nothing before t0 ...
    hi = min(hi, max(float(coarse.t[-1]), m.t_s) + 1.0)  # ... nor after the last arrival
    for ax in (succ, lat):
        ax.grid(True, alpha=0.3)
        ax.set_xlim(lo, hi)
        ax.set(xlabel=TIME)
    _fit_y(succ, coarse.success, fine.success, (coarse.t, fine.t), (lo, hi))


def _fit_y(ax: Axes, coarse: np.ndarray, fine: np.ndarray, ts: tuple[np.ndarray, np.ndarray],
           span: tuple[float, float]) -> None:
    """The success axis of a zoom from just under its lowest visible value to 101 %."""
    seen = [v[(t >= span[0]) & (t <= span[1])] for v, t in zip((coarse, fine), ts, strict=True)]
    low = min((float(np.nanmin(v)) for v in seen if np.isfinite(v).any()), default=0.0)
    ax.set_ylim(max(-2.0, low - 5.0), 101.0)


def _draw_service(succ: Axes, lat: Axes, fine: Windows, coarse: Windows, window_s: float) -> Axes:
    """Success and TTFT of the requests scheduled in (t − window_s, t], recovery.py's window,
    bold; over a tenth of it, thin: where the failures are. Returns the axis of the requests
    per window, drawn behind the success rate."""
    f, c = f"{window_s / 10:g}", f"{window_s:g}"
    succ.plot(fine.t, fine.success, color="tab:green", lw=0.7, alpha=0.45, label=f"(t − {f} s, t]")
    succ.plot(coarse.t, coarse.success, color="tab:green", lw=1.6, label=f"(t − {c} s, t]")
    succ.set(ylabel=style.label("success of arrivals", "%"), ylim=(-2, 108))
    lat.plot(fine.t, fine.p99, color="tab:orange", lw=0.7, alpha=0.45, label=f"p99 (t − {f} s, t]")
    lat.plot(coarse.t, coarse.p50, color="tab:blue", lw=1.6, label=f"p50 (t − {c} s, t]")
    lat.plot(coarse.t, coarse.p99, color="tab:orange", lw=1.6, label=f"p99 (t − {c} s, t]")
    lat.set(ylabel=style.label("TTFT of successes", "ms"))
    style.log_if_wide(lat, np.concatenate([coarse.p50, coarse.p99, fine.p99]))
    return style.draw_n(succ, coarse.t, coarse.n)


def _draw_fault(axes: Sequence[Axes], m: FaultMarks, number: int, window_s: float) -> None:
    """Lines on every panel; legend labels on the top one (repeats are merged there). The
    recovery bars run from the fault to the recovery (or on); the window that proved
    recovery (it starts no earlier than the fault) is shaded green."""
    for i, ax in enumerate(axes):
        ax.axvline(m.t_s, color="tab:red", lw=1.2, label="fault" if i == 0 else None)
        if math.isfinite(m.until_s):
            ax.axvspan(m.t_s, m.until_s, color="tab:red", alpha=0.12, lw=0)
        for name, (color, style_, text) in _MARKERS.items():
            when = getattr(m, name)
            if math.isfinite(when):
                ax.axvline(when, color=color, ls=style_, lw=1.2, label=text if i == 0 else None)
        if math.isfinite(m.recovered):
            ax.axvspan(max(m.t_s, m.recovered - window_s), m.recovered, color="tab:green", alpha=0.08, lw=0,
                       label="window proving recovery" if i == 0 else None)
    note = f"#{number} {m.label}" + ("" if math.isfinite(m.recovered) else ": not recovered")
    axes[0].annotate(note, (m.t_s, 1.0), xycoords=("data", "axes fraction"), xytext=(2, -10),
                     textcoords="offset points", fontsize=8, color="tab:red")
    _draw_thresholds(axes[0], axes[1], m, window_s)


def _draw_thresholds(succ: Axes, lat: Axes, m: FaultMarks, window_s: float) -> None:
    """The bars recovery.py sets (>= 99 % of the baseline success, p99 <= 1.2x), over the
    windows it judges: from the fault to the recovery, or to the axis' end."""
    start = m.t_s
    for ax, bar in ((succ, 100 * SUCCESS_FRACTION * m.base_success), (lat, 1000 * TTFT_FACTOR * m.base_p99_ttft_s)):
        if math.isfinite(bar):
            stop = m.recovered if math.isfinite(m.recovered) else max(start, ax.get_xlim()[1])
            ax.hlines(bar, start, stop, colors="grey", linestyles="--", lw=0.8, label="recovery bar")


def _draw_verdicts(ax: Axes, rows: dict[str, list[Event]]) -> None:
    style.categorical(ax)
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
        color, ls = _event_style(ev, seen.index(ev.kind))
        ax.axvline(ev.t_s, color=color, ls=ls, lw=1.0, label=ev.kind.replace("_", " ") if first and labels else None)
        if labels and ev.target and is_fault(ev):
            ax.annotate(ev.target, (ev.t_s, 1.0), xycoords=("data", "axes fraction"), xytext=(2, -10),
                        textcoords="offset points", fontsize=8, color=color)


def _event_style(ev: Event, order: int) -> tuple[str, str]:
    """Faults red and solid, recoveries green and dashed, each other kind its own dotted colour."""
    if is_fault(ev):
        return "tab:red", "-"
    if is_recovery(ev):
        return "tab:green", "--"
    return _OTHER_EVENT_COLORS[order % len(_OTHER_EVENT_COLORS)], ":"


def _run_title(run: RunData) -> str:
    return f"{run.manifest.name} ({run.manifest.scheduler})"
