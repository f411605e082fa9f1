"""`scripts/bench_gossip.py --quick` runs end to end and ends with one line of JSON."""

from __future__ import annotations

import json
import subprocess
import sys

from daemons.gossip.testing import REPO


def test_bench_quick_ends_with_json() -> None:
    proc = subprocess.run(
        [sys.executable, "scripts/bench_gossip.py", "--quick"], cwd=REPO, capture_output=True, text=True, timeout=110,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = proc.stdout.strip().splitlines()
    result = json.loads(lines[-1])
    assert {"bench", "mode", "wall_s", "real", "sim", "goals"} <= set(result)
    assert result["mode"] == "quick"
    real = result["real"]
    assert {"n", "converged", "dissemination_s", "hog", "kill9", "false_dead_total"} <= set(real)
    assert {"p50", "p99", "samples"} <= set(real["dissemination_s"])
    assert {"first_dead_s", "all_know_s", "bound_s"} <= set(real["kill9"])
    assert {"bytes_out_per_peer_s", "false_dead"} <= set(real["hog"])
    assert set(result["sim"]) == {"16", "64"}
    for sim in result["sim"].values():
        assert {"dissemination_rounds", "detection_s", "false_dead", "churn", "quiet_bytes_per_peer_s"} <= set(sim)
    assert "sim64_bandwidth" in result["goals"] and "all" in result["goals"]
    assert all(isinstance(v, bool) for v in result["goals"].values())
    assert sum(line.startswith("{") for line in lines) == 1  # exactly one JSON line, the last
