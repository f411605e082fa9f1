"""scripts/bench_migration.py --quick runs, keeps every stream whole and ends with one line of JSON."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_bench_migration_quick() -> None:
    proc = subprocess.run([sys.executable, str(ROOT / "scripts" / "bench_migration.py"), "--quick"], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
    figures = json.loads(proc.stdout.strip().splitlines()[-1])
    assert [r["context"] for r in figures["rows"]] == [100, 2000], proc.stderr[-2000:]
    assert all(r["lost_or_broken_streams"] == 0 for r in figures["rows"])
    assert all(r["stall_s"] > 0 and r["prefill_s"] > 0 for r in figures["rows"])
