"""`schedctl experiment validate-sim --quick` (CI size) and the study estimate that asks for --yes."""

from __future__ import annotations

import csv
import math
import subprocess
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from cli.experiment.validate import COLUMNS, METRICS, compare
from daemons.coordinator.testing import schedctl


@pytest.mark.timeout(240)
def test_validate_sim_compares_both_engines_metric_by_metric(tmp_path: Path) -> None:
    out = subprocess.run([schedctl(), "experiment", "validate-sim", "--quick", "--scheduler", "centralized",
                          "--out", str(tmp_path / "v")], cwd=tmp_path, capture_output=True, text=True, timeout=220)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    with open(tmp_path / "v" / "validation.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert tuple(rows[0]) == COLUMNS
    assert [r["metric"] for r in rows] == list(METRICS)
    assert {r["arm"] for r in rows} == {"centralized"} and {r["nodes"] for r in rows} == {"2"}
    for r in rows:
        assert r["verdict"] in ("within", "outside", "host saturated", "only sim", "only real", "no value")
        if r["verdict"] in ("within", "outside"):
            assert float(r["ratio"]) == pytest.approx(float(r["sim"]) / float(r["real"]), rel=1e-3)
    assert float(next(r for r in rows if r["metric"] == "p50_ttft")["sim"]) > 0
    assert "judged rows within 15%" in out.stdout
    # both engines' runs are there, the simulated one marked
    engines = sorted(p.name.split("_")[-4] for p in (tmp_path / "v").iterdir() if p.is_dir())
    assert engines == ["real", "sim"]


def test_a_study_that_would_take_days_asks_for_yes(tmp_path: Path) -> None:
    out = subprocess.run([schedctl(), "study", "run", "scaling-sim", "--studies-dir", str(tmp_path / "s")],
                         cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert out.returncode == 2, out.stdout + out.stderr
    line = out.stderr.strip()
    assert "days" in line and "--yes" in line and len(line.splitlines()) == 1 and "Traceback" not in line
    assert not (tmp_path / "s").exists()


def _summary(saturated: bool = False, **metrics: float) -> Any:
    """The fields `compare` reads of a Summary (a stand-in for this one function's test)."""
    return SimpleNamespace(scheduler_type="centralized", host_saturated=saturated,
                           **{m: metrics.get(m, 1.0) for m in METRICS})


def test_a_figure_only_one_engine_has_is_shown_as_a_disagreement() -> None:
    # 4 nodes, light load: the real run recovered after its node kill (17 s), the simulated
    # one never did; that is a difference to see, not "no value".
    nan = math.nan
    verdicts = {r.metric: r.verdict for r in compare(4, "light", 1.0, _summary(avg_recovery_time=nan),
                                                      _summary(avg_recovery_time=17.0))}
    assert verdicts["avg_recovery_time"] == "only real" and verdicts["p50_ttft"] == "within"
    rows = compare(4, "light", 1.0, _summary(avg_recovery_time=12.0), _summary(avg_recovery_time=nan))
    assert {r.metric: r.verdict for r in rows}["avg_recovery_time"] == "only sim"
    rows = compare(4, "light", 1.0, _summary(avg_recovery_time=nan), _summary(avg_recovery_time=nan))
    assert {r.metric: r.verdict for r in rows}["avg_recovery_time"] == "no value"
    rows = compare(4, "light", 1.0, _summary(avg_recovery_time=nan), _summary(True, avg_recovery_time=17.0))
    assert {r.metric: r.verdict for r in rows}["avg_recovery_time"] == "host saturated"
