"""timeline.html: the run on one zoomable time axis, in one self-contained HTML file.

The same data as the PNGs (plots.py), read from the same RunData: per-node memory
utilisation, GPU compute utilisation and queue depth (nodes.csv; gaps where a node was
dead), every request's TTFT at its scheduled time (requests.csv; failures drawn at the
bottom), and every event
(events.csv) as a marker on its own row with its detail on hover; faults are also drawn as
red lines across every panel. All panels share one x range, so zooming or panning one
moves them all.

Bokeh renders it (bokeh.org): its BokehJS is inlined (`resources=INLINE`), so the file
opens from a results directory copied anywhere, without a network. Chosen over Plotly
for size: BokehJS inlines in about 1.3 MB against plotly.js's 4.8 MB, per run, and a study
writes one per run; it also ships type hints. Imported lazily, like matplotlib: the report
loads without it.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from cli.report.results import RunData
from cli.report.summary import is_fault
from daemons.rundir import Event, NodeSample

if TYPE_CHECKING:
    from bokeh.models import Range1d
    from bokeh.plotting import figure as Figure

TIMELINE_HTML = "timeline.html"

_PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
            "#bcbd22", "#17becf")
_TOOLS = "xpan,xwheel_zoom,box_zoom,reset,save"


def write_timeline(run: RunData, path: Path | None = None) -> Path:
    """timeline.html into the run directory (or `path`); returns where it was written."""
    from bokeh.embed import file_html
    from bokeh.layouts import column
    from bokeh.models import Range1d
    from bokeh.resources import INLINE

    out = path or run.run_dir / TIMELINE_HTML
    start, end = _time_span(run)
    x_range = Range1d(start=start, end=end)
    panels = [_memory_panel(run, x_range), _compute_panel(run, x_range), _queue_panel(run, x_range),
              _ttft_panel(run, x_range), _event_panel(run, x_range)]
    for panel in panels[:-1]:
        _mark_faults(panel, run.events)
    title = f"{run.manifest.name} · {run.manifest.scheduler} · {run.run_dir.name}"
    html = file_html(column(*panels, sizing_mode="stretch_width"), resources=INLINE, title=title)
    out.write_text(html, encoding="utf-8")
    return out


def _time_span(run: RunData) -> tuple[float, float]:
    times = [n.t_s for n in run.nodes] + [e.t_s for e in run.events] + [r.scheduled_s for r in run.requests]
    finite = [t for t in times if math.isfinite(t)]
    if not finite:
        return 0.0, 1.0
    lo, hi = min(finite), max(finite)
    return lo - 0.5, max(hi, lo + 1.0) + 0.5


def _figure(title: str, y_label: str, x_range: Range1d, height: int = 220,
            categories: Sequence[str] | None = None) -> Figure:
    from bokeh.models import FactorRange
    from bokeh.plotting import figure

    if categories is None:
        fig = figure(title=title, x_range=x_range, height=height, tools=_TOOLS, active_scroll="xwheel_zoom",
                     sizing_mode="stretch_width")
    else:
        fig = figure(title=title, x_range=x_range, y_range=FactorRange(factors=list(categories)), height=height,
                     tools=_TOOLS, active_scroll="xwheel_zoom", sizing_mode="stretch_width")
    fig.yaxis.axis_label = y_label
    fig.xaxis.axis_label = "time since t = 0 (s)"
    return fig


def _per_node(nodes: Sequence[NodeSample]) -> dict[str, list[NodeSample]]:
    by_node: dict[str, list[NodeSample]] = defaultdict(list)
    for sample in nodes:
        by_node[sample.node].append(sample)
    return dict(sorted(by_node.items()))


def _node_lines(fig: Figure, run: RunData, value: str, scale: float) -> None:
    """One line per node; a dead sample is a gap (NaN breaks a Bokeh line)."""
    for i, (name, samples) in enumerate(_per_node(run.nodes).items()):
        ys = [scale * getattr(s, value) if s.alive else math.nan for s in samples]
        fig.line([s.t_s for s in samples], ys, legend_label=name, color=_PALETTE[i % len(_PALETTE)],
                 line_width=2)
    if fig.legend:
        fig.legend.click_policy = "hide"
        fig.legend.location = "top_left"


def _memory_panel(run: RunData, x_range: Range1d) -> Figure:
    fig = _figure("GPU memory used per node (%)", "memory %", x_range)
    _node_lines(fig, run, "memory_utilization", 100.0)
    return fig


def _compute_panel(run: RunData, x_range: Range1d) -> Figure:
    """NVML's utilization.gpu, or the emulator's busy fraction; empty where not measured (NaN)."""
    fig = _figure("GPU compute utilisation per node (%)", "compute %", x_range)
    _node_lines(fig, run, "gpu_utilization", 100.0)
    return fig


def _queue_panel(run: RunData, x_range: Range1d) -> Figure:
    fig = _figure("Queue depth per node", "queued requests", x_range)
    _node_lines(fig, run, "queue_depth", 1.0)
    return fig


def _ttft_panel(run: RunData, x_range: Range1d) -> Figure:
    """Each successful request's TTFT at its scheduled time; failures as crosses at 0."""
    from bokeh.models import ColumnDataSource

    fig = _figure("Request TTFT at scheduled time (ms; failures as red crosses at 0)", "TTFT (ms)", x_range, 260)
    ok = [r for r in run.requests if r.ok and math.isfinite(r.ttft_s)]
    failed = [r for r in run.requests if r.status not in ("ok", "not_sent")]
    ok_src = ColumnDataSource({"t": [r.scheduled_s for r in ok], "ttft": [1000 * r.ttft_s for r in ok],
                               "id": [r.request_id for r in ok], "node": [r.node for r in ok],
                               "action": [r.action for r in ok]})
    bad_src = ColumnDataSource({"t": [r.scheduled_s for r in failed], "ttft": [0.0] * len(failed),
                                "id": [r.request_id for r in failed], "node": [r.node for r in failed],
                                "action": [f"{r.status} {r.error}".strip() for r in failed]})
    fig.scatter("t", "ttft", source=ok_src, size=4, alpha=0.6, legend_label="ok")
    fig.scatter("t", "ttft", source=bad_src, marker="x", size=7, color="red", legend_label="failed")
    fig.legend.click_policy = "hide"
    _tooltips(fig, [("request", "@id"), ("t", "@t{0.000} s"), ("TTFT", "@ttft{0.0} ms"), ("node", "@node"),
                    ("action", "@action")])
    return fig


def _event_panel(run: RunData, x_range: Range1d) -> Figure:
    """Every event on a row of its kind, detail on hover; faults red."""
    from bokeh.models import ColumnDataSource

    kinds = sorted({e.kind for e in run.events}) or ["(no events)"]
    fig = _figure("Events (hover for detail)", "", x_range, 80 + 28 * len(kinds), kinds)
    src = ColumnDataSource({"t": [e.t_s for e in run.events], "kind": [e.kind for e in run.events],
                            "target": [e.target for e in run.events], "detail": [e.detail for e in run.events],
                            "color": ["red" if is_fault(e) else "#444444" for e in run.events]})
    fig.scatter("t", "kind", source=src, size=10, color="color", marker="diamond")
    _tooltips(fig, [("event", "@kind"), ("t", "@t{0.000} s"), ("target", "@target"), ("detail", "@detail")])
    return fig


def _tooltips(fig: Figure, tips: list[tuple[str, str]]) -> None:
    from bokeh.models import HoverTool

    fig.add_tools(HoverTool(tooltips=tips))


def _mark_faults(fig: Figure, events: Sequence[Event]) -> None:
    faults = [e.t_s for e in events if is_fault(e)]
    if faults:
        fig.vspan(x=faults, line_color="red", line_dash="dashed", line_width=1)
