"""`schedctl experiment run --cluster FILE`: drive daemons that are already running."""

from __future__ import annotations

import csv
import re
import subprocess
from contextlib import AbstractContextManager
from pathlib import Path

import pytest
import tomli_w

from cli.experiment.remote import RemoteCluster
from daemons.coordinator.testing import running_coordinator
from daemons.core.errors import ConfigError
from daemons.node.testing import NodeProcess, free_endpoint, running_node, schedctl

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


def test_a_coordinator_that_never_heard_from_a_node_is_one_clear_error(tmp_path: Path) -> None:
    """A deployed node that does not publish to the coordinator: the run stops before its first
    request (each would be refused as an unknown model), naming how many nodes it heard from."""
    with running_coordinator(tmp_path) as coordinator, running_node(tmp_path, "gpu-1", models=[SMALL]) as node:
        cluster = tmp_path / "cluster.toml"
        cluster.write_text(tomli_w.dumps({
            "cluster": {"scheduler": "centralized"},
            "coordinator": {"endpoint": coordinator.bind, "events_endpoint": coordinator.events_bind},
            "nodes": [{"name": "gpu-1", "endpoint": node.bind}]}))
        out = subprocess.run([schedctl(), "experiment", "run", "--cluster", str(cluster), "--duration", "1",
                              "--results-dir", str(tmp_path / "r")], capture_output=True, text=True, timeout=90)
    assert out.returncode == 2 and "Traceback" not in out.stderr, out.stderr[-2000:]
    assert "has heard from 0 of the 1 nodes" in out.stderr and "publishing to its state_bind" in out.stderr
    assert not list((tmp_path / "r").glob("*/requests.csv"))  # stopped before the first request


def test_an_experiment_drives_a_deployed_hybrid_cluster(tmp_path: Path) -> None:
    """Two hybrid peers and their coordinator, already running: requests enter at the peers, the
    first cold start of each model is the coordinator's, and the run records who decided."""
    gossip = {name: free_endpoint() for name in ("gpu-1", "gpu-2")}
    with running_coordinator(tmp_path, model_map_every=0.5) as coordinator:
        def peer(name: str, other: str) -> AbstractContextManager[NodeProcess]:
            return running_node(tmp_path, name, models=[SMALL], checkpoint_tier="gpu", scheduler="hybrid",
                                coordinator=coordinator.bind, coordinator_events=coordinator.events_bind,
                                publish_to=[coordinator.state_bind], gossip_bind=gossip[name], seeds=[gossip[other]],
                                gossip_preset="ci")
        with peer("gpu-1", "gpu-2") as one, peer("gpu-2", "gpu-1") as two:
            cluster = tmp_path / "cluster.toml"
            cluster.write_text(tomli_w.dumps({
                "cluster": {"name": "test", "scheduler": "hybrid"},
                "coordinator": {"endpoint": coordinator.bind, "events_endpoint": coordinator.events_bind},
                "nodes": [{"name": "gpu-1", "endpoint": one.bind}, {"name": "gpu-2", "endpoint": two.bind}]}))
            exp = tmp_path / "exp.toml"
            exp.write_text(tomli_w.dumps({"workload": {"models": [SMALL], "duration_s": 4, "rps": 2, "cv": 1}}))
            run = [schedctl(), "experiment", "run", "--cluster", str(cluster), "-c", str(exp), "--name", "deployed",
                   "--results-dir", str(tmp_path / "r")]
            out = subprocess.run(run, capture_output=True, text=True, timeout=60, cwd=tmp_path)
            assert out.returncode == 2 and "runs hybrid scheduling: pass --scheduler hybrid" in out.stderr
            out = subprocess.run([*run, "--scheduler", "hybrid"], capture_output=True, text=True, timeout=120,
                                 cwd=tmp_path)
            assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
            (run_dir,) = (tmp_path / "r").iterdir()
            assert run_dir.name.startswith("deployed_hybrid_")
            rows = list(csv.DictReader((run_dir / "requests.csv").read_text().splitlines()))
            assert len(rows) == 8 and all(r["status"] == "ok" for r in rows)
            decided = [r["decided_by"] for r in rows]
            assert "coordinator" in decided and set(decided) <= {"peer", "coordinator"}, decided  # never degraded
            assert all(p.proc.poll() is None for p in (one, two, coordinator))  # left running


@pytest.mark.parametrize(("tables", "says"), [
    ({"cluster": {"scheduler": "hybird"}}, "[cluster] scheduler 'hybird' is unknown; use centralized, gossip"),
    ({"cluster": {"scheduler": "hybrid"}}, "a hybrid cluster needs [coordinator] endpoint"),
    ({"cluster": {"scheduler": "hybrid"}, "coordinator": {"endpoint": "tcp://10.0.0.1:5555"}},
     "a hybrid cluster needs [coordinator] events_endpoint"),
])
def test_a_cluster_file_names_a_scheduler_it_can_run(tmp_path: Path, tables: dict[str, object], says: str) -> None:
    path = tmp_path / "cluster.toml"
    path.write_text(tomli_w.dumps({**tables, "nodes": [{"name": "gpu-1", "endpoint": "tcp://10.0.0.2:5560"}]}))
    with pytest.raises(ConfigError, match=re.escape(says)):
        RemoteCluster.load(path)
