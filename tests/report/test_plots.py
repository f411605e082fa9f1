"""Plots: each file is a real, non-empty PNG; the rolling window has the right numbers."""

from __future__ import annotations

import math
from pathlib import Path

from cli.report import load_run
from cli.report.plots import (
    FaultMarks,
    action_counts,
    fault_marks,
    plot_recovery,
    rolling,
    verdict_rows,
    write_compare_plot,
    write_run_plots,
)
from tests.report.builders import event, req, write_run

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def assert_png(path: Path) -> None:
    data = path.read_bytes()
    assert data.startswith(PNG_MAGIC), path
    assert len(data) > 5_000, path  # axes, lines and labels, not a blank canvas


def test_run_plots(tmp_path: Path) -> None:
    run = load_run(write_run(tmp_path))
    paths = write_run_plots(run)
    # the builders' run has faults: the fault timeline comes last
    assert [p.name for p in paths] == ["ttft_cdf.png", "nodes.png", "actions.png", "timeline.png", "recovery.png"]
    for p in paths:
        assert p.parent == run.run_dir
        assert_png(p)


def test_plots_of_an_empty_run(tmp_path: Path) -> None:
    run = load_run(write_run(tmp_path, requests=[], nodes=[], events=[], planned_requests=0))
    for p in write_run_plots(run):
        assert p.read_bytes().startswith(PNG_MAGIC)


def test_no_fault_no_fault_timeline(tmp_path: Path) -> None:
    events = [event(3, "silent", "node-b"), event(4, "suspect", "node-b", "by=node-a")]  # verdicts, no fault
    run = load_run(write_run(tmp_path, events=events))
    assert "recovery.png" not in [p.name for p in write_run_plots(run)]
    assert not (run.run_dir / "recovery.png").exists()


# A gossip run: node-b paused at 5 s for 4 s; requests every second, r6 and r7 fail, r4 was
# in flight on node-b until 6.25 s. Baseline r0..r3: all ok, p99 TTFT 0.125 s. The trailing
# window (t − 10 s, t] holds the failure at 7 s until t = 17 s: recovered at 17 s (the forward
# window [t, t + 10 s) this replaced said 8 s, a verdict that needed the next 10 s to be known).
PAUSE_REQUESTS = [
    {**req(f"r{i}", i, i + 0.125, i + 0.5), **({"node": "node-b", "done_s": 6.25} if i == 4 else {})}
    if i not in (6, 7) else req(f"r{i}", i, None, None, status="error", error="peer_dead")
    for i in range(20)
]
PAUSE_EVENTS = [
    event(5.0, "fault", "node-b", "kind=pause;duration_s=4"),
    event(5.5, "suspect", "node-b", "by=node-a;incarnation=1;accuser=node-a"),
    event(5.625, "suspect", "node-b", "by=node-c;incarnation=1;accuser=node-a"),
    event(6.0, "suspect", "node-a", "by=node-b;incarnation=3;accuser=node-b"),  # not a faulted target
    event(7.0, "dead", "node-b", "by=node-a;incarnation=1;accuser=node-a"),
    event(8.0, "silent", "node-b", "no NodeState for 3.0 s"),
    event(9.125, "resumed", "node-b", "kind=pause;SIGCONT"),
    event(9.5, "alive", "node-b", "by=node-a;incarnation=2"),
]


def test_fault_timeline_marks_of_a_pause(tmp_path: Path) -> None:
    run = load_run(write_run(tmp_path, scheduler="gossip", requests=PAUSE_REQUESTS, events=PAUSE_EVENTS,
                             planned_requests=20))
    assert fault_marks(run) == [FaultMarks("pause:node-b", "node-b", 5.0, until_s=9.125, detected=5.5,
                                           drained=6.25, recovered=17.0, base_success=1.0, base_p99_ttft_s=0.125)]
    rows = verdict_rows(run.events, {"node-b"})
    assert {k: [e.kind for e in v] for k, v in rows.items()} == {
        "collector": ["silent"], "node-a": ["suspect", "dead", "alive"], "node-c": ["suspect"]}
    assert_png(plot_recovery(run, run.run_dir / "recovery.png"))


def test_fault_timeline_without_detection_recovery_or_baseline(tmp_path: Path) -> None:
    """Kill at 5 s, never detected, every later request fails; a second fault at 0 s has no
    baseline; a coordinator fault is seen only by a standby taking over. Nothing crashes."""
    requests = [req(f"r{i}", i, i + 0.125, i + 0.5) if i < 5 else req(f"r{i}", i, None, None, status="error")
                for i in range(12)]
    events = [event(0.0, "fault", "node-a", "kind=restart;duration_s=2"), event(5.0, "fault", "node-b", "kind=kill"),
              event(6.0, "fault", "coordinator", "kind=kill"), event(7.0, "coordinator_active", "standby-1", ""),
              event(8.0, "fault", "node-c", "kind=partition;duration_s=3"), event(10.5, "healed", "node-c", "")]
    run = load_run(write_run(tmp_path, requests=requests, events=events, planned_requests=12))
    restart, kill, coordinator, partition = fault_marks(run)
    assert restart.until_s == 2.0 and math.isnan(restart.base_success) and math.isnan(restart.recovered)
    assert partition.until_s == 10.5  # the heal, not AT + DURATION
    assert math.isnan(kill.until_s) and math.isnan(kill.detected) and math.isnan(kill.recovered)
    assert coordinator.detected == 7.0
    assert list(verdict_rows(run.events, {"node-a", "node-b", "node-c", "coordinator"})) == [
        "standby-1 on coordinator"]
    assert_png(plot_recovery(run, run.run_dir / "recovery.png"))
    empty = load_run(write_run(tmp_path / "empty", requests=[], events=events[1:2], planned_requests=0))
    assert_png(plot_recovery(empty, empty.run_dir / "recovery.png"))


def test_compare_plot(tmp_path: Path) -> None:
    runs = [(s, load_run(write_run(tmp_path, scheduler=s))) for s in ("centralized", "gossip")]
    path = write_compare_plot(runs, tmp_path / "out")
    assert path == tmp_path / "out" / "ttft_cdf_compare.png"
    assert_png(path)


def test_action_counts_split_ok_and_failed(tmp_path: Path) -> None:
    assert action_counts(load_run(write_run(tmp_path)).requests) == {
        "SERVE": (2, 1), "SERVE_LOADING": (0, 0), "COLD_START": (1, 0), "MIGRATE": (1, 0), "unplaced": (0, 1)}


def test_rolling_window(tmp_path: Path) -> None:
    t, p50, p99, success = rolling(load_run(write_run(tmp_path)).requests, window_s=2.0, step_s=1.0)
    # Requests scheduled at 0..5; the window (t-2, t] at t=1 holds r1 and r2, both ok.
    assert list(t) == [1.0, 2.0, 3.0, 4.0, 5.0]
    assert (p50[0], success[0]) == (187.5, 100.0)
    # At t=5: r5 (timeout) and r6 (error) only, so no TTFT and 0 % success.
    assert math.isnan(p50[4]) and math.isnan(p99[4]) and success[4] == 0.0

