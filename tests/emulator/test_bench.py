"""scripts/bench_emulator.py --quick runs by itself and ends with one line of JSON."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "bench_emulator.py"


def test_quick_benchmark_ends_with_json() -> None:
    proc = subprocess.run([sys.executable, str(SCRIPT), "--quick"], capture_output=True, text=True, timeout=90)
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = proc.stdout.strip().splitlines()
    result = json.loads(lines[-1])
    assert len(lines) > 3  # the readable table comes first
    assert {"model_id", "gpu", "batches", "sustain", "max_sustained_streams"} <= set(result)
    assert [b["batch"] for b in result["batches"]] == [1, 16]
    for row in result["batches"]:
        for key in ("ttft_ratio", "tpot_ratio", "ttft_measured_ms", "ttft_predicted_ms"):
            assert isinstance(row[key], float), key
        assert row["tpot_ratio"] > 0.5  # loose: hard targets belong to the benchmark, not CI
    assert all("tpot_ratio" in row for row in result["sustain"])
