"""`schedctl experiment run` end to end on the embedded default cluster, and its bad inputs."""

from __future__ import annotations

import csv
import json
import subprocess
from pathlib import Path

import psutil
import pytest

from daemons.loadgen.schedule import read_schedule_csv
from daemons.node.testing import schedctl


def run(args: list[str], cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run([schedctl(), "experiment", "run", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout)


def rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def our_processes() -> set[int]:
    return {p.pid for p in psutil.Process().children(recursive=True)}


def check_run(run_dir: Path, scheduler: str) -> list[dict[str, str]]:
    planned = read_schedule_csv(run_dir / "schedule.csv")
    assert len(planned) == 16
    recorded = rows(run_dir / "requests.csv")
    # every planned request has exactly one row and one outcome
    assert sorted(r["request_id"] for r in recorded) == sorted(p.request_id for p in planned)
    assert all(r["status"] in ("ok", "error", "timeout") for r in recorded)
    ok = [r for r in recorded if r["status"] == "ok"]
    assert len(ok) >= 14, [r["error"] for r in recorded if r["status"] != "ok"]
    for r in ok:
        assert float(r["first_token_s"]) <= float(r["done_s"])
        assert r["action"] in ("SERVE", "SERVE_LOADING", "COLD_START", "MIGRATE") and r["node"].startswith("node-")
    (summary,) = rows(run_dir / "summary.csv")
    counts = [int(summary[k]) for k in ("serve_count", "serve_loading_count", "cold_start_count", "migrate_count")]
    assert sum(counts) == len(ok) and int(summary["cold_start_count"]) >= 1
    assert float(summary["cache_hit_rate"]) == pytest.approx(int(summary["serve_count"]) / len(ok))
    assert float(summary["measured_duration"]) > 0 and float(summary["request_throughput"]) > 0
    assert int(summary["total_requests"]) == 16
    assert int(summary["successful_requests"]) + int(summary["failed_requests"]) == 16
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["planned_requests"] == 16 and manifest["seed"] == 7 and manifest["scheduler"] == scheduler
    nodes = rows(run_dir / "nodes.csv")
    assert {n["node"] for n in nodes} == {"node-0", "node-1", "node-2", "node-3"}
    assert all(0.0 <= float(n["memory_utilization"]) <= 1.0 for n in nodes)
    # GPU compute utilisation (the emulator's busy fraction) is measured, and not memory.
    assert all(0.0 <= float(n["gpu_utilization"]) <= 1.0 for n in nodes)
    assert any(float(n["gpu_utilization"]) > 0 for n in nodes)
    for png in ("ttft_cdf.png", "nodes.png", "actions.png"):
        assert (run_dir / png).stat().st_size > 1000
    assert not (run_dir / "recovery.png").exists()  # no fault, no fault timeline
    # nothing failed: no gossip peer may have declared another dead
    assert not [e for e in rows(run_dir / "events.csv") if e["kind"] == "dead"]
    return recorded


@pytest.mark.slow
def test_short_experiment_runs_both_schedulers_on_one_schedule(tmp_path: Path) -> None:
    before = our_processes()
    out = run(["--duration", "8", "--rps", "2", "--cv", "2", "--name", "smoke", "--seed", "7",
               "--results-dir", str(tmp_path / "results")], tmp_path)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    dirs = {d.name.split("_")[1]: d for d in (tmp_path / "results").iterdir()}
    assert set(dirs) == {"centralized", "gossip", "compare"}
    # the arms compared as `experiment compare` would, their TTFT CDFs overlaid in one figure
    assert sorted(p.name for p in dirs["compare"].iterdir()) == [
        "comparison.csv", "comparison.md", "ttft_cdf_compare.png"]
    assert dirs["compare"].name == dirs["gossip"].name.replace("_gossip_", "_compare_")
    central = check_run(dirs["centralized"], "centralized")
    gossip = check_run(dirs["gossip"], "gossip")
    # identical workloads: the same schedule replayed by both
    assert (dirs["centralized"] / "schedule.csv").read_text() == (dirs["gossip"] / "schedule.csv").read_text()
    assert [r["scheduled_s"] for r in central] == [r["scheduled_s"] for r in gossip]
    assert all(r["hops"] in ("0", "1") for r in gossip)
    assert "Metric" in out.stdout and "Centralized" in out.stdout and "Gossip" in out.stdout
    # the expected duration up front, then few progress lines, each naming its scheduler
    lines = out.stdout.splitlines()
    said = [i for i, line in enumerate(lines) if line.startswith("expected duration: about ")]
    assert said and said[0] < lines.index("[centralized] starting 4 nodes and the coordinator")
    beats = [line for line in lines if " sent " in line]
    assert {line.split("]")[0] for line in beats} == {"[centralized", "[gossip"}
    assert 2 <= len(beats) <= 12 and all("of arrivals left" in b or "arrivals done" in b for b in beats)
    # torn down: nothing started by the run is left
    assert our_processes() <= before


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--rps", "-1"], "--rps"),
        (["--cv", "1000"], "cv"),
        (["--policy", "teleport"], "affinity-score"),
        (["--gossip-policy", "affinity-score"], "serves the centralized coordinator, not gossip peers: choose one "
                                                "of local-first, power-of-d, sparrow"),
        (["--scheduler", "telepathy"], "use centralized, gossip, hybrid, a comma-separated list of them"),
        (["--scheduler", "centralized,telepathy"], "scheduler 'telepathy' unknown"),
        (["--centralized-only", "--gossip-only"], "pick one"),
        (["--gossip-only", "--rebalance"], "--rebalance is the centralized coordinator's"),
        (["--config", "missing.toml"], "not found"),
        (["--from", "missing.json"], "manifest"),
        (["--backend", "tgi"], "use emulator (an emulator process per model, the default) or emulator-inproc"),
    ],
)
def test_bad_input_is_one_clear_line(tmp_path: Path, args: list[str], needle: str) -> None:
    out = run([*args, "--duration", "1", "--results-dir", str(tmp_path / "r")], tmp_path, timeout=60)
    assert out.returncode == 2, out.stdout + out.stderr
    assert needle in out.stderr and "Traceback" not in out.stderr
    assert not (tmp_path / "r").exists()


def test_malformed_experiment_file(tmp_path: Path) -> None:
    bad = tmp_path / "exp.toml"
    bad.write_text("[experiment]\nname = 'x'\ncolour = 'blue'\n")
    out = run(["--config", str(bad)], tmp_path, timeout=60)
    assert out.returncode == 2 and "colour" in out.stderr and "Traceback" not in out.stderr
    bad.write_text("[experiment\n")
    out = run(["--config", str(bad)], tmp_path, timeout=60)
    assert out.returncode == 2 and "TOML" in out.stderr


def test_manifest_spec_round_trips_so_from_repeats_the_run(tmp_path: Path) -> None:
    import dataclasses

    from cli.experiment.spec import NodeGroup, Slo, from_dict, load_file

    exp = tmp_path / "exp.toml"
    exp.write_text("""
[experiment]
name = "rt"
scheduler = "gossip"
gossip_policy = "sparrow"
[experiment.slo]
ttft_ms = 750
[workload]
duration_s = 12
rps = 3.5
cv = 4
seed = 99
models = ["facebook/opt-125m"]
[[nodes]]
count = 3
gpu = "h100-80gb"
models = ["facebook/opt-125m"]
""")
    spec = load_file(exp)
    assert spec.schedulers == ("gossip",) and spec.slo == Slo(ttft_ms=750.0)
    assert spec.nodes == (NodeGroup(count=3, gpu="h100-80gb", models=("facebook/opt-125m",)),)
    again = from_dict(json.loads(json.dumps(spec.to_dict())), "manifest.json")
    assert again == spec
    assert dataclasses.replace(again, name="other") != spec


@pytest.mark.slow
def test_sigterm_stops_the_run_and_leaves_no_process(tmp_path: Path) -> None:
    import signal
    import time

    proc = subprocess.Popen([schedctl(), "experiment", "run", "--duration", "60", "--rps", "1", "--centralized-only",
                             "--results-dir", str(tmp_path / "r")], cwd=tmp_path, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not list((tmp_path / "r").glob("*/daemons/node-3.log")):
        time.sleep(0.2)
    time.sleep(3)
    kids = psutil.Process(proc.pid).children(recursive=True)
    assert kids
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 130, out[-2000:]
    _, alive = psutil.wait_procs(kids, timeout=10)
    assert alive == []
    assert "interrupted" in out
