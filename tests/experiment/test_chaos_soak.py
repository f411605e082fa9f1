"""`scripts/chaos_soak.py`, very short: faults on both arms, and the invariants it reads hold."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "scripts/chaos_soak.py"
sys.path.insert(0, str(SCRIPT.parent))

from chaos_soak import plan_faults  # noqa: E402


def test_fault_plans_are_seeded_bounded_and_never_overlap_a_target() -> None:
    import random

    a = plan_faults(random.Random(7), 600, 4, "centralized", partitions=True)
    assert a == plan_faults(random.Random(7), 600, 4, "centralized", partitions=True)
    assert len(a) >= 20
    permanent = [f for f in a if f.split(":")[1] in ("kill", "stop") and "coordinator" not in f]
    assert len(permanent) <= 1  # fewer than half of 4 nodes stay down
    assert all(0 < float(f.split(":")[0]) < 600 - 2 for f in a)
    assert "coordinator" not in " ".join(plan_faults(random.Random(7), 600, 4, "gossip", partitions=False))
    assert "partition" not in " ".join(plan_faults(random.Random(7), 600, 4, "gossip", partitions=False))


def test_a_short_soak_of_both_arms_has_no_violation(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, str(SCRIPT), "--minutes", "0.25", "--rps", "2", "--seed", "3",
                           "--keep", str(tmp_path)], capture_output=True, text=True, timeout=400)
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert proc.returncode == 0, proc.stdout[-3000:]
    for arm in ("centralized", "gossip"):
        assert result["arms"][arm]["faults"], arm
        assert sum(result["arms"][arm]["requests"].values()) >= 15, arm
        assert result["arms"][arm]["violations"] == []
