"""`schedctl study run` end to end with real processes: the performance preset's --quick version
and a custom study file with a `vary` axis. Each study directory holds every planned run, its
aggregates agree with a recomputation from the runs' own requests.csv, and every hypothesis
has a verdict; --resume redoes nothing."""

from __future__ import annotations

import csv
import json
import math
import subprocess
from pathlib import Path

import numpy as np
import psutil
import pytest

from daemons.node.testing import schedctl

VERDICTS = {"supported", "refuted", "inconclusive"}


def study(args: list[str], cwd: Path, timeout: float = 400) -> subprocess.CompletedProcess[str]:
    return subprocess.run([schedctl(), "study", *args], cwd=cwd, capture_output=True, text=True, timeout=timeout)


def rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as fh:
        return list(csv.DictReader(fh))


def recomputed(run_dir: Path) -> dict[str, float]:
    """cache_hit_rate and p99_ttft from requests.csv, as summary.py defines them."""
    ok = [r for r in rows(run_dir / "requests.csv") if r["status"] == "ok"]
    acted = [r for r in ok if r["action"]]
    ttft = [float(r["first_token_s"]) - float(r["scheduled_s"]) for r in ok]
    return {"cache_hit_rate": sum(r["action"] == "SERVE" for r in acted) / len(acted) if acted else math.nan,
            "p99_ttft": float(np.percentile(ttft, 99)) if ttft else math.nan}


def check_study(study_dir: Path, planned: int) -> dict[str, object]:
    ledger = json.loads((study_dir / "study.json").read_text())
    runs = ledger["runs"]
    assert len(runs) == planned and all(r["status"] == "done" for r in runs), runs
    assert all((study_dir / r["run_dir"] / "summary.csv").is_file() for r in runs)
    # paired: every arm of one point and seed replayed the identical schedule
    by_pair: dict[tuple[int, int], set[str]] = {}
    for r in runs:
        by_pair.setdefault((r["point_index"], r["seed"]), set()).add((study_dir / r["run_dir"] / "schedule.csv")
                                                                     .read_text())
    assert all(len(schedules) == 1 for schedules in by_pair.values())
    # aggregates = the mean over seeds of each run's figure recomputed from its requests.csv
    aggregates = {(a["point"], a["arm"], a["metric"]): a for a in rows(study_dir / "aggregates.csv")}
    for metric in ("cache_hit_rate", "p99_ttft"):
        groups: dict[tuple[str, str], list[float]] = {}
        for r in runs:
            value = recomputed(study_dir / r["run_dir"])[metric]
            groups.setdefault((str(r["point_index"]), r["arm"]), []).append(value)
        for (point, arm), values in groups.items():
            row = aggregates[(point, arm, metric)]
            measured = [v for v in values if not math.isnan(v)]
            assert int(row["n"]) == len(measured)
            assert float(row["mean"]) == pytest.approx(sum(measured) / len(measured), rel=1e-6)
    hypotheses = rows(study_dir / "hypotheses.csv")
    assert hypotheses and all(h["verdict"] in VERDICTS for h in hypotheses)
    page = (study_dir / "report.html").read_text()
    assert "data:image/png;base64," in page and "Hypotheses" in page
    assert (study_dir / "report.md").read_text().startswith("# Study")
    return ledger


def our_processes() -> set[int]:
    return {p.pid for p in psutil.Process().children(recursive=True)}


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_performance_quick_end_to_end_and_resume(tmp_path: Path) -> None:
    before = our_processes()
    out = study(["run", "performance", "--quick", "--studies-dir", "studies"], tmp_path)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert "run 4 of 4" in out.stdout and "left)" in out.stdout  # progress with an estimate
    (study_dir,) = (tmp_path / "studies").iterdir()
    ledger = check_study(study_dir, planned=4)
    assert {r["arm"] for r in ledger["runs"]} == {"centralized", "gossip"}  # type: ignore[index]
    assert "hypothesis: Centralized approach achieves higher cache hit rate" in out.stdout
    # a finished study resumed: nothing is redone, the report is rendered again
    dirs = sorted(p.name for p in (study_dir / "runs").iterdir())
    out = study(["run", "--resume", str(study_dir)], tmp_path, timeout=120)
    assert out.returncode == 0, out.stderr
    assert sorted(p.name for p in (study_dir / "runs").iterdir()) == dirs
    # summaries rewritten from the runs' own CSVs: the same aggregates
    aggregates = (study_dir / "aggregates.csv").read_text()
    out = study(["report", str(study_dir), "--resummarize"], tmp_path, timeout=120)
    assert out.returncode == 0, out.stderr
    assert (study_dir / "aggregates.csv").read_text() == aggregates
    assert our_processes() <= before


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_custom_study_file_with_a_vary_axis(tmp_path: Path) -> None:
    (tmp_path / "load.toml").write_text("""
[study]
name = "load"
repeats = 2
seed = 7
metrics = ["cache_hit_rate", "p99_ttft", "goodput"]

[base]
nodes = 2
duration_s = 2
cv = 1.0

[vary]
rps = [1.0, 2.0]

[[hypotheses]]
text = "Gossip has the lower p99 TTFT"
metric = "p99_ttft"
direction = "lower"
arms = ["gossip", "centralized"]
""")
    out = study(["run", "load.toml", "--studies-dir", "studies"], tmp_path)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    (study_dir,) = (tmp_path / "studies").iterdir()
    ledger = check_study(study_dir, planned=8)
    assert sorted({json.dumps(r["point"]) for r in ledger["runs"]}) == ['{"rps": 1.0}', '{"rps": 2.0}']  # type: ignore[index]
    assert len(rows(study_dir / "hypotheses.csv")) == 2  # one verdict per point


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_resume_runs_only_what_is_not_done(tmp_path: Path) -> None:
    """Three runs done (written by hand, so a rerun would show), one interrupted: --resume runs that one."""
    from cli.study.ledger import DONE, INTERRUPTED, Ledger
    from cli.study.spec import load

    (tmp_path / "s.toml").write_text("""
[study]
name = "resumed"
repeats = 2
metrics = ["cache_hit_rate"]

[base]
nodes = 2
duration_s = 2
rps = 1.0
""")
    (tmp_path / "study").mkdir()
    ledger = Ledger.new(tmp_path / "study", load(tmp_path / "s.toml"))
    *done, last = ledger.runs
    for entry in done:
        run_dir = ledger.study_dir / "runs" / entry.id
        run_dir.mkdir(parents=True)
        (run_dir / "summary.csv").write_text("cache_hit_rate\n0.25\n")
        ledger.update(entry, status=DONE, run_dir=f"runs/{entry.id}")
    ledger.update(last, status=INTERRUPTED, run_dir="runs/gone")
    out = study(["run", "--resume", str(ledger.study_dir)], tmp_path, timeout=240)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert "3 of 4 runs already done; running the other 1" in out.stdout and "run 4 of 4" in out.stdout
    runs = json.loads((ledger.study_dir / "study.json").read_text())["runs"]
    assert all(r["status"] == "done" for r in runs)
    assert [r["run_dir"] for r in runs[:3]] == [f"runs/{e.id}" for e in done]  # untouched
    assert all((ledger.study_dir / r["run_dir"] / "summary.csv").read_text() == "cache_hit_rate\n0.25\n"
               for r in runs[:3])
    assert (ledger.study_dir / runs[3]["run_dir"] / "requests.csv").is_file()  # the one real run
