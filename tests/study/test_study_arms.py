"""`schedctl study run PRESET --arms ...`: any preset with a chosen set of schedulers. The option's
validation (one line, exit 2), the arms and hypotheses each preset builds from it, and a
three-arm --quick study end to end with real processes (every arm on the identical schedule,
every pair of arms compared, three bars per plot)."""

from __future__ import annotations

import csv
import json
import subprocess
from pathlib import Path

import pytest

from cli.study import presets
from cli.study.estimate import study_seconds
from cli.study.spec import from_dict
from daemons.core.errors import ConfigError
from daemons.node.testing import schedctl

THREE = ("centralized", "gossip", "hybrid")


def study_cli(args: list[str], cwd: Path, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([schedctl(), "study", *args], cwd=cwd, capture_output=True, text=True, timeout=timeout)


@pytest.mark.parametrize(("value", "arms"), [
    ("centralized,gossip,hybrid", THREE), ("all", THREE), ("both", ("centralized", "gossip")),
    ("hybrid", ("hybrid",)), (" gossip , hybrid ", ("gossip", "hybrid")),
])
def test_arms_accepts_what_scheduler_accepts(value: str, arms: tuple[str, ...]) -> None:
    assert presets.parse_arms(value) == arms


@pytest.mark.parametrize(("value", "says"), [
    ("centralized,hybird", "--arms 'hybird' unknown; use centralized, gossip, hybrid"),
    ("gossip,gossip", "--arms list gossip,gossip names an arm twice"),
    ("", "--arms '' unknown"),
])
def test_a_bad_arm_set_is_refused(value: str, says: str) -> None:
    with pytest.raises(ConfigError, match=says):
        presets.parse_arms(value)


def test_every_preset_runs_any_arm_set() -> None:
    for name in presets.PRESETS:  # scaling-sim too: the simulator runs the hybrid arm
        for arms in (THREE, ("hybrid",), ("gossip", "hybrid")):
            study = from_dict(presets.preset(name, quick=True, arms=arms), name)
            point = study.points()[0]
            schedulers = [study.experiment(a, point, study.seed).schedulers[0] for a in study.arms]
            assert set(schedulers) == set(arms)
            names = {a.name for a in study.arms}
            assert all({h.arm, h.other} <= names for h in study.hypotheses)  # none names a missing arm
    default = from_dict(presets.preset("performance"), "performance")
    assert [a.name for a in default.arms] == ["centralized", "gossip"]  # unchanged without --arms


def test_a_simulated_preset_takes_the_hybrid_arm_on_the_simulated_engine() -> None:
    study = from_dict(presets.preset("scaling-sim", quick=True, arms=THREE), "scaling-sim")
    hybrid = study.experiment(study.arms[-1], study.points()[0], study.seed)
    assert hybrid.schedulers == ("hybrid",) and hybrid.engine == "sim"
    two = from_dict(presets.preset("scaling-sim", quick=True), "scaling-sim")
    assert study_seconds(study) > study_seconds(two) > 0  # the estimate counts the simulated hybrid arm
    # a standby is simulated too (tests/sim/test_sim_standby.py): the arm takes it
    standby = from_dict({**presets.preset("scaling-sim", quick=True, arms=("hybrid",)),
                         "base": {"engine": "sim", "standby_coordinator": True}}, "scaling-sim")
    arm = standby.experiment(standby.arms[0], standby.points()[0], standby.seed)
    assert arm.engine == "sim" and arm.standby_coordinator and arm.schedulers == ("hybrid",)


def test_fault_tolerance_kills_the_hybrid_coordinator() -> None:
    study = from_dict(presets.preset("fault-tolerance", arms=THREE), "ft")
    assert [a.name for a in study.arms] == ["centralized", "centralized-standby", "gossip", "hybrid",
                                            "hybrid-standby"]
    hybrid, standby = (study.experiment(a, (), 1) for a in study.arms[-2:])
    assert [f.split(":")[2] for f in hybrid.faults] == ["coordinator"] and hybrid.schedulers == ("hybrid",)
    assert not hybrid.standby_coordinator and standby.standby_coordinator and standby.faults == hybrid.faults
    assert {(h.arm, h.other) for h in study.hypotheses} == {
        ("gossip", "centralized-standby"), ("gossip", "centralized"), ("hybrid", "centralized")}
    # without hybrid its hypothesis goes; without gossip, both of gossip's
    two = from_dict(presets.preset("fault-tolerance"), "ft")
    assert ("hybrid", "centralized") not in {(h.arm, h.other) for h in two.hypotheses} and len(two.hypotheses) == 2
    no_gossip = from_dict(presets.preset("fault-tolerance", arms=("centralized", "hybrid")), "ft")
    assert [(h.arm, h.other) for h in no_gossip.hypotheses] == [("hybrid", "centralized")]


@pytest.mark.parametrize(("args", "needle"), [
    (["run", "utilization", "--arms", "centralized,teleport"], "--arms 'teleport' unknown"),
    (["run", "s.toml", "--arms", "all"], "study file s.toml lists its own [[arms]]"),
    (["run", "--resume", "studies/x", "--arms", "all"], "--resume finishes a study as it was planned"),
])
def test_bad_arms_on_the_command_line_is_one_line(tmp_path: Path, args: list[str], needle: str) -> None:
    (tmp_path / "s.toml").write_text("[study]\nname = 's'\n")
    out = study_cli(args, tmp_path)
    assert out.returncode == 2 and needle in out.stderr, out.stderr
    assert len(out.stderr.strip().splitlines()) == 1 and "Traceback" not in out.stderr
    assert not (tmp_path / "studies").exists()


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_a_quick_study_with_three_arms(tmp_path: Path) -> None:
    out = study_cli(["run", "performance", "--quick", "--arms", "centralized,gossip,hybrid", "--repeats", "1",
                     "--duration", "3", "--studies-dir", "studies"], tmp_path, timeout=170)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    (study_dir,) = (tmp_path / "studies").iterdir()
    runs = json.loads((study_dir / "study.json").read_text())["runs"]
    assert sorted(r["arm"] for r in runs) == sorted(THREE) and all(r["status"] == "done" for r in runs)
    schedules = {(study_dir / r["run_dir"] / "schedule.csv").read_text() for r in runs}
    assert len(schedules) == 1  # the identical schedule for every arm
    hybrid_dir = study_dir / next(r["run_dir"] for r in runs if r["arm"] == "hybrid")
    with (hybrid_dir / "requests.csv").open(newline="") as fh:
        decided = {row["decided_by"] for row in csv.DictReader(fh) if row["status"] == "ok"}
    assert decided and decided <= {"peer", "coordinator", "peer-degraded"}  # the hybrid arm ran hybrid
    with (study_dir / "differences.csv").open(newline="") as fh:
        pairs = {(row["arm_a"], row["arm_b"]) for row in csv.DictReader(fh)}
    assert pairs == {("centralized", "gossip"), ("centralized", "hybrid"), ("gossip", "hybrid")}
    report = (study_dir / "report.md").read_text()
    assert "| metric | centralized | gossip | hybrid |" in report.replace("**", "")
    assert "hypothesis: Centralized approach achieves higher cache hit rate" in out.stdout
    assert (study_dir / "metric_cache_hit_rate.png").is_file()
