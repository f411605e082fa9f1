"""One test per plot rule of cli/report/style.py: the pictures cannot mislead."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from cli.experiment.commands import _write_arms_comparison
from cli.experiment.spec import ExperimentSpec, NodeGroup
from cli.report import load_run, write_report
from cli.report.plots import (
    MAX_NODE_LINES,
    TTFT_CDF_COMPARE,
    fault_marks,
    node_types,
    nodes_figure,
    ttft_cdf_figure,
    windows,
)
from cli.report.recovery import MIN_EVIDENCE, WINDOW_S, recoveries
from cli.report.style import check, figure, label
from cli.report.text import format_summary
from daemons.rundir import Event, RequestRow
from tests.report.builders import event, node, req, write_run


def test_a_lossy_run_cannot_look_better_on_the_comparison_cdf(tmp_path: Path) -> None:
    """The lossy run answers its successes 8x faster but fails half: its curve is left of the
    other one and ends at 0.5, not 1, with "50.0% failed" written at its end."""
    slow = [req(f"r{i}", i, i + 0.5, i + 1) for i in range(8)]
    fast = [req(f"r{i}", i, i + 0.0625, i + 1) if i % 2 else req(f"r{i}", i, None, None, status="error")
            for i in range(8)]
    lossless = write_run(tmp_path, scheduler="centralized", requests=slow, planned_requests=8)
    lossy = write_run(tmp_path, scheduler="gossip", requests=fast, planned_requests=8)
    fig = ttft_cdf_figure([("centralized", load_run(lossless)), ("gossip", load_run(lossy))])
    (ax,) = fig.get_axes()  # one axes: the arms overlaid (rule 6)
    lines = {str(ln.get_label()): ln for ln in ax.get_lines() if not str(ln.get_label()).startswith("_")}
    assert set(lines) == {"centralized (n=8)", "gossip (n=8, 4 failed)"}  # N behind each curve (rule 5)
    top = {name.split(" ")[0]: float(np.max(ln.get_ydata())) for name, ln in lines.items()}
    assert top == {"centralized": 1.0, "gossip": 0.5}
    assert "50.0% failed" in [t.get_text() for t in ax.texts]
    check(fig)


def test_recovery_windows_never_precede_their_fault() -> None:
    """Requests every 0.25 s; every one from the fault (20 s) to 25 s fails. The trailing
    windows are at 100 % up to the fault and dip only from it; recovery is declared on a
    window wholly after the fault, once the last failure (24.75 s) has left it."""
    t_f = 20.0
    requests = [RequestRow(f"r{i}", i / 4, sent_s=i / 4, first_token_s=i / 4 + 0.1, done_s=i / 4 + 0.2,
                           status="ok" if not t_f <= i / 4 < 25 else "error", node="node-0") for i in range(200)]
    w = windows(requests, WINDOW_S, step_s=0.25)
    assert (w.success[w.t < t_f] == 100.0).all()
    assert w.success[w.t == t_f][0] < 100.0  # the first failure is at the fault itself
    (found,) = recoveries(requests, [Event(t_f, "fault", "node-0", "kind=kill")])
    assert found.recovery_s == pytest.approx(24.75 + WINDOW_S - t_f)
    assert found.recovery_s >= WINDOW_S  # never judged on a window reaching back before the fault


def test_a_harmless_fault_recovers_on_evidence_from_after_it_only() -> None:
    """One request a second, all served well: recovered at the MIN_EVIDENCE-th arrival after
    the fault, judged on post-fault requests only (no window floor, no look-ahead)."""
    requests = [RequestRow(f"r{i}", float(i), sent_s=float(i), first_token_s=i + 0.1, done_s=i + 0.2,
                           status="ok", node="node-0") for i in range(40)]
    (found,) = recoveries(requests, [Event(20.0, "fault", "node-1", "kind=kill")])
    assert found.recovery_s == MIN_EVIDENCE
    assert found.recovery_s < WINDOW_S


def test_a_fault_too_close_to_the_end_is_not_recovered(tmp_path: Path) -> None:
    """Too little evidence after the fault before the last arrival (3 requests, under
    MIN_EVIDENCE, and no whole window): not recovered, and it says so."""
    requests = [req(f"r{i}", i, i + 0.125, i + 0.5) for i in range(12)]
    run_dir = write_run(tmp_path, requests=requests, events=[event(8.0, "fault", "node-a", "kind=kill")],
                        planned_requests=12)
    report = write_report(run_dir)
    (mark,) = fault_marks(report.run)
    assert np.isnan(mark.recovered)
    assert "recovery    not recovered (1 fault, none recovered)" in format_summary(report.summary)


def test_both_schedulers_write_one_overlaid_cdf(tmp_path: Path) -> None:
    """`experiment run` with both schedulers: the comparison beside the arms' directories."""
    reports = [write_report(write_run(tmp_path, scheduler=s)) for s in ("centralized", "gossip")]
    _write_arms_comparison(reports)
    out = tmp_path / "exp_compare_20250101_120000"
    assert (out / TTFT_CDF_COMPARE).read_bytes().startswith(b"\x89PNG")
    assert (out / "comparison.md").read_text().startswith("# Comparison: centralized vs gossip")


def test_node_legends_name_the_gpu(tmp_path: Path) -> None:
    spec = ExperimentSpec(nodes=(NodeGroup(count=1, gpu="a100-80gb"), NodeGroup(count=1, gpu="a10g-24gb")),
                          schedulers=("centralized",))
    samples = [node(t, f"node-{i}", 0.5, 1) for t in (0, 1) for i in (0, 1)]
    run_dir = write_run(tmp_path, nodes=samples, spec=json.loads(json.dumps(spec.to_dict())))
    fig = nodes_figure(load_run(run_dir))
    legends = [t.get_text() for ax in fig.get_axes() if ax.get_legend() for t in ax.get_legend().get_texts()]
    assert {"node-0 (a100-80gb)", "node-1 (a10g-24gb)"} <= set(legends)
    # red means a fault (rule 9): no node is drawn in it
    nodes = [ln for ax in fig.get_axes() for ln in ax.get_lines() if str(ln.get_label()).startswith("node-")]
    assert nodes and not [ln for ln in nodes if ln.get_color() in ("tab:red", "tab:green")]


def test_a_large_cluster_is_drawn_as_its_spread_not_a_line_per_node(tmp_path: Path) -> None:
    # 40 nodes: memory 0..39 % at each second, one node dead at t=1 (left out, not a zero)
    count = MAX_NODE_LINES + 24
    samples = [node(t, f"node-{i}", i / 100, 1, alive=int(t == 0 or i < count - 1)) for t in (0, 1)
               for i in range(count)]
    fig = nodes_figure(load_run(write_run(tmp_path, nodes=samples)))
    mem = fig.get_axes()[0]
    lines = {str(ln.get_label()): ln for ln in mem.get_lines()}
    assert not [name for name in lines if name.startswith("node-")]
    assert list(lines["median node"].get_ydata()) == pytest.approx([19.5, 19.0])
    assert list(lines["busiest node"].get_ydata()) == pytest.approx([39.0, 38.0])
    legend = [t.get_text() for t in mem.get_legend().get_texts()]
    assert f"p10–p90 of {count} nodes" in legend


def test_node_types_follow_the_local_cluster_naming(tmp_path: Path) -> None:
    """node_types rebuilds ExperimentSpec.node_names from the manifest: the same names and GPUs."""
    spec = ExperimentSpec()
    run = load_run(write_run(tmp_path, spec=json.loads(json.dumps(spec.to_dict()))))
    assert node_types(run.manifest) == {name: group.gpu for name, group in spec.node_names()}
    deployed = {**spec.to_dict(), "experiment": {**spec.to_dict()["experiment"], "cluster_file": "c.json"}}
    assert node_types(load_run(write_run(tmp_path / "d", spec=deployed)).manifest) == {}  # hosts: unknown


def test_a_figure_without_units_is_refused() -> None:
    fig, (ax,) = figure(1, "a title")
    ax.plot([0, 1], [0, 1])
    ax.set(xlabel=label("time", "s"), ylabel="latency")
    with pytest.raises(ValueError, match="unit"):
        check(fig)
    ax.set(ylabel=label("latency", "ms"))
    check(fig)
