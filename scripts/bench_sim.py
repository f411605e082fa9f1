#!/usr/bin/env python3
"""Benchmark the simulated engine (daemons/sim): wall time per simulated request and per
gossip message, and how large a cluster it runs in a given wall-time budget.

Every run simulates the default experiment's node mix (scaled to N nodes) under Poisson
arrivals, both arms unless `--arms` says otherwise, and prints per run: virtual seconds,
wall seconds, their ratio against the real engine (which needs one wall second per
virtual second: the baseline, measured in the same run as the virtual clock's span), wall
microseconds per request and per gossip message, and the coordinator's busy fraction
(its decision rate's headroom: each decision is charged daemons/sim/coordinator.Costs).

Goals (issue 15): 1,000 nodes for one virtual hour at 500 req/s in at most 10 minutes of
wall time on one core (`--hour`); the largest cluster that runs 10 virtual minutes within
30 wall minutes, up to 10,000 nodes (`--largest`, at 0.5 req/s per node).

Usage::

    python scripts/bench_sim.py --quick                 # CI: 16 nodes, 20 virtual s, seconds of wall time
    python scripts/bench_sim.py --nodes 1000 --rps 500 --duration 60
    python scripts/bench_sim.py --hour --arms centralized
    python scripts/bench_sim.py --nodes 100 --rps 50 --duration 20 --arms centralized,gossip,hybrid
    python scripts/bench_sim.py --largest --arms centralized

It ends with exactly one line of JSON holding every figure. One process, one core; every
run is bounded by its budget (`--budget`, the goal's), counted in this process's CPU
seconds (`time.process_time`), which is one core's time even on a shared host where the
wall clock also counts other programs' turns; both are printed.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from cli.experiment.spec import DEFAULT_WORKLOAD, ExperimentSpec, scaled_nodes  # noqa: E402
from daemons.loadgen.workload import from_dict, plan_fitted  # noqa: E402
from daemons.sim import NodeKind, SimConfig, simulate  # noqa: E402

# hybrid: its coordinator's policy (its peers' is gossip's)
POLICIES = {"centralized": "affinity-score", "gossip": "power-of-d", "hybrid": "affinity-score"}
LARGEST_SIZES = (1000, 2000, 5000, 10_000)


def one_run(nodes: int, rps: float, duration_s: float, arm: str, budget_s: float, sample_s: float) -> dict[str, Any]:
    workload = from_dict({**DEFAULT_WORKLOAD, "duration_s": duration_s, "rps": rps, "cv": 1.0, "seed": 7})
    schedule, _ = plan_fitted(workload)
    spec = ExperimentSpec(nodes=scaled_nodes(ExperimentSpec().nodes, nodes), schedulers=(arm,))
    kinds = [(n, NodeKind(g.gpu, g.checkpoint_tier, g.models, g.kv_tokens, g.init_s)) for n, g in spec.node_names()]
    config = SimConfig(mode=arm, nodes=kinds, policy=POLICIES[arm], peer_policy=POLICIES["gossip"], timeout_s=60.0,
                       sample_every_s=sample_s)
    started, cpu0 = time.perf_counter(), time.process_time()
    result = simulate(config, schedule, wall_limit_s=budget_s, cpu_limit=True)
    wall = time.perf_counter() - started  # includes building the cluster
    cpu = time.process_time() - cpu0  # this process's CPU time: one core's, whatever else runs on the host
    st = result.stats
    ok = sum(1 for r in result.records if r.status == "ok")
    gossip = st["gossip_messages"]
    return {"arm": arm, "nodes": nodes, "rps": rps, "virtual_s": round(result.ended_s, 1), "wall_s": round(wall, 2),
            "cpu_s": round(cpu, 2), "virtual_per_cpu_s": round(result.ended_s / cpu, 3) if cpu else None,
            "cpu_us_per_request": round(cpu / max(1, len(schedule)) * 1e6, 1),
            "cpu_us_per_gossip_message": round(cpu / gossip * 1e6, 2) if gossip else None,
            "requests": len(schedule), "ok": ok, "cut": st["cut"],
            "speedup_vs_real": round(result.ended_s / wall, 2) if wall else None,
            "wall_us_per_request": round(wall / max(1, len(schedule)) * 1e6, 1),
            "wall_us_per_gossip_message": round(wall / gossip * 1e6, 2) if gossip else None,
            "gossip_messages": gossip, "events": st["events"],
            "coordinator_busy": round(st["coordinator_busy_s"] / result.ended_s, 4) if result.ended_s else None}


def show(row: dict[str, Any]) -> None:
    per_msg = row["cpu_us_per_gossip_message"]
    print(f"{row['arm']:<11} {row['nodes']:>6} nodes {row['rps']:>7g} req/s  virtual {row['virtual_s']:>7g} s  "
          f"wall {row['wall_s']:>8.2f} s  cpu {row['cpu_s']:>8.2f} s  x{row['speedup_vs_real']} real time  "
          f"{row['cpu_us_per_request']:>8.1f} cpu us/request  "
          f"{'-' if per_msg is None else f'{per_msg:.2f}':>6} cpu us/gossip msg  ok {row['ok']}/{row['requests']}"
          + ("  CUT at the budget" if row["cut"] else ""), flush=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="16 nodes, 20 virtual s, 8 req/s (CI)")
    ap.add_argument("--hour", action="store_true", help="1,000 nodes, one virtual hour, 500 req/s (goal: 600 s)")
    ap.add_argument("--largest", action="store_true", help="10 virtual minutes at sizes up to 10,000 nodes "
                                                           "(goal: 30 wall minutes each)")
    ap.add_argument("--nodes", type=int, default=100)
    ap.add_argument("--rps", type=float, default=50.0)
    ap.add_argument("--duration", type=float, default=60.0, help="virtual seconds of arrivals")
    ap.add_argument("--arms", default="centralized,gossip")
    ap.add_argument("--budget", type=float, default=0.0, help="wall seconds per run before it is cut (0: the goal's)")
    ap.add_argument("--sample", type=float, default=1.0, help="nodes.csv sampling period (virtual s)")
    args = ap.parse_args()
    arms = [a for a in args.arms.split(",") if a]
    if args.quick:
        runs = [(16, 8.0, 20.0, 60.0)]
    elif args.hour:
        runs = [(1000, 500.0, 3600.0, args.budget or 600.0)]
    elif args.largest:
        runs = [(n, n * 0.5, 600.0, args.budget or 1800.0) for n in LARGEST_SIZES]
    else:
        runs = [(args.nodes, args.rps, args.duration, args.budget or 3600.0)]
    rows = []
    for arm in arms:
        for nodes, rps, duration, budget in runs:
            row = one_run(nodes, rps, duration, arm, budget, args.sample)
            show(row)
            rows.append(row)
            if args.largest and row["cut"]:
                break  # larger ones take longer still
    largest = {arm: max((r["nodes"] for r in rows if r["arm"] == arm and not r["cut"]), default=None) for arm in arms}
    if args.largest:
        print("largest cluster within the budget: " + ", ".join(f"{a} {n}" for a, n in largest.items()))
    print(json.dumps({"runs": rows, "largest": largest if args.largest else None}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
