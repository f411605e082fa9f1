"""The built-in studies: the prototype's three experiments and a scaling sweep.

Each preset is the tables of a study file (cli/study/spec.py), built for a duration so that
`--duration` moves the faults with it. The hypotheses are the prototype's, from its
"Experiments" section (central-coordinator.md of the original schedctl prototype):

1. performance — "Centralized approach achieves higher cache hit rate due to global state."
   10 workers, both schedulers, cache hit rates and latency distributions compared.
2. fault-tolerance — "Decentralized approach recovers faster from node failures."
   The coordinator killed mid-run vs a random gossip node killed; time to recovery and
   request success rate.
3. utilization — "Centralized approach achieves more even resource distribution."
   Per-worker queue depth and GPU utilisation over time, their dispersion compared.

Sizes (defaults) are chosen to finish within 20 minutes on a 2-core machine, measured
there: a run costs its duration plus ~15-20 s of cluster start, drain and plots (10
nodes: ~20 s). `--quick` shrinks each to a 1-2 minute smoke test (CI); `--repeats` and
`--duration` scale it up (the prototype's own runs were 60 s; 300 s is `--duration 300`).

`--arms` picks the schedulers a preset compares (default centralized and gossip; e.g.
`centralized,gossip,hybrid`): one arm each, except in fault-tolerance, where the arms are the
faults each scheduler is exposed to (`fault_arms`). A hypothesis naming an arm left out is
left out with it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from cli.experiment.spec import BOTH, check_schedulers, parse_schedulers
from daemons.core.errors import ConfigError

Tables = dict[str, Any]
Arms = tuple[str, ...]  # the schedulers a preset compares
LATENCY = ["p50_ttft", "p99_ttft", "avg_ttft", "p50_latency", "p99_latency", "avg_tpot", "p99_tpot"]


def parse_arms(value: str) -> Arms:
    """`--arms`: centralized, gossip, hybrid, a comma-separated list of them, both or all."""
    arms = parse_schedulers(value)
    check_schedulers(arms, "--arms")
    return arms


def one_arm_each(arms: Arms) -> list[dict[str, Any]]:
    return [{"name": s, "scheduler": s} for s in arms]


def fault_arms(arms: Arms, at: float) -> list[dict[str, Any]]:
    """Experiment 2's arms per scheduler. A hybrid cluster's single point of failure is its
    coordinator, as a centralized one's: it is killed, alone (its peers carry on in degraded
    mode) and with a standby (the peers follow it once it takes over)."""
    kill_coordinator = [f"{at:g}:kill:coordinator"]
    per_scheduler: dict[str, list[dict[str, Any]]] = {
        "centralized": [{"name": "centralized", "scheduler": "centralized", "faults": kill_coordinator},
                        {"name": "centralized-standby", "scheduler": "centralized", "standby_coordinator": True,
                         "faults": kill_coordinator}],
        "gossip": [{"name": "gossip", "scheduler": "gossip", "faults": [f"{at:g}:kill:random-node"]}],
        "hybrid": [{"name": "hybrid", "scheduler": "hybrid", "faults": kill_coordinator},
                   {"name": "hybrid-standby", "scheduler": "hybrid", "standby_coordinator": True,
                    "faults": kill_coordinator}],
    }
    return [arm for s in arms for arm in per_scheduler[s]]


def _compared(tables: Tables) -> Tables:
    """The tables without the hypotheses naming an arm they do not run."""
    names = {a["name"] for a in tables["arms"]}
    tables["hypotheses"] = [h for h in tables["hypotheses"] if set(h["arms"]) <= names]
    return tables


def performance(quick: bool, duration: float | None, arms: Arms = BOTH) -> Tables:
    """Experiment 1. Default: 10 nodes, 60 s at 5 req/s (CV 8), 4 repeats × 2 arms = 8 runs, ~12 min.
    Quick: 3 nodes, 5 s at 2 req/s, 2 repeats = 4 runs, ~1.5 min."""
    seconds = duration or (5.0 if quick else 60.0)
    return {
        "study": {"name": "performance", "repeats": 2 if quick else 4, "seed": 1000,
                  "description": "Experiment 1: centralized vs decentralized performance on identical schedules "
                                 f"({'3' if quick else '10'} nodes, {seconds:g} s at "
                                 f"{'2' if quick else '5'} req/s, CV 8).",
                  "metrics": ["cache_hit_rate", *LATENCY, "goodput", "request_throughput", "success_rate"]},
        "base": {"nodes": 3 if quick else 10, "duration_s": seconds, "rps": 2.0 if quick else 5.0, "cv": 8.0},
        "arms": one_arm_each(arms),
        "hypotheses": [{"text": "Centralized approach achieves higher cache hit rate due to global state.",
                        "metric": "cache_hit_rate", "direction": "higher", "arms": ["centralized", "gossip"]}],
    }


def fault_tolerance(quick: bool, duration: float | None, arms: Arms = BOTH) -> Tables:
    """Experiment 2. Default: 4 nodes, 40 s of Poisson arrivals at 4 req/s, the fault at 40% of the run;
    3 arms × 3 repeats = 9 runs, ~9 min. The gossip arm's victim is `random-node`, drawn from each
    repeat's seed. Requests wait at most 20 s (a dead coordinator's requests would otherwise hold the
    run for the default 120 s). Quick: 3 nodes, 12 s at 2 req/s, 2 repeats = 6 runs, ~2 min."""
    seconds = duration or (12.0 if quick else 40.0)
    at = round(seconds * 0.4, 1)
    return {
        "study": {"name": "fault-tolerance", "repeats": 2 if quick else 3, "seed": 2000,
                  "description": f"Experiment 2: at t = {at:g} s the coordinator is killed (alone, and with a "
                                 "standby coordinator) vs a random gossip node killed; Poisson arrivals.",
                  "metrics": ["recovery_time_censored", "avg_recovery_time", "avg_detection_time", "avg_drain_time",
                              "recovered_fraction",
                              "success_rate", "requests_affected", "failed_requests", "p99_ttft", "goodput"]},
        "base": {"nodes": 3 if quick else 4, "duration_s": seconds, "rps": 2.0 if quick else 4.0, "cv": 1.0,
                 "timeout_s": 20.0},
        "arms": fault_arms(arms, at),
        "hypotheses": [
            {"text": "Decentralized approach recovers faster from node failures (than a coordinator with a standby).",
             "metric": "recovery_time_censored", "direction": "lower", "arms": ["gossip", "centralized-standby"]},
            {"text": "Decentralized approach keeps a higher request success rate through the failure "
                     "(than a lone coordinator).",
             "metric": "success_rate", "direction": "higher", "arms": ["gossip", "centralized"]},
            {"text": "Hybrid peers keep a higher request success rate than a lone coordinator when it is "
                     "killed (they place cold starts themselves, degraded).",
             "metric": "success_rate", "direction": "higher", "arms": ["hybrid", "centralized"]},
        ],
    }


def utilization(quick: bool, duration: float | None, arms: Arms = BOTH) -> Tables:
    """Experiment 3. Default: 6 nodes, 60 s at 6 req/s (CV 8), 4 repeats × 2 arms = 8 runs, ~11 min.
    Quick: 3 nodes, 6 s at 3 req/s, 2 repeats = 4 runs, ~1 min."""
    seconds = duration or (6.0 if quick else 60.0)
    return {
        "study": {"name": "utilization", "repeats": 2 if quick else 4, "seed": 3000,
                  "description": "Experiment 3: per-node queue depth and GPU memory/compute utilisation; their "
                                 "dispersion across nodes each second (CV, Jain's index, max/mean), averaged "
                                 "over the run.",
                  "metrics": ["queue_cv", "queue_jain", "queue_max_over_mean", "compute_util_cv",
                              "compute_util_jain", "mem_util_cv", "mem_util_jain", "avg_queue_depth",
                              "avg_gpu_utilization", "avg_memory_utilization", "p99_ttft"]},
        "base": {"nodes": 3 if quick else 6, "duration_s": seconds, "rps": 3.0 if quick else 6.0, "cv": 8.0},
        "arms": one_arm_each(arms),
        "hypotheses": [
            {"text": "Centralized approach achieves more even resource distribution (queue depth CV across "
                     "nodes).",
             "metric": "queue_cv", "direction": "lower", "arms": ["centralized", "gossip"]},
            {"text": "Centralized approach achieves more even resource distribution (Jain's index of queue "
                     "depth).",
             "metric": "queue_jain", "direction": "higher", "arms": ["centralized", "gossip"]},
        ],
    }


def scaling(quick: bool, duration: float | None, arms: Arms = BOTH) -> Tables:
    """Offered load past saturation at two cluster sizes. Default: nodes 4 and 8 × 3 rates (3, 12, 30 req/s,
    CV 1) × 2 arms × 2 repeats = 24 runs of 10 s, requests waiting at most 20 s, ~15-18 min (at 2, 6 and
    12 req/s goodput still rose at both sizes on a 2-core host, 15 min). 16 and 32
    nodes do not fit a 2-core machine in 20 minutes: add them with a study file on a bigger host.
    Quick: nodes 2 and 3 × rates 1 and 4, 5 s, 1 repeat = 8 runs, ~2 min."""
    seconds = duration or (5.0 if quick else 10.0)
    return {
        "study": {"name": "scaling", "repeats": 1 if quick else 2, "seed": 4000, "sweep": "rps",
                  "description": "Goodput and p99 TTFT vs offered load per arm and cluster size; the saturation "
                                 "point marked: the lowest offered load at which fewer than 90% of the "
                                 "requests meet the SLOs.",
                  "metrics": ["goodput", "slo_attainment", "request_throughput", "p99_ttft", "success_rate",
                              "cache_hit_rate"]},
        "base": {"duration_s": seconds, "cv": 1.0, "timeout_s": 20.0},
        "arms": one_arm_each(arms),
        "vary": {"nodes": [2, 3] if quick else [4, 8], "rps": [1.0, 4.0] if quick else [3.0, 12.0, 30.0]},
        "hypotheses": [{"text": "Centralized placement sustains a higher goodput (schedctl's question; the "
                                "prototype states none for scaling).",
                        "metric": "goodput", "direction": "higher", "arms": ["centralized", "gossip"]}],
    }


def scaling_sim(quick: bool, duration: float | None, arms: Arms = BOTH) -> Tables:
    """The scaling sweep far past one machine, on the simulated engine (daemons/sim): nodes 16 → 10,000 ×
    offered loads of 0.25 → 4 req/s per node (`rps_per_node`: every size is offered the same load per
    node, so each size's curve finds its own saturation point) × 2 arms, 1 repeat of 60 s. The
    coordinator is charged its measured cost per decision (--decision-cost-us), so where its decision
    rate caps the cluster shows as the centralized arm's knee moving to lower loads per node as the
    cluster grows. The large points take days (the study says its estimate first; --yes runs it, or
    shrink it in a study file). Quick: nodes 16 and 64 × 0.25 and 1 req/s per node, 10 s: seconds."""
    seconds = duration or (10.0 if quick else 60.0)
    return {
        "study": {"name": "scaling-sim", "repeats": 1, "seed": 5000, "sweep": "rps_per_node",
                  "description": "Goodput and p99 TTFT vs offered load per node, per arm and cluster size, "
                                 "simulated (--engine sim): the saturation point of each arm, up to 10,000 nodes.",
                  "metrics": ["goodput", "slo_attainment", "request_throughput", "p99_ttft", "success_rate",
                              "cache_hit_rate"]},
        "base": {"duration_s": seconds, "cv": 1.0, "timeout_s": 20.0, "engine": "sim"},
        "arms": one_arm_each(arms),
        "vary": {"nodes": [16, 64] if quick else [16, 100, 1000, 10_000],
                 "rps_per_node": [0.25, 1.0] if quick else [0.25, 0.5, 1.0, 2.0, 4.0]},
        "hypotheses": [{"text": "Centralized placement sustains a higher goodput (simulated).",
                        "metric": "goodput", "direction": "higher", "arms": ["centralized", "gossip"]}],
    }


PRESETS: dict[str, Callable[[bool, float | None, Arms], Tables]] = {
    "performance": performance, "fault-tolerance": fault_tolerance, "utilization": utilization, "scaling": scaling,
    "scaling-sim": scaling_sim,
}


def preset(name: str, quick: bool = False, duration: float | None = None, arms: Arms = BOTH) -> Tables:
    if name not in PRESETS:
        raise ConfigError(f"unknown study {name!r}: use a preset ({', '.join(PRESETS)}) or the path of a "
                          "study file (.toml)")
    return _compared(PRESETS[name](quick, duration, arms))
