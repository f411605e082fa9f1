"""`scripts/bench_sim.py --quick` runs end to end and ends with one line of JSON."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_bench_sim_quick_prints_its_figures() -> None:
    out = subprocess.run([sys.executable, "scripts/bench_sim.py", "--quick"], cwd=REPO, capture_output=True,
                         text=True, timeout=110)
    assert out.returncode == 0, out.stderr[-2000:]
    figures = json.loads(out.stdout.strip().splitlines()[-1])
    runs = {r["arm"]: r for r in figures["runs"]}
    assert set(runs) == {"centralized", "gossip"}
    for run in runs.values():
        assert run["ok"] == run["requests"] > 0 and not run["cut"]
        assert run["wall_us_per_request"] > 0 and run["speedup_vs_real"] > 1
    assert runs["gossip"]["wall_us_per_gossip_message"] > 0 and runs["centralized"]["coordinator_busy"] > 0
