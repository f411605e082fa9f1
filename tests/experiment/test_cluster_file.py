"""`schedctl experiment run --cluster FILE`: drive daemons that are already running."""

from __future__ import annotations

import csv
import subprocess
from pathlib import Path

import tomli_w

from daemons.coordinator.testing import running_coordinator
from daemons.node.testing import running_node, schedctl

SMALL = "facebook/opt-125m"


def test_an_experiment_drives_an_already_deployed_cluster(tmp_path: Path) -> None:
    with running_coordinator(tmp_path) as coordinator, \
            running_node(tmp_path, "gpu-1", models=[SMALL], checkpoint_tier="gpu",
                         publish_to=[coordinator.state_bind]) as node:
        cluster = tmp_path / "cluster.toml"
        cluster.write_text(tomli_w.dumps({
            "cluster": {"name": "test", "scheduler": "centralized"},
            "coordinator": {"endpoint": coordinator.bind, "events_endpoint": coordinator.events_bind},
            "nodes": [{"name": "gpu-1", "endpoint": node.bind}]}))
        exp = tmp_path / "exp.toml"
        exp.write_text(tomli_w.dumps({"workload": {"models": [SMALL], "duration_s": 4, "rps": 2, "cv": 1}}))
        out = subprocess.run([schedctl(), "experiment", "run", "--cluster", str(cluster), "-c", str(exp),
                              "--name", "deployed", "--results-dir", str(tmp_path / "r")],
                             capture_output=True, text=True, timeout=120, cwd=tmp_path)
        assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
        (run_dir,) = (tmp_path / "r").iterdir()
        assert run_dir.name.startswith("deployed_centralized_")
        rows = list(csv.DictReader((run_dir / "requests.csv").read_text().splitlines()))
        assert len(rows) == 8 and all(r["status"] == "ok" and r["node"] == "gpu-1" for r in rows)
        nodes = list(csv.DictReader((run_dir / "nodes.csv").read_text().splitlines()))
        assert nodes and {n["node"] for n in nodes} == {"gpu-1"}  # polled, not published to us
        assert node.proc.poll() is None and coordinator.proc.poll() is None  # left running


def test_an_unreachable_cluster_is_one_clear_error(tmp_path: Path) -> None:
    cluster = tmp_path / "cluster.toml"
    cluster.write_text(tomli_w.dumps({
        "cluster": {"scheduler": "centralized"}, "coordinator": {"endpoint": "tcp://127.0.0.1:9"},
        "nodes": [{"name": "gpu-1", "endpoint": "tcp://127.0.0.1:9"}]}))
    out = subprocess.run([schedctl(), "experiment", "run", "--cluster", str(cluster), "--duration", "1",
                          "--results-dir", str(tmp_path / "r")], capture_output=True, text=True, timeout=60)
    assert out.returncode == 2 and "did not answer" in out.stderr and "Traceback" not in out.stderr
