"""How long a study will take, before it starts: a sweep that would run for days asks first.

A real run costs its seconds of arrivals plus the cluster's start, drain and report
(REAL_OVERHEAD_S, measured on the presets: ~15-20 s). A simulated run costs wall time per
request and per node-second of virtual time (the nodes' state beats, the collector's
samples, the gossip members' timers), per arm: SIM_COSTS_US, measured with
scripts/bench_sim.py (see docs/simulation.md for the figures and the machine).
"""

from __future__ import annotations

from cli.experiment.spec import ExperimentSpec
from cli.study.spec import Study

REAL_OVERHEAD_S = 20.0
# arm -> (µs per request, µs per node per virtual second), each times the cluster size for
# gossip (a peer builds its view of every member per decision, and record gossip grows with
# the membership); scripts/bench_sim.py on the 2-core host (docs/simulation.md, "Figures"):
# centralized from 1,000 nodes at 500 req/s (CPU seconds), gossip from 1,000 nodes at 50 req/s
# (wall seconds on a loaded host: an overestimate). Hybrid: gossip's times 2.5, from 100 nodes
# at 50 req/s, where it took 2.3 times gossip's CPU (docs/simulation.md, "The hybrid arm";
# not yet measured at 1,000 nodes).
SIM_COSTS_US = {"centralized": (400.0, 130.0), "gossip": (10.0, 5.0), "hybrid": (25.0, 12.5)}
PER_NODE = {"centralized": False, "gossip": True, "hybrid": True}
ASK_ABOVE_S = 24 * 3600.0  # a study estimated to run longer needs --yes
DRAIN_S = 10.0  # virtual seconds after the last arrival, while the last requests finish


def run_seconds(spec: ExperimentSpec) -> float:
    """Estimated wall seconds of one experiment (every arm it names)."""
    duration = spec.workload.duration_s
    total = 0.0
    for arm in spec.schedulers:
        if spec.engine != "sim":
            total += duration + REAL_OVERHEAD_S
            continue
        per_request, per_node_s = SIM_COSTS_US[arm]
        scale = spec.node_count if PER_NODE[arm] else 1
        requests = spec.workload.rps * duration
        total += (requests * per_request + spec.node_count * (duration + DRAIN_S) * per_node_s) * scale / 1e6
    return total


def study_seconds(study: Study) -> float:
    """Estimated wall seconds of every run of `study`."""
    return sum(run_seconds(study.experiment(arm, point, seed))
               for point in study.points() for arm in study.arms for seed in study.seeds)


def describe(seconds: float) -> str:
    if seconds >= 2 * 86400:
        return f"{seconds / 86400:.1f} days"
    if seconds >= 2 * 3600:
        return f"{seconds / 3600:.1f} hours"
    return f"{seconds / 60:.0f} minutes"
