"""scripts/bench_coordinator.py --quick runs and ends with one line of JSON holding the verdicts."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.timeout(300)  # two coordinator runs (CURVE off and on) on a shared 2-core machine
def test_quick_benchmark_ends_with_one_json_line() -> None:
    out = subprocess.run([sys.executable, str(ROOT / "scripts" / "bench_coordinator.py"), "--quick"],
                         capture_output=True, text=True, timeout=240, cwd=ROOT)
    assert out.returncode == 0, out.stderr[-2000:]
    lines = out.stdout.strip().splitlines()
    figures = json.loads(lines[-1])
    assert not any(line.lstrip().startswith("{") for line in lines[:-1])
    assert figures["nodes"] == 100 and figures["placements"] == figures["requests"] == 5000
    assert figures["mismatched"] == 0 and figures["errors"] == 0
    assert figures["coordinator_decisions_per_s"] > 0 and figures["echo_msgs_per_s"] > 0
    # --quick measures the echo + coordinator pair once; each server's CPU per reply is measured
    assert figures["rounds"] == 1 and figures["throughput_ratios"] == [figures["throughput_ratio"]]
    assert figures["coordinator_cpu_us_per_decision"] > 0 and figures["echo_cpu_us_per_msg"] >= 0
    for verdict in ("throughput_goal_met", "ttft_goal_met"):
        assert isinstance(figures[verdict], bool)
    assert figures["ttft_overhead_method"] in ("ttft_via_coordinator_minus_direct",
                                               "schedule_round_trip_light_load")
    assert "throughput ratio" in out.stdout
    # The same decisions with CURVE on, in the same run: every request answered, the cost printed.
    assert figures["curve_replies"] == figures["curve_requests"] == 5000
    assert isinstance(figures["curve_cost_us_per_decision"], float) and "CURVE on (same run)" in out.stdout


@pytest.mark.timeout(300)
def test_metrics_switch_measures_the_endpoint_on_and_off() -> None:
    out = subprocess.run([sys.executable, str(ROOT / "scripts" / "bench_coordinator.py"), "--quick", "--no-node",
                          "--no-curve", "--metrics", "--metrics-rounds", "1", "--requests", "2000",
                          "--latency-requests", "100"], capture_output=True, text=True, timeout=240, cwd=ROOT)
    assert out.returncode == 0, out.stderr[-2000:]
    figures = json.loads(out.stdout.strip().splitlines()[-1])
    assert figures["metrics_off_decisions_per_s"] > 0 and figures["metrics_on_decisions_per_s"] > 0
    assert isinstance(figures["metrics_goal_met"], bool) and "metrics on vs off" in out.stdout
    # the coordinator with metrics on counted every placement it answered: the 2000 pipelined, the
    # latency run's 100, and each of the two runs' warm-up request
    assert figures["metrics_decisions_counted"] == figures["metrics_placements_seen"] + 100 + 2 == 2102
    assert 0 < figures["cost_metrics_us"] < figures["cost_policy_us"]


def test_the_in_process_profile_answers_every_request_and_ends_with_json() -> None:
    out = subprocess.run([sys.executable, str(ROOT / "scripts" / "profile_coordinator.py"), "--requests", "2000"],
                         capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert out.returncode == 0, out.stderr[-2000:]
    figures = json.loads(out.stdout.strip().splitlines()[-1])
    assert sum(figures["actions"].values()) == figures["requests"] == 2000
    assert set(figures["actions"]) <= {"SERVE", "COLD_START"}  # every request placed, none refused
    for stage in ("decode_schedule_us", "policy_us", "bookkeeping_us", "encode_placement_us", "decode_state_us"):
        assert 0 < figures[stage] < figures["handler_us_per_decision"] * 100
    assert 0 < figures["handler_us_least_chunk"] < figures["handler_us_per_decision"] * 100


def test_the_serving_profile_times_each_step_of_the_real_loop() -> None:
    out = subprocess.run([sys.executable, str(ROOT / "scripts" / "profile_coordinator.py"), "--requests", "500",
                          "--serving", "--serving-requests", "2000"],
                         capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert out.returncode == 0, out.stderr[-2000:]
    figures = json.loads(out.stdout.strip().splitlines()[-1])
    assert figures["serving_requests"] >= 2000  # the pipelined requests (and the client's warm-up one)
    for step in ("recv_request_us", "handle_request_us", "send_answers_us", "serving_main_thread_cpu_us"):
        assert 0 < figures[step] < figures["serving_wall_us"], step
    assert figures["serving_states"] > 0 and figures["serving_wakeups"] > 0
    assert "serving loop" in out.stdout
