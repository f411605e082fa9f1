"""Priority classes end to end on the embedded cluster (real processes on loopback).

A two-class workload at a load where the batch class alone saturates the one node
(max_running 1: the node serves one request at a time, the rest wait in its slot
queue): with priority queues, interactive requests overtake the waiting batch ones;
with --no-priority they wait in arrival order. Aging keeps batch from starving: every
batch request completes in both arms. Then `--admission slo` sheds in both schedulers.
"""

from __future__ import annotations

import csv
import json
import subprocess
from pathlib import Path

import numpy as np
import pytest

from daemons.node.testing import schedctl

# One node, one model loaded from GPU memory in a blink; batch: ~0.3 s of decoding each
# at 0.7 x 6 = 4.2 req/s, more than the node's ~3.5 req/s; interactive: short requests.
EXPERIMENT = """
[experiment]
name = "classes"
scheduler = "centralized"
policy = "least-loaded"
max_running = 1
timeout_s = 60
[experiment.slo]
ttft_ms = 2000
[workload]
duration_s = 8
rps = 6
cv = 1
seed = 3
models = ["facebook/opt-125m"]
prompt_tokens = "uniform:200-300"
output_tokens = "uniform:100-150"
[[workload.classes]]
name = "interactive"
share = 0.3
ttft_ms = 500
prompt_tokens = "uniform:20-40"
output_tokens = "uniform:8-16"
[[workload.classes]]
name = "batch"
share = 0.7
[[nodes]]
count = 1
gpu = "a100-80gb"
checkpoint_tier = "gpu"
init_s = 0.1
models = ["facebook/opt-125m"]
"""


def run(tmp_path: Path, name: str, *flags: str) -> tuple[list[Path], str]:
    config = tmp_path / "classes.toml"
    config.write_text(EXPERIMENT)
    out = subprocess.run([schedctl(), "experiment", "run", "--config", str(config), "--name", name,
                          "--results-dir", str(tmp_path / "results"), *flags],
                         cwd=tmp_path, capture_output=True, text=True, timeout=240)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    # the arms, not the NAME_compare_STAMP directory beside them
    arms = [d for d in (tmp_path / "results").glob(f"{name}_*") if (d / "manifest.json").is_file()]
    return sorted(arms), out.stdout


def rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def ttft_ms(requests: list[dict[str, str]], klass: str) -> np.ndarray:
    return np.array([1000 * float(r["ttft_s"]) for r in requests if r["class"] == klass and r["status"] == "ok"])


@pytest.mark.slow
@pytest.mark.timeout(600)  # two whole experiment runs: past the suite's 120 s default on a loaded machine
def test_priority_queues_cut_interactive_ttft_and_batch_still_completes(tmp_path: Path) -> None:
    (with_priority,), text = run(tmp_path, "prio")
    (without,), _ = run(tmp_path, "fifo", "--no-priority")
    assert (with_priority / "schedule.csv").read_text() == (without / "schedule.csv").read_text()
    figures = {}
    for arm, run_dir in (("priority", with_priority), ("fifo", without)):
        requests = rows(run_dir / "requests.csv")
        batch = [r for r in requests if r["class"] == "batch"]
        assert len(batch) >= 20 and all(r["status"] == "ok" for r in batch), arm  # aging: none starves
        # they waited in the node's slot queue (max_running 1), as the node's own timings say
        assert max(json.loads(r["server_timings"])["slot_wait_s"] for r in batch) > 1.0, arm
        interactive = ttft_ms(requests, "interactive")
        assert len(interactive) == sum(r["class"] == "interactive" for r in requests) >= 5
        (summary,) = rows(run_dir / "summary.csv")
        assert float(summary["interactive_ttft_p99"]) * 1000 == pytest.approx(np.percentile(interactive, 99), rel=1e-4)
        assert int(summary["batch_successful"]) == len(batch)
        figures[arm] = (np.percentile(interactive, 50), np.percentile(interactive, 99),
                        np.percentile(ttft_ms(requests, "batch"), 99))
    print("interactive TTFT p50/p99 and batch p99 (ms):", figures)  # the figures, with -s
    (p50, p99, _), (fifo_p50, fifo_p99, _) = figures["priority"], figures["fifo"]
    assert p99 < fifo_p99 and p50 < fifo_p50 / 3, figures
    assert "interactive" in text and "SLO met" in text  # the report's per-class block


@pytest.mark.slow
@pytest.mark.timeout(600)  # two whole experiment runs: past the suite's 120 s default on a loaded machine
def test_slo_admission_sheds_in_both_schedulers(tmp_path: Path) -> None:
    # Batch with a TTFT objective no queue can meet: every batch request that would wait is shed.
    run_dirs, text = run(tmp_path, "shed", "--scheduler", "both", "--admission", "slo", "--duration", "4",
                         "--classes", "interactive:0.3:ttft=60000,batch:0.7:ttft=1")
    assert [d.name.split("_")[1] for d in run_dirs] == ["centralized", "gossip"]
    for run_dir in run_dirs:
        requests = rows(run_dir / "requests.csv")
        shed = [r for r in requests if r["status"] == "shed"]
        assert shed and all(r["class"] == "batch" and r["error"] == "shed" for r in shed), run_dir.name
        assert all(r["status"] == "ok" for r in requests if r["class"] == "interactive"), run_dir.name
        (summary,) = rows(run_dir / "summary.csv")
        assert int(summary["shed_count"]) == len(shed) == int(summary["batch_shed"])
    assert "shed" in text
