"""Learned affinity and pre-warming on the simulated engine: the agent's own `NodeLearning`, the
coordinator's `Prewarmer` and the registry's learned policies, on the virtual clock.

- the two-speed cluster of tests/coordinator/test_learning.py (an A100 and an A10G serving
  Llama-2-7b, both preloaded, startup-optimal): `--affinity learned` steers the model to the
  faster node once each node has measured itself; static scores do not tell them apart;
- parity: what each simulated node publishes (`NodeState.estimates`) is what `NodeLearning`
  derives from the Done timings that node sent and the loads it made;
- the ramp of tests/coordinator/test_learning.py and tests/node/test_learning_gossip.py (node-0
  holds opt-125m; 1, 2, 2 req/s): the coordinator (centralized) or the peer itself (gossip,
  hybrid) pre-warms the model on node-1 before the burst, with the real events (`prewarm`
  `by=node-1;...`; centralized, the `prewarm_hit` of its first request); without pre-warming
  every request stays on node-0;
- a predictable ramp of a model whose load is slow: pre-warming takes cold starts off the
  requests' critical path and cuts the TTFT tail;
- `schedctl experiment run --engine sim --affinity learned --prewarm on` on every arm.
"""

from __future__ import annotations

import csv
import json
import subprocess
from collections import Counter
from pathlib import Path

import pytest

from daemons.coordinator.testing import schedctl
from daemons.loadgen.recorder import RequestRecord
from daemons.loadgen.workload import PlannedRequest
from daemons.node.catalog import Catalog
from daemons.node.learning import NodeLearning
from daemons.policy.forecast import ForecastSettings
from daemons.policy.prewarm import PrewarmSettings
from daemons.rundir import Event
from daemons.sim import NodeKind, SimConfig, simulate
from daemons.sim.engine import Simulation
from tests.coordinator.test_learning import BIG, SMALL

CRITICAL = ("COLD_START", "SERVE_LOADING")  # cli/report/prewarming.py: a request that waited for a load


# ----- learned affinity ------------------------------------------------------------------------------
def two_speeds(affinity: str) -> Simulation:
    """The real test's cluster and requests: 14 of Llama-2-7b (a 500-token prompt, 2 tokens), one a second."""
    nodes = [(name, NodeKind(gpu, "gpu", (BIG,), 16384, 0.2, preload=(BIG,)))
             for name, gpu in (("fast", "a100-80gb"), ("slow", "a10g-24gb"))]
    schedule = [PlannedRequest(f"learn-{i:02d}", 1.0 + i, BIG, 500, 2) for i in range(14)]
    sim = Simulation(SimConfig("centralized", nodes, policy="startup-optimal", affinity=affinity), schedule)
    sim.run()
    return sim


def chosen(records: list[RequestRecord]) -> list[str]:
    return [r.node for r in sorted(records, key=lambda r: r.scheduled_s)]


def test_learned_affinity_steers_the_model_to_the_faster_node() -> None:
    learned, static = two_speeds("learned"), two_speeds("static")
    assert all(r.status == "ok" and r.action == "SERVE" for r in learned.recorder.records)
    assert chosen(learned.recorder.records)[-6:] == ["fast"] * 6, chosen(learned.recorder.records)
    assert "slow" in chosen(static.recorder.records)[-6:], chosen(static.recorder.records)  # static can't tell


def test_a_simulated_nodes_estimates_are_what_node_learning_makes_of_its_own_observations() -> None:
    sim = two_speeds("learned")
    for name, node in sim.nodes.items():
        served = sorted((r for r in sim.recorder.records if r.node == name and r.status == "ok"),
                        key=lambda r: r.done_s or 0.0)
        assert served and all({"load_wait_s", "ttft_s", "total_s"} <= set(r.server_timings) for r in served)
        learning = NodeLearning(PrewarmSettings())
        for r in served:  # the agent's feed (server.py `_run`): each Done's timings, in order
            learning.served(r.model, r.server_timings, r.tokens or 0)
        catalog = Catalog(node.kind.models, node.kind.gpu, node.kind.tier, node.kind.kv_tokens, node.kind.init_s)
        for _ in range(node.loads):  # a load takes the catalog's time plus the agent's launch (AgentCosts)
            learning.loaded(BIG, catalog.load_s(BIG) + node.costs.launch_s)
        assert node.snapshot().estimates == learning.estimates(), name
    fast, slow = (sim.nodes[n].snapshot().estimates[0] for n in ("fast", "slow"))
    assert fast.requests + slow.requests == 14 and fast.ttft_s < slow.ttft_s  # the A100 prefills faster


# ----- pre-warming --------------------------------------------------------------------------------
def ramp_then_burst() -> list[PlannedRequest]:
    """The real tests' ramp (1, 2, 2 requests a second: never over node-0's 2 req/s), then a burst of 8."""
    out, t = [], 1.0
    for per_second in (1, 2, 2):
        for k in range(per_second):
            out.append(PlannedRequest(f"ramp-{len(out)}", t + k / per_second, SMALL, 4, 2))
        t += 1.0
    return out + [PlannedRequest(f"burst-{k}", t + 3.0 + 0.05 * k, SMALL, 4, 2) for k in range(8)]


def holder_and_idle(mode: str, policy: str, prewarm: bool) -> tuple[list[RequestRecord], list[Event]]:
    nodes = [("node-0", NodeKind("a100-80gb", "gpu", (SMALL,), 16384, 0.2, preload=(SMALL,))),
             ("node-1", NodeKind("a100-80gb", "gpu", (SMALL,), 16384, 0.2))]
    settings = PrewarmSettings(prewarm, 2.0, ForecastSettings(horizon_s=5.0))
    result = simulate(SimConfig(mode, nodes, policy=policy, peer_policy="power-of-d", prewarm=settings),
                      ramp_then_burst())
    return result.records, result.events


@pytest.mark.parametrize(("mode", "policy", "ordered_by"), [("centralized", "affinity-score", "coordinator"),
                                                            ("gossip", "power-of-d", "node-1"),
                                                            ("hybrid", "affinity-score", "node-1")])
def test_a_forecast_ramp_prewarms_the_model_on_the_idle_node_before_the_burst(mode: str, policy: str,
                                                                              ordered_by: str) -> None:
    records, events = holder_and_idle(mode, policy, prewarm=True)
    assert all(r.status == "ok" for r in records)
    burst_at = min(r.scheduled_s for r in records if r.request_id.startswith("burst"))
    (prewarm,) = [e for e in events if e.kind == "prewarm"]
    assert prewarm.target == "node-1" and prewarm.t_s < burst_at, prewarm
    assert prewarm.detail.startswith(f"by=node-1;model={SMALL};") and f"ordered_by={ordered_by};" in prewarm.detail
    assert "forecast_rps=" in prewarm.detail and "capacity_rps=" in prewarm.detail, prewarm.detail
    if mode == "centralized":  # the coordinator's view: node-0's capacity, as the real test asserts
        assert "capacity_rps=2.000" in prewarm.detail
    # the model is ready on node-1 for the requests after the ramp: no load on their critical path
    on_1 = [r for r in records if r.node == "node-1" and r.scheduled_s >= prewarm.t_s + 1.0]
    assert on_1 and all(r.action == "SERVE" for r in on_1), [(r.request_id, r.action) for r in on_1]
    hits = [e for e in events if e.kind == "prewarm_hit"]
    assert all(e.target == "node-1" and e.detail.startswith(f"by=node-1;model={SMALL};request=") for e in hits)
    # A hit is the first request to reach the pre-warmed instance ready; one that came while it
    # still loaded (SERVE_LOADING: the agent's launch time is charged too) makes none. Never cold.
    first = min((r for r in records if r.node == "node-1"), key=lambda r: r.scheduled_s)
    assert first.action in ("SERVE", "SERVE_LOADING"), first
    if mode == "centralized":
        assert len(hits) == (first.action == "SERVE"), (first, hits)
    off, off_events = holder_and_idle(mode, policy, prewarm=False)
    assert not [e for e in off_events if e.kind.startswith(("prewarm", "evict"))]
    assert {r.node for r in off} == {"node-0"}  # the one holder takes them all


def steady_ramp() -> list[PlannedRequest]:
    """Llama-2-7b (1,000-token prompts, 300 tokens out) rising from 0.5 to 8 req/s: more than one
    instance absorbs, predictably."""
    out, t = [], 12.0  # after node-0's preload (4.7 s from SSD)
    while t < 40.0:
        out.append(PlannedRequest(f"r{len(out):03d}", t, BIG, 1000, 300))
        t += 1.0 / min(8.0, 0.5 + (t - 12.0) / 3.0)
    return out


def test_prewarming_takes_cold_starts_off_the_critical_path_of_a_predictable_ramp() -> None:
    nodes = [(f"node-{k}", NodeKind("a100-80gb", "ssd", (BIG, SMALL), 16384, 2.0, preload=(BIG,) if k == 0 else ()))
             for k in range(3)]
    runs = {}
    for on in (False, True):
        settings = PrewarmSettings(on, 2.0, ForecastSettings(horizon_s=5.0))
        result = simulate(SimConfig("centralized", nodes, policy="startup-optimal", prewarm=settings), steady_ramp())
        assert all(r.status == "ok" for r in result.records)
        ttfts = sorted(r.ttft_s or 0.0 for r in result.records)
        runs[on] = (sum(r.action in CRITICAL for r in result.records), ttfts[int(0.99 * len(ttfts))],
                    Counter(e.kind for e in result.events))
    (cold_off, p99_off, kinds_off), (cold_on, p99_on, kinds_on) = runs[False], runs[True]
    assert kinds_on["prewarm"] >= 1 and not kinds_off["prewarm"]
    assert cold_on < cold_off and p99_on < p99_off, runs


# ----- the command ----------------------------------------------------------------------------------
@pytest.mark.timeout(60)
def test_learned_affinity_and_prewarming_run_on_every_simulated_arm(tmp_path: Path) -> None:
    out = subprocess.run([schedctl(), "experiment", "run", "--engine", "sim", "--scheduler", "all", "--nodes", "4",
                          "--duration", "12", "--rps", "4", "--popularity-shift", "2", "--policy", "startup-optimal",
                          "--affinity", "learned", "--prewarm", "on", "--results-dir", str(tmp_path / "results")],
                         cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    dirs = {p.name.split("_")[2]: p for p in (tmp_path / "results").iterdir() if "_compare_" not in p.name}
    assert set(dirs) == {"centralized", "gossip", "hybrid"}
    for arm, run_dir in dirs.items():
        spec = json.loads((run_dir / "manifest.json").read_text())["spec"]["experiment"]
        assert (spec["affinity"], spec["prewarm"], spec["engine"]) == ("learned", "on", "sim")
        with open(run_dir / "requests.csv", newline="") as fh:
            rows = list(csv.DictReader(fh))
        assert rows and all(r["status"] == "ok" for r in rows), arm
        assert all("ttft_s" in json.loads(r["server_timings"]) for r in rows), arm  # the agent's Done.timings
        with open(run_dir / "summary.csv", newline="") as fh:
            (summary,) = list(csv.DictReader(fh))
        assert {"critical_cold_starts", "prewarms", "prewarm_hits"} <= set(summary), arm
