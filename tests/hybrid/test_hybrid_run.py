"""The hybrid arm through `schedctl experiment run`: real coordinator and node processes on
loopback, the paths counted from requests.csv.

The schedule (seed 2237, popularity weights 0.8 / 0.12 / 0.08) is chosen so the cold starts
fall where they show something: OPT-125m first at 0.9 s, Llama-2-7B first at 5.3 s, then again
from 6.5 s, Llama-3.1-8B first at 13.6 s. Nodes are A100-80GB: every model fits beside the
others, so no load evicts another and a warm model stays warm (a cold start is a first load).

- `test_the_coordinator_decides_every_cold_start_and_peers_every_warm_request`: 8 s.
- `test_a_killed_coordinator_loses_nothing`: the coordinator is killed at 3 s and started
  again at 8 s; Llama-2-7B's first request (5.3 s) is a cold start decided by a degraded
  peer, Llama-3.1-8B's (13.6 s) one decided by the coordinator again.
- `test_with_a_standby_the_peers_follow_it_after_the_kill`: the same kill, never restarted,
  with a standby coordinator (3 s of patience): it takes over before 13.6 s, and the peers
  refer Llama-3.1-8B's cold start to it.
"""

from __future__ import annotations

import csv
import subprocess
from collections import Counter
from pathlib import Path

import psutil
import pytest

from daemons.loadgen.schedule import read_schedule_csv
from daemons.node.testing import schedctl

EXPERIMENT = """
[experiment]
name = "hybrid"
scheduler = "hybrid"
timeout_s = 60
attempt_timeout_s = 8
faults = [{faults}]
standby_coordinator = {standby}
failover_after_s = 3.0
[workload]
duration_s = {duration}
rps = 2
cv = 1
seed = 2237
models = ["facebook/opt-125m", "meta-llama/Llama-2-7b-hf", "meta-llama/Llama-3.1-8B-Instruct"]
popularity = "weights"
weights = [0.8, 0.12, 0.08]
prompt_tokens = "lognormal:mean=100,median=80,max=300"
output_tokens = "lognormal:mean=30,median=20,max=60"
[[nodes]]
count = 3
gpu = "a100-80gb"
checkpoint_tier = "dram"
init_s = 0.5
"""
LLAMA2, LLAMA3 = "meta-llama/Llama-2-7b-hf", "meta-llama/Llama-3.1-8B-Instruct"


def run(tmp_path: Path, duration: float, faults: list[str],
        standby: bool = False) -> tuple[Path, list[dict[str, str]], list[dict[str, str]]]:
    config = tmp_path / "exp.toml"
    config.write_text(EXPERIMENT.format(duration=duration, faults=", ".join(f'"{f}"' for f in faults),
                                        standby=str(standby).lower()))
    before = {p.pid for p in psutil.Process().children(recursive=True)}
    out = subprocess.run([schedctl(), "experiment", "run", "-c", str(config), "--results-dir",
                          str(tmp_path / "results")], cwd=tmp_path, capture_output=True, text=True, timeout=150)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert "decided by" in out.stdout  # the run's summary counts the paths
    assert {p.pid for p in psutil.Process().children(recursive=True)} <= before  # nothing left behind
    (run_dir,) = (tmp_path / "results").iterdir()
    requests = rows(run_dir / "requests.csv")
    planned = read_schedule_csv(run_dir / "schedule.csv")
    # without loss: one outcome per planned request, every one a success
    assert sorted(r["request_id"] for r in requests) == sorted(p.request_id for p in planned)
    assert [r for r in requests if r["status"] != "ok"] == []
    summary = rows(run_dir / "summary.csv")[0]
    counts = Counter(r["decided_by"] for r in requests)
    assert {k: int(summary[f"decided_by_{k.replace('-', '_')}"]) for k in counts} == dict(counts)
    return run_dir, requests, rows(run_dir / "events.csv")


def rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def paths(requests: list[dict[str, str]], action: str) -> Counter[str]:
    return Counter(r["decided_by"] for r in requests if r["action"] == action)


@pytest.mark.timeout(180)
def test_the_coordinator_decides_every_cold_start_and_peers_every_warm_request(tmp_path: Path) -> None:
    _, requests, events = run(tmp_path, duration=8, faults=[])
    cold, warm = paths(requests, "COLD_START"), paths(requests, "SERVE")
    assert set(cold) == {"coordinator"} and cold["coordinator"] >= 2  # OPT and Llama-2 at least
    assert set(warm) == {"peer"} and warm["peer"] >= 5
    assert {r["decided_by"] for r in requests} <= {"peer", "coordinator"}
    assert not [e for e in events if e["kind"].startswith("hybrid_")]  # never degraded


@pytest.mark.timeout(180)
def test_a_killed_coordinator_loses_nothing(tmp_path: Path) -> None:
    _, requests, events = run(tmp_path, duration=16, faults=["3:kill:coordinator", "8:restart:coordinator"])
    degraded = [float(e["t_s"]) for e in events if e["kind"] == "hybrid_degraded"]
    recovered = [float(e["t_s"]) for e in events if e["kind"] == "hybrid_recovered"]
    assert degraded and min(degraded) >= 3, events
    assert recovered and min(recovered) > min(degraded) and max(recovered) < 13.6, events

    def first(model: str) -> dict[str, str]:
        return min((r for r in requests if r["model"] == model), key=lambda r: float(r["scheduled_s"]))

    # Cold while the coordinator was down: a degraded peer loaded it; cold after it came back: the coordinator.
    assert (first(LLAMA2)["action"], first(LLAMA2)["decided_by"]) == ("COLD_START", "peer-degraded")
    assert (first(LLAMA3)["action"], first(LLAMA3)["decided_by"]) == ("COLD_START", "coordinator")
    # Warm requests kept being served by the peers meanwhile.
    down = [r for r in requests if 3 < float(r["scheduled_s"]) < 8 and r["action"] == "SERVE"]
    assert down and {r["decided_by"] for r in down} == {"peer"}
    assert set(paths(requests, "SERVE")) == {"peer"}


@pytest.mark.timeout(180)
def test_with_a_standby_the_peers_follow_it_after_the_kill(tmp_path: Path) -> None:
    _, requests, events = run(tmp_path, duration=16, faults=["3:kill:coordinator"], standby=True)
    check_the_peers_follow_the_standby(requests, events)


def check_the_peers_follow_the_standby(requests: list[dict[str, str]], events: list[dict[str, str]]) -> None:
    """Shared with the simulated engine (tests/sim/test_sim_hybrid.py)."""
    active = [e for e in events if e["kind"] == "coordinator_active" and float(e["t_s"]) > 3]
    assert active and float(active[0]["t_s"]) < 13.6, events  # the standby took over in time
    llama3 = min((r for r in requests if r["model"] == LLAMA3), key=lambda r: float(r["scheduled_s"]))
    # the primary is dead for good: only the standby can have decided this cold start
    assert (llama3["action"], llama3["decided_by"]) == ("COLD_START", "coordinator"), llama3
    assert set(paths(requests, "SERVE")) == {"peer"}
