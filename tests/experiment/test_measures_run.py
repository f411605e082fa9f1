"""`schedctl experiment run` writes host.csv and the new summary measures for every arm."""

from __future__ import annotations

import csv
import itertools
import json
import subprocess
from pathlib import Path

import pytest

from cli.report.host import SATURATED_CPU
from daemons.node.testing import schedctl
from daemons.rundir import HOST_COLUMNS, HOSTS

NEW_COLUMNS = [f"{q}_{m}" for q in ("queue", "mem_util", "compute_util")
               for m in ("cv", "jain", "max_over_mean", "dispersion_seconds")] + [
    "requests_affected", "host_cpu_p50", "host_cpu_max", "schedctl_cpu_p50", "schedctl_cpu_max",
    "host_saturated_fraction", "host_saturated", "cache_hit_rate"]


def rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def check_host_csv(run_dir: Path) -> list[dict[str, str]]:
    host = rows(run_dir / HOSTS)
    assert host and list(host[0]) == list(HOST_COLUMNS)
    ended = json.loads((run_dir / "manifest.json").read_text())["duration_s"]
    times = [float(r["t_s"]) for r in host]
    # once a second over the run (8 s of arrivals, then the stragglers), within the run
    assert times == sorted(times) and times[0] >= 0 and len(host) >= ended - 1
    assert all(0.5 < b - a < 3.0 for a, b in itertools.pairwise(times))
    for r in host:
        assert 0 <= float(r["host_cpu"]) <= 1 and 0 <= float(r["daemons_cpu"]) <= float(r["schedctl_cpu"]) <= 1
    # the runner and the 4 nodes at least, and they did some work
    assert max(int(r["processes"]) for r in host) >= 5
    assert sum(float(r["daemons_cpu"]) for r in host) > 0
    return host


@pytest.mark.slow
def test_every_arm_has_host_csv_and_the_new_columns(tmp_path: Path) -> None:
    out = subprocess.run([schedctl(), "experiment", "run", "--duration", "8", "--rps", "2", "--cv", "2",
                          "--name", "measures", "--seed", "7", "--results-dir", str(tmp_path / "results")],
                         cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    # the arms, not the NAME_compare_STAMP directory beside them
    run_dirs = sorted(d for d in (tmp_path / "results").iterdir() if (d / "manifest.json").is_file())
    assert [d.name.split("_")[1] for d in run_dirs] == ["centralized", "gossip"]
    for run_dir in run_dirs:
        host = check_host_csv(run_dir)
        (summary,) = rows(run_dir / "summary.csv")
        assert all(c in summary for c in NEW_COLUMNS), [c for c in NEW_COLUMNS if c not in summary]
        # cache hits: served with the model ready (SERVE) over all served
        served = [r["action"] for r in rows(run_dir / "requests.csv") if r["status"] == "ok" and r["action"]]
        assert float(summary["cache_hit_rate"]) == pytest.approx(served.count("SERVE") / len(served))
        # the verdict agrees with the samples it was drawn from
        busy = sum(1 for r in host if float(r["host_cpu"]) > SATURATED_CPU) / len(host)
        assert float(summary["host_saturated_fraction"]) == pytest.approx(busy)
        assert summary["host_saturated"] == str(busy > 0.05)
        assert float(summary["host_cpu_max"]) == max(float(r["host_cpu"]) for r in host)
        # memory is used on some node throughout: its spread is measured, and in range
        assert int(summary["mem_util_dispersion_seconds"]) >= 1
        assert 0 < float(summary["mem_util_jain"]) <= 1 and float(summary["mem_util_cv"]) >= 0
        assert 1 <= float(summary["mem_util_max_over_mean"]) <= 4
        assert int(summary["requests_affected"]) == 0 and int(summary["fault_count"]) == 0  # no fault
        warned = f"{summary['scheduler_type']} run {run_dir}: the host's CPU" in out.stderr
        assert warned == (summary["host_saturated"] == "True")
    report = subprocess.run([schedctl(), "experiment", "report", str(run_dirs[0]), "--no-plots"],
                            capture_output=True, text=True, timeout=120)
    assert report.returncode == 0, report.stderr
    assert "spread" in report.stdout and "Jain" in report.stdout and "\nhost " in report.stdout
