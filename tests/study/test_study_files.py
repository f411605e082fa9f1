"""Study definitions: presets and files, their bad inputs (one line, exit 2), and a study
directory re-rendered from fabricated runs (aggregates recomputed, a deleted run marked missing)."""

from __future__ import annotations

import csv
import json
import math
import shutil
import subprocess
from pathlib import Path

import pytest

from cli.study import presets
from cli.study.aggregate import aggregate, write_csvs
from cli.study.ledger import DONE, Ledger
from cli.study.metrics import info, read_run_metrics
from cli.study.spec import from_dict, load
from daemons.node.testing import schedctl
from daemons.rundir import RECOVERY, REQUESTS, Recovery, RequestRow, write_recoveries, write_requests

CUSTOM = """
[study]
name = "custom"
repeats = 2
metrics = ["cache_hit_rate"]

[base]
nodes = 2
duration_s = 3

[vary]
rps = [1, 3]

[[hypotheses]]
metric = "cache_hit_rate"
direction = "higher"
arms = ["centralized", "gossip"]

[quick]
duration_s = 2
repeats = 1
"""


def study_cli(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([schedctl(), "study", *args], cwd=cwd, capture_output=True, text=True, timeout=60)


def test_every_preset_builds_and_quick_is_smaller() -> None:
    for name in presets.PRESETS:
        full = from_dict(presets.preset(name), name)
        quick = from_dict(presets.preset(name, quick=True), name)
        assert full.hypotheses and all(h.text for h in full.hypotheses)
        runs = len(full.points()) * len(full.arms) * full.repeats
        quick_runs = len(quick.points()) * len(quick.arms) * quick.repeats
        assert quick_runs <= runs
        for study in (full, quick):  # every run is one scheduler; the seeds are the study's
            point = study.points()[0]
            specs = [study.experiment(a, point, study.seeds[-1]) for a in study.arms]
            assert all(len(s.schedulers) == 1 and s.workload.seed == study.seeds[-1] for s in specs)
    perf = from_dict(presets.preset("performance"), "performance")
    assert perf.experiment(perf.arms[0], (), 1).node_count == 10  # the prototype's 10 workers


def test_duration_moves_the_faults_and_repeats_override() -> None:
    study = from_dict(presets.preset("fault-tolerance", duration=100.0), "ft", repeats=5)
    assert study.repeats == 5
    spec = study.experiment(study.arms[0], (), 1)
    assert spec.workload.duration_s == 100.0 and spec.faults == ("40:kill:coordinator",)


def test_study_file_axes_points_and_quick(tmp_path: Path) -> None:
    path = tmp_path / "s.toml"
    path.write_text(CUSTOM)
    study = load(path)
    assert [dict(p) for p in study.points()] == [{"rps": 1}, {"rps": 3}] and study.seeds == (1000, 1001)
    spec = study.experiment(study.arms[1], study.points()[1], 1001)
    assert (spec.schedulers, spec.workload.rps, spec.node_count) == (("gossip",), 3.0, 2)
    quick = load(path, quick=True)
    assert quick.repeats == 1 and quick.experiment(quick.arms[0], quick.points()[0], 1).workload.duration_s == 2


def test_rps_per_node_offers_every_cluster_size_the_same_load_per_node(tmp_path: Path) -> None:
    path = tmp_path / "s.toml"
    path.write_text("[study]\nname='x'\nsweep='rps_per_node'\n[vary]\nnodes=[2, 6]\nrps_per_node=[0.5, 2]\n")
    study = load(path)
    offered = [(s.node_count, s.workload.rps) for s in (study.experiment(study.arms[0], p, 1) for p in study.points())]
    assert offered == [(2, 1.0), (2, 4.0), (6, 3.0), (6, 12.0)]
    # without nodes: the base cluster's count (the default experiment's 4 nodes)
    path.write_text("[study]\nname='x'\n[vary]\nrps_per_node=[1.5]\n")
    study = load(path)
    assert study.experiment(study.arms[0], study.points()[0], 1).workload.rps == 1.5 * 4


@pytest.mark.parametrize(
    ("args", "text", "needle"),
    [
        (["run", "teleport"], None, "unknown study 'teleport'"),
        (["run", "performance", "--repeats", "0"], None, "repeats must be at least 1"),
        (["run", "s.toml"], "[study]\nname='x'\n[vary]\nwarp = [1]\n", "'warp' is not an experiment field"),
        (["run", "s.toml"], "[study]\nname='x'\n[vary]\nrps = []\n", "rps is an empty axis"),
        (["run", "s.toml"], "[study\nname='x'\n", "not valid TOML"),
        (["run", "s.toml"], "[study]\nname='x'\n[base]\nrps=2\n[vary]\nrps_per_node=[1]\n",
         "rps and rps_per_node both set the offered load"),
        (["run", "s.toml"], "[study]\nname='x'\n[vary]\nrps_per_node=[0]\n", "rps_per_node must be a number"),
        (["run", "s.toml"], "[study]\nname='x'\n[[arms]]\nname='both'\n", "an arm is one scheduler"),
        (["run", "s.toml", "--quick"], "[study]\nname='x'\n", "[quick]"),
        (["run", "missing.toml"], None, "not found"),
        (["report", "nowhere"], None, "study.json not found"),
    ],
)
def test_bad_input_is_one_clear_line(tmp_path: Path, args: list[str], text: str | None, needle: str) -> None:
    if text is not None:
        (tmp_path / "s.toml").write_text(text)
    out = study_cli(args, tmp_path)
    assert out.returncode == 2, out.stdout + out.stderr
    assert needle in out.stderr and "Traceback" not in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "studies").exists()


def fabricate(tmp_path: Path) -> Ledger:
    """A custom study whose runs are written by hand: cache_hit_rate = 0.5 + 0.1·seed offset (+0.2 centralized)."""
    path = tmp_path / "s.toml"
    path.write_text(CUSTOM)
    (tmp_path / "study").mkdir()
    ledger = Ledger.new(tmp_path / "study", load(path))
    for entry in list(ledger.runs):
        run_dir = ledger.study_dir / "runs" / entry.id
        run_dir.mkdir(parents=True)
        value = 0.5 + 0.1 * (entry.seed - 1000) + (0.2 if entry.arm == "centralized" else 0.0)
        with (run_dir / "summary.csv").open("w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(["experiment_name", "cache_hit_rate", "p99_ttft"])
            w.writerow(["custom", value, ""])
        ledger.update(entry, status=DONE, run_dir=f"runs/{entry.id}")
    return ledger


def test_aggregates_and_a_deleted_run_is_marked_missing(tmp_path: Path) -> None:
    ledger = fabricate(tmp_path)
    agg = aggregate(ledger)
    write_csvs(agg)
    cell = agg.cell(0, "centralized", "cache_hit_rate")
    assert cell.n == 2 and cell.mean == pytest.approx(0.75)  # 0.7 and 0.8
    v0, v1 = agg.verdicts
    # the difference is exactly 0.2 for every seed: sd 0, the interval is [0.2, 0.2]
    assert v0.verdict == v1.verdict == "supported" and v0.difference.diff.mean == pytest.approx(0.2)
    out = study_cli(["report", str(ledger.study_dir)], tmp_path)
    assert out.returncode == 0, out.stderr
    assert "supported" in out.stdout
    html = (ledger.study_dir / "report.html").read_text()
    assert "data:image/png;base64," in html and "Hypotheses" in html
    # a run's directory deleted: re-rendered, that run missing, the others still counted
    gone = ledger.runs[0]
    shutil.rmtree(ledger.study_dir / gone.run_dir)
    out = study_cli(["report", str(ledger.study_dir)], tmp_path)
    assert out.returncode == 0 and "Traceback" not in out.stderr, out.stderr
    md = (ledger.study_dir / "report.md").read_text()
    assert f"{gone.id} (missing)" in md and "7 of 8 runs done" in md
    with (ledger.study_dir / "aggregates.csv").open() as fh:
        rows = [r for r in csv.DictReader(fh) if r["metric"] == "cache_hit_rate" and r["point"] == "0"
                and r["arm"] == gone.arm]
    assert rows[0]["n"] == "1"
    ledger_doc = json.loads((ledger.study_dir / "study.json").read_text())
    assert ledger_doc["runs"][0]["status"] == DONE  # the ledger is not rewritten by a report


def test_recovery_figures_come_from_recovery_csv(tmp_path: Path) -> None:
    with (tmp_path / "summary.csv").open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["experiment_name", "avg_recovery_time"])
        w.writerow(["x", "4.5"])
    write_recoveries(tmp_path / RECOVERY, [
        Recovery(t_s=20.0, target="node-1", fault="kill", detection_s=1.0, drain_s=3.0, recovery_s=4.5),
        Recovery(t_s=40.0, target="coordinator", fault="kill", detection_s=2.0, drain_s=math.nan,
                 recovery_s=math.nan),
    ])
    values = read_run_metrics(tmp_path)
    assert values["avg_recovery_time"] == 4.5
    assert values["avg_detection_time"] == pytest.approx(1.5)
    assert values["avg_drain_time"] == pytest.approx(3.0)  # the fault without a drain is left out
    assert values["recovered_fraction"] == pytest.approx(0.5)
    assert math.isnan(values["recovery_time_censored"])  # no requests.csv: no last arrival to bound it


def test_a_fault_never_recovered_counts_at_its_lower_bound(tmp_path: Path) -> None:
    """Censored recovery time: a recovered fault at its time, an unrecovered one at the time
    from the fault to the last arrival (it had not recovered by then), so the worst run of a
    pair is not dropped from the comparison."""
    with (tmp_path / "summary.csv").open("w", newline="") as fh:
        csv.writer(fh).writerows([["experiment_name"], ["x"]])
    write_requests(tmp_path / REQUESTS, [RequestRow(f"r{i}", float(t)) for i, t in enumerate((1, 30, 58))])
    write_recoveries(tmp_path / RECOVERY, [
        Recovery(t_s=20.0, target="node-1", fault="kill", detection_s=1.0, drain_s=3.0, recovery_s=4.5),
        Recovery(t_s=40.0, target="coordinator", fault="kill", detection_s=2.0, drain_s=math.nan,
                 recovery_s=math.nan),
    ])
    assert read_run_metrics(tmp_path)["recovery_time_censored"] == pytest.approx((4.5 + 18.0) / 2)


def test_a_run_without_faults_has_no_recovery_figures(tmp_path: Path) -> None:
    with (tmp_path / "summary.csv").open("w", newline="") as fh:
        csv.writer(fh).writerows([["experiment_name"], ["x"]])
    write_recoveries(tmp_path / RECOVERY, [])
    assert "recovered_fraction" not in read_run_metrics(tmp_path)


def test_labels_are_the_comparison_tables_and_carry_a_unit() -> None:
    from cli.report.compare import METRICS

    for m in METRICS:
        if not m.key.startswith(("host_", "class_")):
            label = info(m.key).label
            assert label.startswith(m.label) and label.endswith(")"), (m.key, label)
    assert info("queue_cv").label.endswith("(ratio)")
    for name in presets.PRESETS:  # every figure a preset shows can be an axis (cli/report/style.py `save`)
        for metric in presets.preset(name)["study"]["metrics"]:
            assert info(metric).label.endswith(")"), (name, metric, info(metric).label)
