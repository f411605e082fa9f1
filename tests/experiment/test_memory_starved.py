"""A memory-starved cluster at a load it can drain: every request is served, none refused,
in both arms (the admission queues of the coordinator and of the gossip peers)."""

from __future__ import annotations

import csv
import subprocess
from pathlib import Path

import pytest

from daemons.node.testing import schedctl

# One 24 GB GPU, two models that cannot share it (Llama-2-7b takes 23.6 GiB with this KV
# budget, Llama-3.1-8B 20 GiB), equally popular: every switch of model must wait for the
# other to go idle. No silence retries, so every refusal would be a real one: the unchanged
# code refused 7 of these 20 requests with no_nodes in each arm.
STARVED = """
[experiment]
name = "starved"
timeout_s = 60
attempt_timeout_s = 0
[workload]
duration_s = 20
rps = 1.0
cv = 1.0
seed = 5
popularity = "uniform"
models = ["meta-llama/Llama-2-7b-hf", "meta-llama/Llama-3.1-8B-Instruct"]
prompt_tokens = "lognormal:mean=256,median=200,max=800"
output_tokens = "lognormal:mean=64,median=48,max=200"
[[nodes]]
count = 1
gpu = "a10g-24gb"
models = ["meta-llama/Llama-2-7b-hf", "meta-llama/Llama-3.1-8B-Instruct"]
"""


@pytest.mark.slow
def test_memory_starved_cluster_serves_every_request_in_both_arms(tmp_path: Path) -> None:
    spec = tmp_path / "starved.toml"
    spec.write_text(STARVED)
    out = subprocess.run([schedctl(), "experiment", "run", "--config", str(spec), "--results-dir",
                          str(tmp_path / "results")], cwd=tmp_path, capture_output=True, text=True, timeout=400)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    runs = {d.name.split("_")[1]: d for d in (tmp_path / "results").iterdir()}
    assert set(runs) == {"centralized", "gossip", "compare"}  # compare: the arms side by side
    del runs["compare"]
    for arm, run_dir in runs.items():
        with open(run_dir / "requests.csv", newline="") as fh:
            rows = list(csv.DictReader(fh))
        assert len(rows) == 20
        failed = [(r["request_id"], r["error"], r["error_detail"]) for r in rows if r["status"] != "ok"]
        assert not failed, f"{arm}: {failed}"
        # it really was starved: both models were loaded (each evicting the other)
        assert {r["model"] for r in rows if r["action"] == "COLD_START"} == {
            "meta-llama/Llama-2-7b-hf", "meta-llama/Llama-3.1-8B-Instruct"}, arm


@pytest.mark.parametrize("limit", ["0", "-5"])
def test_a_queue_limit_below_one_is_one_clear_line(tmp_path: Path, limit: str) -> None:
    out = subprocess.run([schedctl(), "experiment", "run", "--queue-limit", limit, "--duration", "1",
                          "--results-dir", str(tmp_path / "r")], cwd=tmp_path, capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 2, out.stdout + out.stderr
    (line,) = out.stderr.strip().splitlines()
    assert line.startswith("error: [experiment] queue_limit must be a whole number >= 1") and f"got {limit}" in line
    assert not (tmp_path / "r").exists()
