"""scripts/bench_scale.py --quick runs: memory of one node each way, a 2-node in-process cluster,
and one line of JSON holding the figures and the ratio against the HTTP pair."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.timeout(240)
def test_bench_scale_quick() -> None:
    proc = subprocess.run([sys.executable, str(ROOT / "scripts" / "bench_scale.py"), "--quick"], cwd=ROOT,
                          capture_output=True, text=True, timeout=230)
    figures = json.loads(proc.stdout.strip().splitlines()[-1])
    http, inproc = figures["memory"]
    # The HTTP pair is a node agent and its emulator; in-process, the node alone.
    assert (http["backend"], http["processes"]) == ("emulator", 2), proc.stdout
    assert (inproc["backend"], inproc["processes"]) == ("emulator-inproc", 1), proc.stdout
    assert figures["memory_ratio_http_over_inproc"]["rss"] == pytest.approx(
        http["total_rss_mib"] / inproc["total_rss_mib"])
    assert figures["memory_ratio_http_over_inproc"]["rss"] > 1.0
    (cluster,) = figures["clusters"]
    assert (cluster["nodes"], cluster["backend"], cluster["exit_code"]) == (2, "emulator-inproc", 0), proc.stdout
    assert cluster["requests"] >= 1 and cluster["success"] >= 0.99, cluster
    assert 0 < cluster["run_cpu_mean"] <= 1 and cluster["node_rss_mib"] > 0
    assert "memory per node, HTTP pair / in-process" in proc.stdout
