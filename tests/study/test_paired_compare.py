"""`schedctl experiment compare` over several runs per arm: means, intervals, paired differences."""

from __future__ import annotations

import subprocess
from pathlib import Path

from daemons.node.testing import schedctl
from tests.report.builders import REQUESTS, scaled, write_run


def test_compare_pairs_runs_by_seed_and_names_a_winner_only_outside_zero(tmp_path: Path) -> None:
    dirs = []
    # the gossip arm is 1.5x slower on every seed's schedule; seeds differ in their own speed
    for seed, k in ((1, 1.0), (2, 1.25), (3, 0.75)):
        for scheduler, factor in (("centralized", 1.0), ("gossip", 1.5)):
            dirs.append(write_run(tmp_path / f"s{seed}", name=f"s{seed}", scheduler=scheduler,
                                  requests=scaled(REQUESTS, k * factor), seed=seed))
    out = subprocess.run([schedctl(), "experiment", "compare", *map(str, dirs), "--no-plots", "-o", str(tmp_path)],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "PAIRED BY SEED (centralized 3, gossip 3 runs)" in out.stdout
    lines = {line.split("  ")[0]: line for line in out.stdout.splitlines()}
    # TTFT is strictly lower for centralized in every pair: called apart
    assert lines["P50 TTFT (ms)"].rstrip().endswith("→ centralized")
    # identical success rates in both arms: no difference
    assert "no significant difference (3 runs)" in lines["Success Rate (%)"]


def test_one_run_per_arm_keeps_the_plain_table(tmp_path: Path) -> None:
    a = write_run(tmp_path / "a", scheduler="centralized")
    b = write_run(tmp_path / "b", scheduler="gossip")
    out = subprocess.run([schedctl(), "experiment", "compare", str(a), str(b), "--no-plots", "-o", str(tmp_path)],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and "PAIRED BY SEED" not in out.stdout
