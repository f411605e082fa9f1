"""`schedctl experiment run --engine sim`: the same results directory, marked simulated; the
faults write the events a real run writes; bad input is one line naming the fix."""

from __future__ import annotations

import csv
import json
import subprocess
from pathlib import Path

import pytest

from cli.experiment.simrun import sim_config
from cli.experiment.spec import from_dict
from daemons.coordinator.testing import schedctl
from daemons.core.errors import ConfigError
from daemons.loadgen.schedule import read_schedule_csv

FILES = ("schedule.csv", "requests.csv", "nodes.csv", "events.csv", "manifest.json", "recovery.csv",
         "summary.csv", "ttft_cdf.png")
FAULTS = ["5:kill:node-1", "8:pause:node-0:5", "10:partition:node-2:5"]


def run(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([schedctl(), "experiment", "run", "--engine", "sim", "--results-dir",
                           str(tmp_path / "results"), *args], cwd=tmp_path, capture_output=True, text=True,
                          timeout=120)


def events_of(run_dir: Path) -> list[dict[str, str]]:
    with open(run_dir / "events.csv", newline="") as fh:
        return list(csv.DictReader(fh))


def first(events: list[dict[str, str]], kind: str, target: str) -> float:
    return min(float(e["t_s"]) for e in events if e["kind"] == kind and e["target"] == target)


def observers(events: list[dict[str, str]], kind: str, target: str) -> set[str]:
    return {e["detail"].split(";")[0].removeprefix("by=") for e in events
            if e["kind"] == kind and e["target"] == target}


@pytest.fixture(scope="module")
def both_arms(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """One simulated run of both arms, 4 nodes, with a kill, a pause and a partition."""
    tmp = tmp_path_factory.mktemp("sim")
    out = run(tmp, "--duration", "20", "--rps", "3", "--nodes", "4", *(f"--fault={f}" for f in FAULTS))
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert "SIMULATED" in out.stdout or "comparison" in out.stdout
    dirs = {p.name.split("_")[2]: p for p in (tmp / "results").iterdir() if "_compare_" not in p.name}
    assert set(dirs) == {"centralized", "gossip"}
    return dirs


@pytest.mark.parametrize("arm", ["centralized", "gossip"])
def test_a_simulated_arm_writes_a_real_arms_results_directory(both_arms: dict[str, Path], arm: str) -> None:
    run_dir = both_arms[arm]
    for name in FILES:
        assert (run_dir / name).stat().st_size > 0, name
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["engine"] == "sim" and manifest["simulated"] is True
    assert manifest["spec"]["experiment"]["engine"] == "sim"
    assert manifest["sim"]["wall_s"] > 0 and manifest["sim"]["virtual_s"] > 20
    planned = read_schedule_csv(run_dir / "schedule.csv")
    with open(run_dir / "requests.csv", newline="") as fh:
        recorded = list(csv.DictReader(fh))
    assert sorted(r["request_id"] for r in recorded) == sorted(p.request_id for p in planned)
    assert all(r["status"] in ("ok", "error", "timeout") for r in recorded)  # exactly one outcome each
    with open(run_dir / "summary.csv", newline="") as fh:
        (summary,) = list(csv.DictReader(fh))
    assert summary["engine"] == "sim"


def test_both_arms_replay_the_same_schedule(both_arms: dict[str, Path]) -> None:
    a, b = (read_schedule_csv(both_arms[arm] / "schedule.csv") for arm in ("centralized", "gossip"))
    assert a == b


def test_centralized_faults_write_the_real_engines_events(both_arms: dict[str, Path]) -> None:
    events = events_of(both_arms["centralized"])
    kinds = {e["kind"] for e in events}
    assert {"fault", "node_joined", "node_dead", "silent", "heard_again", "node_recovered", "resumed",
            "healed"} <= kinds, kinds
    fault_details = [(e["target"], e["detail"]) for e in events if e["kind"] == "fault"]
    assert fault_details == [("node-1", "kind=kill"), ("node-0", "kind=pause;duration_s=5"),
                             ("node-2", "kind=partition;duration_s=5")]
    # as tests/experiment/test_faults.py asserts of a real pause: dead, resumed, back
    # silent for dead_after_s (3 s) since its last state, at most one publish interval (1 s) before the pause
    assert 2.0 <= first(events, "node_dead", "node-0") - first(events, "fault", "node-0") <= 3.2
    assert first(events, "resumed", "node-0") == pytest.approx(13.0)
    assert first(events, "node_recovered", "node-0") > first(events, "node_dead", "node-0")
    assert first(events, "heard_again", "node-0") > first(events, "silent", "node-0")
    assert first(events, "healed", "node-2") == pytest.approx(15.0)
    assert not [e for e in events if e["kind"] == "node_recovered" and e["target"] == "node-1"]  # killed: stays


def test_gossip_faults_write_each_peers_verdicts(both_arms: dict[str, Path]) -> None:
    events = events_of(both_arms["gossip"])
    kinds = {e["kind"] for e in events}
    assert {"fault", "suspect", "dead", "alive", "silent", "heard_again", "resumed", "healed"} <= kinds, kinds
    # the killed peer: every survivor reports it suspect, then dead (test_faults.py's gossip kill)
    assert observers(events, "suspect", "node-1") >= {"node-3"}
    assert first(events, "dead", "node-1") > first(events, "suspect", "node-1")
    # the pause past its suspicion timeout: dead, then alive again after SIGCONT... or suspect only,
    # then alive: either way an `alive` verdict about node-0 follows its resume
    assert first(events, "alive", "node-0") >= first(events, "resumed", "node-0") - 0.01


@pytest.mark.parametrize(("args", "says"), [
    (["--nodes", "20000"], "over the simulator's cap of 10000"),
    (["--cluster", "cluster.toml"], "--cluster"),
    (["--watch"], "--watch"),
])
def test_real_engine_options_with_sim_are_one_clear_line(tmp_path: Path, args: list[str], says: str) -> None:
    out = run(tmp_path, *args)
    assert out.returncode == 2, out.stdout + out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and says in lines[0] and "Traceback" not in out.stderr, out.stderr
    assert not (tmp_path / "results").exists()


def test_sparrow_runs_on_the_simulator_in_both_peer_arms(tmp_path: Path) -> None:
    # It was refused with --engine sim; its probes are simulated now (test_sim_sparrow.py),
    # also to a peer killed mid-run (its probes are lost: those rounds fall back).
    out = run(tmp_path, "--scheduler", "gossip,hybrid", "--gossip-policy", "sparrow", "--duration", "10",
              "--rps", "3", "--nodes", "4", "--fault=5:kill:node-1")
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    dirs = {p.name.split("_")[2]: p for p in (tmp_path / "results").iterdir() if "_compare_" not in p.name}
    assert set(dirs) == {"gossip", "hybrid"}
    for arm, run_dir in dirs.items():
        manifest = json.loads((run_dir / "manifest.json").read_text())
        assert manifest["spec"]["experiment"]["gossip_policy"] == "sparrow"
        assert manifest["sim"]["probe_rounds"] > 0, arm
        planned = read_schedule_csv(run_dir / "schedule.csv")
        with open(run_dir / "requests.csv", newline="") as fh:
            recorded = list(csv.DictReader(fh))
        assert sorted(r["request_id"] for r in recorded) == sorted(p.request_id for p in planned), arm
        assert all(r["status"] in ("ok", "error", "timeout") for r in recorded), arm  # one outcome each
        # decided_by as a real run writes it: empty in gossip, the deciding path in hybrid
        paths = {r["decided_by"] for r in recorded if r["status"] == "ok"}
        assert paths == {""} if arm == "gossip" else paths <= {"peer", "coordinator", "peer-degraded"}, (arm, paths)


def test_a_sim_only_option_with_the_real_engine_is_one_clear_line(tmp_path: Path) -> None:
    out = subprocess.run([schedctl(), "experiment", "run", "--decision-cost-us", "50"], cwd=tmp_path,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 2 and "--engine sim" in out.stderr and len(out.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("scheduler", ["centralized", "gossip", "hybrid"])
def test_learned_affinity_and_prewarming_are_simulated_on_every_arm(scheduler: str) -> None:
    # They were refused with --engine sim; the simulator runs them now (tests/sim/test_sim_learning.py).
    spec = from_dict({"experiment": {"engine": "sim", "scheduler": scheduler, "policy": "startup-optimal",
                                     "affinity": "learned", "prewarm": "on", "forecast_horizon_s": 7.0}}, "t")
    config = sim_config(spec, scheduler)
    assert config.affinity == "learned" and config.prewarm.enabled and config.prewarm.forecast.horizon_s == 7.0
    with pytest.raises(ConfigError, match=r"--insecure .* real engine only"):  # what is not simulated still is not
        from_dict({"experiment": {"engine": "sim", "scheduler": scheduler, "affinity": "learned",
                                  "insecure": True}}, "t")


def test_a_hybrid_arm_checks_both_of_its_policies_against_learned_affinity() -> None:
    with pytest.raises(ConfigError, match="policy 'round-robin' cannot use --affinity learned"):
        from_dict({"experiment": {"scheduler": "hybrid", "policy": "round-robin", "affinity": "learned"}}, "t")
