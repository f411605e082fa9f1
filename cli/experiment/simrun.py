"""One arm of an experiment on the simulated engine (`--engine sim`): the same spec, the same
planned schedule, the same results directory.

The arm runs in this process on a virtual clock (daemons/sim): nodes, coordinator or
gossip peers, the load generator and the faults. It writes what a real arm writes —
schedule.csv, requests.csv, nodes.csv, events.csv, manifest.json — so `write_report`
finishes it the same way (summary.csv, plots); the manifest says `"engine": "sim"` and
carries the simulator's own figures (`sim`: wall time, events, gossip messages), and the
report marks the run as simulated. There is no host.csv: no host was measured.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cli.experiment.collector import COORDINATOR_SILENT_S, SILENT_AFTER_S
from cli.experiment.faults import resolve_targets
from cli.experiment.spec import ExperimentSpec
from daemons.loadgen.results import Results, write_requests_csv
from daemons.loadgen.schedule import write_schedule_csv
from daemons.loadgen.workload import PlannedRequest
from daemons.policy.prewarm import prewarm_settings
from daemons.rundir import EVENTS, NODES, REQUESTS, write_events, write_nodes
from daemons.sim import Costs, NodeKind, SimConfig, SimFault, SimResult, simulate

Say = Callable[[str], None]


def sim_config(spec: ExperimentSpec, scheduler: str) -> SimConfig:
    """The simulator's settings for one arm of `spec`."""
    names = spec.node_names()
    faults = resolve_targets(spec.fault_plan, [n for n, _ in names], spec.workload.seed)
    costs = Costs(decision_s=spec.decision_cost_us / 1e6) if spec.decision_cost_us else Costs()
    return SimConfig(
        mode=scheduler,
        nodes=[(n, NodeKind(g.gpu, g.checkpoint_tier, g.models, g.kv_tokens, g.init_s)) for n, g in names],
        policy=spec.gossip_policy if scheduler == "gossip" else spec.policy,
        peer_policy=spec.gossip_policy,  # hybrid: its peers' (`policy` is its coordinator's)
        timeout_s=spec.timeout_s, retries=spec.retries, attempt_timeout_s=spec.attempt_timeout_s,
        queue_limit=spec.queue_limit, priority=spec.priority, priority_aging_s=spec.priority_aging_s,
        admission=spec.admission, gossip_preset=spec.gossip_preset, costs=costs,
        faults=tuple(SimFault(f.at_s, f.kind, f.target, f.duration_s) for f in faults),
        seed=spec.workload.seed, silent_after_s=SILENT_AFTER_S,
        coordinator_silent_s=COORDINATOR_SILENT_S, max_running=spec.max_running,
        rebalance=spec.rebalance and scheduler == "centralized", live_migration=spec.live_migration,
        standby=spec.standby_coordinator and scheduler in ("centralized", "hybrid"),
        failover_after_s=spec.failover_after_s,

        affinity=spec.affinity, prewarm=prewarm_settings(spec.prewarm, spec.forecast_alpha, spec.forecast_beta,
                                                         spec.forecast_horizon_s, spec.prewarm_instance_rps))


def run_sim_arm(spec: ExperimentSpec, scheduler: str, schedule: list[PlannedRequest], run_dir: Path,
                say: Say) -> tuple[Results, dict[str, Any]]:
    """Simulate one arm and write its results directory (not the derived files: write_report)."""
    run_dir.mkdir(parents=True, exist_ok=False)
    write_schedule_csv(run_dir / "schedule.csv", schedule)
    config = sim_config(spec, scheduler)
    say(f"[{scheduler}] simulating {spec.node_count} nodes, {len(schedule)} requests on a virtual clock")
    t0_wall = time.time()
    result = simulate(config, schedule)
    results = Results(result.records, scheduler, f"sim-{spec.name}", t0_wall, result.ended_s, result.ignored)
    write_requests_csv(run_dir / REQUESTS, results)
    write_nodes(run_dir / NODES, [s for s in result.samples if s.t_s <= result.ended_s])
    write_events(run_dir / EVENTS, result.events)
    figures = sim_figures(result, config)
    say(f"[{scheduler}] simulated {result.ended_s:.1f} s in {result.wall_s:.2f} s of wall time "
        f"({figures['wall_us_per_request']:.0f} us per request)")
    return results, figures


def sim_figures(result: SimResult, config: SimConfig) -> dict[str, Any]:
    """What the simulator itself did: for the manifest and scripts/bench_sim.py."""
    n = max(1, len(result.records))
    gossip = result.stats["gossip_messages"]
    return {"wall_s": round(result.wall_s, 3), "virtual_s": round(result.ended_s, 3),
            "wall_us_per_request": result.wall_s / n * 1e6,
            "wall_us_per_gossip_message": result.wall_s / gossip * 1e6 if gossip else None,
            "decision_cost_us": config.costs.decision_s * 1e6, "state_cost_us": config.costs.state_s * 1e6,
            "latency_s": config.latency_s, **result.stats}


def manifest_fields(figures: dict[str, Any]) -> dict[str, Any]:
    """The manifest's marks of a simulated arm."""
    return {"engine": "sim", "simulated": True, "sim": figures}


__all__ = ["manifest_fields", "run_sim_arm", "sim_config", "sim_figures"]
