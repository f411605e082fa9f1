"""summarize(): every figure checked against numbers worked out by hand in builders.py."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import pytest

from cli.report import Slo, summarize
from cli.report.summary import SUMMARY, write_summary_csv
from daemons.core.errors import ConfigError
from tests.report.builders import EVENTS, RECOVERIES, REQUESTS, event, node, req, scaled, write_run

approx = pytest.approx


def test_counts_and_actions(tmp_path: Path) -> None:
    s = summarize(write_run(tmp_path))
    assert (s.experiment_name, s.scheduler_type, s.policy) == ("exp", "centralized", "least_loaded")
    assert (s.total_requests, s.successful_requests, s.failed_requests, s.timeout_count) == (6, 4, 2, 1)
    assert s.success_rate == approx(4 / 6)
    # r5 was placed (SERVE) and then timed out: the action still counts; r6 was never placed.
    assert (s.serve_count, s.cold_start_count, s.migrate_count) == (3, 1, 1)
    assert (s.planned_requests, s.record_check, s.records_ok) == (6, "", True)


def test_ttft_and_latency_from_scheduled_time(tmp_path: Path) -> None:
    s = summarize(write_run(tmp_path))
    # TTFT .125 .25 .5 1.0; linear interpolation: p95 at index 2.85, p99 at 2.97.
    assert (s.avg_ttft, s.p50_ttft) == (0.46875, 0.375)
    assert s.p95_ttft == approx(0.5 + 0.85 * 0.5)
    assert s.p99_ttft == approx(0.5 + 0.97 * 0.5)
    # Latency sorted 1.0 1.125 1.25 2.5.
    assert (s.avg_latency, s.p50_latency) == (1.46875, 1.1875)
    assert s.p95_latency == approx(1.25 + 0.85 * 1.25)
    assert s.p99_latency == approx(1.25 + 0.97 * 1.25)


def test_ttft_ignores_send_time(tmp_path: Path) -> None:
    """A sender that fell behind (sent_s late) must not shorten TTFT: open loop, no omission."""
    late = [dict(r, sent_s=float(str(r["scheduled_s"])) + 0.1) for r in REQUESTS]
    assert summarize(write_run(tmp_path, requests=late)).avg_ttft == 0.46875


def test_tpot_only_for_more_than_one_token(tmp_path: Path) -> None:
    s = summarize(write_run(tmp_path))
    # (latency - ttft) / (tokens - 1): 1/8, 1/4, 2/4; r4 (one token) is left out.
    assert s.avg_tpot == approx(0.875 / 3)
    assert s.p50_tpot == 0.25
    assert s.p95_tpot == approx(0.25 + 0.9 * 0.25)
    assert s.p99_tpot == approx(0.25 + 0.98 * 0.25)


def test_throughput_over_measured_window(tmp_path: Path) -> None:
    s = summarize(write_run(tmp_path))
    assert s.duration == 8.0  # the configured length stays the prototype's `duration`
    # First send 0 to the last completion (4.5), or the later send of the failed r6 (5).
    assert s.measured_duration == 5.0
    assert s.request_throughput == 4 / 5
    assert s.output_token_throughput == (9 + 5 + 5 + 1) / 5


def test_faster_run_has_higher_throughput_at_equal_success(tmp_path: Path) -> None:
    """Both runs serve the same requests, one in half the time: its throughput doubles
    (divided by the configured duration, the two would tie)."""
    slow = summarize(write_run(tmp_path, name="slow"))
    fast = summarize(write_run(tmp_path, name="fast", requests=scaled(REQUESTS, 0.5)))
    assert slow.success_rate == fast.success_rate and slow.duration == fast.duration
    assert fast.request_throughput == approx(2 * slow.request_throughput)
    assert fast.output_token_throughput == approx(2 * slow.output_token_throughput)


def test_window_starts_at_first_send(tmp_path: Path) -> None:
    late = [dict(r, sent_s=float(str(r["scheduled_s"])) + 0.5) for r in REQUESTS]
    assert summarize(write_run(tmp_path, requests=late)).measured_duration == 5.0  # 0.5 .. 5.5


def test_refusing_late_requests_does_not_shorten_the_window(tmp_path: Path) -> None:
    full = [req(f"r{i}", i, i + 0.25, i + 0.5, "SERVE", 2) for i in range(8)]
    refused = [*full[:4], *(req(f"r{i}", i, None, None, "", 0, "error", "no_capacity") for i in range(4, 8))]
    s_full = summarize(write_run(tmp_path, name="full", requests=full, planned_requests=8))
    s_refused = summarize(write_run(tmp_path, name="refused", requests=refused, planned_requests=8))
    assert (s_full.measured_duration, s_refused.measured_duration) == (7.5, 7.0)
    assert s_refused.request_throughput < s_full.request_throughput


def test_duration_falls_back_to_start_and_end(tmp_path: Path) -> None:
    s = summarize(write_run(tmp_path, duration_s=None, end_time="2025-01-01T12:00:10"))
    assert s.duration == 10.0


def test_goodput_with_manifest_slo(tmp_path: Path) -> None:
    s = summarize(write_run(tmp_path))
    # TTFT <= 250 and TPOT <= 250 ms: r1 (125, 125) and r2 (250, 250: the bound is inclusive).
    assert (s.slo_ttft_ms, s.slo_tpot_ms, s.slo_e2el_ms) == (250, 250, None)
    assert (s.good_requests, s.goodput) == (2, 2 / 5)


def test_goodput_flags_override_manifest(tmp_path: Path) -> None:
    run = write_run(tmp_path)
    # TTFT <= 1000: r3 still fails TPOT (500 ms); r4 has one token, so its TPOT counts as 0.
    assert summarize(run, Slo(ttft_ms=1000)).good_requests == 3
    # Adding E2EL <= 1125 on top of the manifest's SLOs leaves only r1.
    s = summarize(run, Slo(e2el_ms=1125))
    assert (s.slo_ttft_ms, s.slo_tpot_ms, s.slo_e2el_ms) == (250, 250, 1125)
    assert (s.good_requests, s.goodput) == (1, 1 / 5)


def test_no_slo_means_no_goodput(tmp_path: Path) -> None:
    s = summarize(write_run(tmp_path, slo={"ttft_ms": None, "tpot_ms": None, "e2el_ms": None}))
    assert math.isnan(s.goodput)
    assert s.good_requests == 0


def test_memory_and_queue_over_alive_samples(tmp_path: Path) -> None:
    s = summarize(write_run(tmp_path))
    # Alive utilisation .25 .5 .5 .75 1.0 (node-b's dead sample is out); p95 at index 3.8.
    assert (s.avg_memory_utilization, s.min_memory_utilization, s.max_memory_utilization) == (0.6, 0.25, 1.0)
    assert s.p50_memory_utilization == 0.5
    assert s.p95_memory_utilization == approx(0.75 + 0.8 * 0.25)
    # Alive queue depths 0 1 2 3 4 (the dead node's 9 is out).
    assert (s.avg_queue_depth, s.min_queue_depth, s.max_queue_depth, s.p50_queue_depth) == (2, 0, 4, 2)
    assert s.p95_queue_depth == approx(3.8)


def test_cluster_queue_sums_alive_nodes_per_tick(tmp_path: Path) -> None:
    s = summarize(write_run(tmp_path))
    # Ticks 0, 1, 2: 0+1, 2+3, 4 (node-b's 9 is dead).
    assert (s.avg_cluster_queue_depth, s.max_cluster_queue_depth) == (approx(10 / 3), 5)
    assert s.p95_cluster_queue_depth == approx(4 + 0.9 * 1)


def test_cluster_queue_ticks_by_node_repeat_not_by_time(tmp_path: Path) -> None:
    """The collector's rows of one tick carry slightly different times."""
    nodes = [node(0.001, "a", 0, 1), node(0.002, "b", 0, 2), node(0.999, "a", 0, 3), node(1.0, "b", 0, 4)]
    s = summarize(write_run(tmp_path, nodes=nodes))
    assert (s.avg_cluster_queue_depth, s.max_cluster_queue_depth) == (5, 7)


def test_gpu_compute_utilization_over_alive_samples(tmp_path: Path) -> None:
    nodes = [node(0, "a", 0.9, 0, gpu=0.25), node(0, "b", 0.9, 0, gpu=0.75), node(1, "a", 0.9, 0, gpu=0.5),
             node(1, "b", 0.9, 0, alive=0, gpu=0.0)]
    s = summarize(write_run(tmp_path, nodes=nodes))
    assert (s.avg_gpu_utilization, s.p50_gpu_utilization, s.max_gpu_utilization) == (0.5, 0.5, 0.75)
    # Memory is 90 % throughout: compute is its own figure, not memory under another name.
    assert s.avg_memory_utilization == approx(0.9)


def test_gpu_compute_not_measured_is_nan(tmp_path: Path) -> None:
    old_header = ["t_s", "node", "memory_used", "memory_total", "memory_utilization", "queue_depth",
                  "in_flight", "loaded_models", "alive"]
    for name, header in (("empty", None), ("absent", old_header)):
        kwargs = {} if header is None else {"node_header": header}
        s = summarize(write_run(tmp_path, name=name, **kwargs))
        assert math.isnan(s.avg_gpu_utilization) and math.isnan(s.max_gpu_utilization)


def test_cache_hit_rate_counts_only_ready_models(tmp_path: Path) -> None:
    s = summarize(write_run(tmp_path))
    assert (s.cache_hits, s.cache_hit_rate) == (2, 0.5)  # r1, r2 of r1..r4
    # Two requests for one cold model at once: one loads it, the other waits on that load.
    rows = [req("a", 0, 2.0, 2.5, "COLD_START", 3), req("b", 0, 2.0, 2.5, "SERVE_LOADING", 3),
            req("c", 3, 3.125, 3.5, "SERVE", 3), req("d", 3, None, None, "SERVE", 0, "error", "backend_died")]
    s = summarize(write_run(tmp_path, name="waited", requests=rows, planned_requests=4))
    assert (s.serve_count, s.serve_loading_count, s.cold_start_count) == (2, 1, 1)
    # Only c found its model ready; d failed, so what it found is not known.
    assert (s.cache_hits, s.cache_hit_rate) == (1, approx(1 / 3))


def test_memory_utilization_from_bytes_when_ratio_empty(tmp_path: Path) -> None:
    nodes = [dict(node(0, "n", 0.0, 0), memory_utilization="", memory_used=300, memory_total=1000)]
    assert summarize(write_run(tmp_path, nodes=nodes)).avg_memory_utilization == 0.3


def test_recovery_time(tmp_path: Path) -> None:
    s = summarize(write_run(tmp_path, recoveries=RECOVERIES))
    # recovery.csv: 4 s after the fault on node-b, 1.5 s after the one on node-a.
    assert (s.avg_recovery_time, s.recovery_count, s.fault_count) == (2.75, 2, 2)


def test_no_recovery_events_is_nan(tmp_path: Path) -> None:
    s = summarize(write_run(tmp_path, events=[], recoveries=[]))
    assert math.isnan(s.avg_recovery_time)
    assert (s.recovery_count, s.fault_count) == (0, 0)


def test_a_fault_that_did_not_recover_is_not_averaged(tmp_path: Path) -> None:
    stuck = [RECOVERIES[0], RECOVERIES[1] | {"recovery_s": ""}]
    s = summarize(write_run(tmp_path, recoveries=stuck))
    assert (s.avg_recovery_time, s.recovery_count, s.fault_count) == (4, 1, 2)


def test_recovered_events_are_no_recovery_figures(tmp_path: Path) -> None:
    """Only recovery.csv holds recovery figures: a `recovered` event's detail is not read."""
    events = [event(1, "fault", "a", "kind=kill"), event(3, "recovered", "a", "recovery_s=2")]
    s = summarize(write_run(tmp_path, events=events, recoveries=[]))
    assert (math.isnan(s.avg_recovery_time), s.recovery_count, s.fault_count) == (True, 0, 1)


def test_without_recovery_csv_the_figures_are_derived(tmp_path: Path) -> None:
    """A directory from before recovery.csv: the same figures, computed from requests and events."""
    every_second = [req(f"r{t}", t, t + 0.125, t + 0.25, tokens=2) for t in range(20)]
    down = [req(f"d{t}", t + 0.5, None, None, "SERVE", 0, "error") for t in (4, 5)]
    events = [event(4.25, "fault", "node-a", "kind=kill"), event(5, "node_dead", "node-a")]
    run = write_run(tmp_path, requests=every_second + down, events=events, planned_requests=None)
    s = summarize(run)
    # The last failure (5.5 s) leaves the trailing 10 s window at 15.5 s: back 15.5 - 4.25 s after the fault.
    assert (s.avg_recovery_time, s.recovery_count, s.fault_count) == (11.25, 1, 1)
    assert not (run / "recovery.csv").exists()  # reading writes nothing


def test_bad_recovery_value_names_the_file(tmp_path: Path) -> None:
    run = write_run(tmp_path, recoveries=[RECOVERIES[0] | {"recovery_s": "soon"}])
    with pytest.raises(ConfigError, match=r"recovery\.csv:2: column 'recovery_s' must be a number, got 'soon'"):
        summarize(run)


def test_fewer_rows_than_planned_is_reported(tmp_path: Path) -> None:
    s = summarize(write_run(tmp_path, planned_requests=8))
    assert not s.records_ok
    assert s.record_check == "6 rows recorded for 8 planned requests (2 missing)"


def test_more_rows_than_planned_and_duplicates_are_reported(tmp_path: Path) -> None:
    s = summarize(write_run(tmp_path, requests=[*REQUESTS, REQUESTS[0]]))
    assert s.duplicate_requests == 1
    assert s.record_check == ("7 rows recorded for 6 planned requests (1 more than planned); "
                              "1 duplicate request_id row(s)")


def test_unknown_planned_count_is_not_a_mismatch(tmp_path: Path) -> None:
    s = summarize(write_run(tmp_path, planned_requests=None))
    assert (s.planned_requests, s.record_check) == (None, "")


def test_empty_run_gives_nan_not_errors(tmp_path: Path) -> None:
    s = summarize(write_run(tmp_path, requests=[], nodes=[], events=[], planned_requests=0))
    assert s.total_requests == 0
    assert all(math.isnan(v) for v in (s.avg_ttft, s.p99_latency, s.avg_tpot, s.success_rate,
                                        s.avg_memory_utilization, s.p95_queue_depth))
    assert all(math.isnan(v) for v in (s.request_throughput, s.measured_duration, s.cache_hit_rate,
                                        s.avg_gpu_utilization, s.avg_cluster_queue_depth))


def test_summary_csv_has_prototype_columns_first(tmp_path: Path) -> None:
    run = write_run(tmp_path)
    path = write_summary_csv(summarize(run), run / SUMMARY)
    with path.open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 1
    prototype = ["experiment_name", "scheduler_type", "start_time", "end_time", "duration",
                 "total_requests", "successful_requests", "failed_requests",
                 "avg_ttft", "p50_ttft", "p95_ttft", "p99_ttft",
                 "avg_latency", "p50_latency", "p95_latency", "p99_latency",
                 "avg_memory_utilization", "min_memory_utilization", "max_memory_utilization",
                 "p50_memory_utilization", "p95_memory_utilization",
                 "avg_queue_depth", "min_queue_depth", "max_queue_depth", "p50_queue_depth",
                 "p95_queue_depth", "avg_recovery_time", "serve_count", "cold_start_count", "migrate_count"]
    assert list(rows[0])[: len(prototype)] == prototype
    row = rows[0]
    assert (row["avg_ttft"], row["total_requests"], row["measured_duration"], row["slo_e2el_ms"]) == (
        "0.46875", "6", "5", "")
    assert (row["cache_hit_rate"], row["serve_loading_count"], row["max_cluster_queue_depth"]) == ("0.5", "0", "5")
    assert row["avg_gpu_utilization"] == ""  # not measured: an empty cell
    assert row["p95_ttft"] == "0.925"  # 9 significant digits hide the float noise


def test_missing_directory(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such results directory"):
        summarize(tmp_path / "nope")


@pytest.mark.parametrize("name", ["requests.csv", "nodes.csv", "events.csv", "manifest.json"])
def test_missing_file_is_named(tmp_path: Path, name: str) -> None:
    run = write_run(tmp_path)
    (run / name).unlink()
    with pytest.raises(ConfigError, match=rf"{name}: missing"):
        summarize(run)


def test_missing_column_is_named(tmp_path: Path) -> None:
    run = write_run(tmp_path)
    (run / "requests.csv").write_text("request_id,scheduled_s,status\nr1,0,ok\n")
    with pytest.raises(ConfigError, match=r"requests\.csv: header lacks column\(s\) first_token_s, done_s"):
        summarize(run)


def test_bad_number_names_file_and_line(tmp_path: Path) -> None:
    bad = [*REQUESTS[:2], req("r3", 2, 2.5, 4.5, tokens=5) | {"done_s": "soon"}]
    with pytest.raises(ConfigError, match=r"requests\.csv:4: column 'done_s' must be a number, got 'soon'"):
        summarize(write_run(tmp_path, requests=bad))


def test_missing_scheduled_time_is_an_error(tmp_path: Path) -> None:
    bad = [req("r1", 0, 0.1, 0.2) | {"scheduled_s": ""}]
    with pytest.raises(ConfigError, match=r"requests\.csv:2: column 'scheduled_s'"):
        summarize(write_run(tmp_path, requests=bad))


def test_ragged_row_is_an_error(tmp_path: Path) -> None:
    run = write_run(tmp_path)
    with (run / "events.csv").open("a") as fh:
        fh.write("1,fault,a,detail,surplus\n")
    with pytest.raises(ConfigError, match=r"events\.csv:\d+: more cells than header"):
        summarize(run)


def test_bad_manifest(tmp_path: Path) -> None:
    run = write_run(tmp_path)
    (run / "manifest.json").write_text("{not json")
    with pytest.raises(ConfigError, match=r"manifest\.json: not valid JSON"):
        summarize(run)
    (run / "manifest.json").write_text(json.dumps({"name": "x", "scheduler": "gossip", "slo": {"ttft_ms": "a"}}))
    with pytest.raises(ConfigError, match=r"'slo\.ttft_ms' must be a number or null"):
        summarize(run)
    (run / "manifest.json").write_text(json.dumps({"name": "x"}))
    with pytest.raises(ConfigError, match="missing or empty 'scheduler'"):
        summarize(run)


def test_unknown_action_and_status_are_tolerated(tmp_path: Path) -> None:
    rows = [req("r1", 0, 0.125, 1.125, "FORWARD", 9), req("r2", 1, None, None, "SERVE", 0, "cancelled")]
    s = summarize(write_run(tmp_path, requests=rows, planned_requests=2))
    assert (s.serve_count, s.successful_requests, s.failed_requests) == (1, 1, 1)


def test_event_kinds_are_case_insensitive(tmp_path: Path) -> None:
    events = [dict(e, kind=str(e["kind"]).upper()) for e in EVENTS]
    assert summarize(write_run(tmp_path, events=events)).fault_count == 2
    derived = summarize(write_run(tmp_path / "derived", events=events))
    assert derived.fault_count == 2 and derived.recovery_count == 0  # both faults derived (not recovered)
