"""What an experiment is: cluster, schedulers, policy, workload, SLOs — all in one frozen spec.

An experiment file is TOML:

    [experiment]
    name = "my_comparison"
    scheduler = "both"              # centralized | gossip | hybrid | both | all | "centralized,hybrid"
    policy = "affinity-score"       # the coordinator's policy (centralized)
    gossip_policy = "power-of-d"    # the peers' policy (gossip)
    timeout_s = 120                 # per-request timeout in the load generator
    results_dir = "results"
    faults = ["5:kill:node-1"]      # AT:KIND:TARGET[:DURATION], see cli/experiment/faults.py
    retries = 2                     # resends of a request whose node failed it (same request id)
    attempt_timeout_s = 10          # an attempt silent this long is resent elsewhere (0 = never)
    standby_coordinator = false     # centralized: a backup coordinator takes over if the primary dies
    failover_after_s = 5            # its patience: primary silence before it asks the nodes to take over
    rebalance = false               # centralized: live-migrate running requests to even out load (Llumnix)
    live_migration = true           # centralized: carry out the policy's MIGRATE (false: its next best option)
    insecure = false                # local cluster without CURVE (to measure its cost); default: per-run keys
    queue_limit = 64                # requests per model that may wait for capacity (coordinator, peers)
    priority = true                 # queues serve higher workload classes first, with aging (--no-priority)
    priority_aging_s = 5.0          # seconds of waiting worth one priority level
    max_running = 0                 # per model on a node: more wait in the node's priority queue (0: no limit)
    admission = "queue"             # queue | slo: shed a request predicted to miss its class's TTFT SLO
    backend = "emulator"            # emulator (a process per loaded model) | emulator-inproc (one process per node)
    engine = "real"                 # real: processes on loopback; sim: one process on a virtual clock
    affinity = "static"             # static | learned: rank nodes by the TTFT each has measured
    prewarm = "off"                 # off | on: load models ahead of a forecast burst (coordinator, peers)
    forecast_alpha = 0.5            # pre-warm forecaster (Holt): level weight, 0 < a <= 1
    forecast_beta = 0.3             # trend weight, 0 <= b <= 1
    forecast_horizon_s = 5.0        # how far ahead it forecasts
    prewarm_instance_rps = 2.0      # req/s one ready instance serves before another copy pays off

    [experiment.slo]                # goodput counts requests meeting every SLO given
    ttft_ms = 2000
    tpot_ms = 100

    [workload]                      # see daemons/loadgen/workload.py
    duration_s = 60
    rps = 5.0
    cv = 8.0
    models = ["facebook/opt-125m", "meta-llama/Llama-2-7b-hf"]   # each served by a [[nodes]] group

    [[nodes]]                       # repeat for each kind of node
    count = 2
    gpu = "a100-80gb"
    checkpoint_tier = "ssd"
    models = ["facebook/opt-125m", "meta-llama/Llama-2-7b-hf"]

Every key, with its default: docs/configuration.md. The spec's `to_dict()` goes into
manifest.json and `from_dict()` reads it back, so
`schedctl experiment run --from DIR/manifest.json` repeats a run exactly.
"""

from __future__ import annotations

import dataclasses
import math
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cli.experiment.faults import Fault, check_targets, check_timing, parse_faults
from daemons.core.errors import ConfigError
from daemons.core.settings import build
from daemons.loadgen.workload import WorkloadSpec
from daemons.loadgen.workload import from_dict as workload_from_dict
from daemons.policy import DEFAULT_GOSSIP_POLICY, DEFAULT_POLICY, get_policy
from daemons.policy.admission import DEFAULT_LIMIT, check_limits
from daemons.policy.forecast import DEFAULT_ALPHA, DEFAULT_BETA, DEFAULT_HORIZON_S
from daemons.policy.prewarm import DEFAULT_INSTANCE_RPS, prewarm_settings
from daemons.policy.priority import DEFAULT_AGING_S, check_aging
from daemons.policy.slo import check_admission
from daemons.profiles import load_gpu, load_model, load_tier

# The arms: centralized (one coordinator places all), gossip (peers place all), hybrid (peers
# place warm requests, the coordinator cold starts: daemons/policy/hybrid.py). `both` is the
# first two, as it always was; `all` is every arm; or a comma-separated list of them.
BOTH = ("centralized", "gossip")
SCHEDULERS = (*BOTH, "hybrid")
SCHEDULER_HELP = "centralized, gossip, hybrid, a comma-separated list of them (e.g. centralized,hybrid), both or all"
# A local cluster's nodes serve their emulated GPUs through emulator processes (TGI's HTTP
# protocol, the fidelity path) or in their own process (daemons/node/inproc.py: one process per node).
LOCAL_BACKENDS = ("emulator", "emulator-inproc")
ENGINES = ("real", "sim")  # real daemons on loopback | the simulator (daemons/sim) on a virtual clock
SIM_MAX_NODES = 10_000  # the coordinator's node table (ClusterBook MAX_NODES): the largest simulated cluster
GOSSIP_PRESETS = ("lan", "wan", "local", "ci")  # daemons/gossip/config.py GossipConfig.preset
MAX_RETRIES = 100
MODELS = ("facebook/opt-125m", "meta-llama/Llama-2-7b-hf", "meta-llama/Llama-3.1-8B-Instruct")
# Azure-conversation-like shapes, capped so every request fits OPT's 2048-token context.
# 60 s of arrivals (the prototype's experiment length) keeps the first run to a few minutes;
# the prototype's load-generator default of 300 s is `--duration 300`.
DEFAULT_WORKLOAD: dict[str, Any] = {
    "duration_s": 60.0, "rps": 5.0, "cv": 8.0, "seed": 42, "models": list(MODELS),
    "popularity": "zipf", "zipf_s": 1.0,
    "prompt_tokens": "lognormal:mean=512,median=400,max=1500",
    "output_tokens": "lognormal:mean=128,median=96,max=500",
}


@dataclass(frozen=True)
class NodeGroup:
    """`count` identical nodes."""

    count: int = 1  # identical nodes in this group
    gpu: str = "a100-80gb"  # GPU profile (daemons/profiles/gpus/*.toml)
    checkpoint_tier: str = "ssd"  # where checkpoints load from (daemons/profiles/tiers.toml)
    models: tuple[str, ...] = MODELS  # the catalog (daemons/profiles/models/*.toml)
    kv_tokens: int = 16384  # KV budget per instance (TGI's --max-batch-total-tokens)
    init_s: float = 2.0  # start-up of an instance besides copying weights

    def __post_init__(self) -> None:
        if self.count < 1:
            raise ConfigError(f"a [[nodes]] group needs count >= 1, got {self.count}")
        if not self.models:
            raise ConfigError("a [[nodes]] group needs at least one model in models")
        if self.kv_tokens < 1 or not (math.isfinite(self.init_s) and self.init_s >= 0):
            raise ConfigError(f"a [[nodes]] group needs kv_tokens >= 1 and init_s >= 0, got {self.kv_tokens} "
                              f"and {self.init_s}")
        # Emulated nodes need a profile of their GPU, tier and every model: refused here, not
        # by a node that exits while the cluster starts.
        load_gpu(self.gpu)
        load_tier(self.checkpoint_tier)
        for model in self.models:
            load_model(model)


# Two big GPUs that hold every model, two small ones that hold one 7-8B model at a time:
# requests for the other model evict it, so COLD_START and eviction really happen.
DEFAULT_NODES = (NodeGroup(count=2, gpu="a100-80gb"), NodeGroup(count=2, gpu="a10g-24gb"))


@dataclass(frozen=True)
class Slo:
    ttft_ms: float | None = None  # time to first token, from the scheduled send time
    tpot_ms: float | None = None  # time per output token after the first
    e2el_ms: float | None = None  # end-to-end latency


@dataclass(frozen=True)
class ExperimentSpec:
    name: str = "scheduler_comparison"  # in the result directories' names
    schedulers: tuple[str, ...] = BOTH  # the arms, each on the identical schedule
    policy: str = DEFAULT_POLICY  # the coordinator's placement policy (centralized)
    gossip_policy: str = DEFAULT_GOSSIP_POLICY  # the peers' placement policy (gossip)
    gossip_preset: str = "lan"  # lan | local | ci: memberlist timings of the peers
    timeout_s: float = 120.0  # per-request timeout in the load generator (also the queues' wait)
    results_dir: str = "results"  # where result directories go
    slo: Slo = Slo(ttft_ms=5000.0, tpot_ms=200.0)
    workload: WorkloadSpec = field(default_factory=lambda: workload_from_dict(DEFAULT_WORKLOAD))
    nodes: tuple[NodeGroup, ...] = DEFAULT_NODES
    faults: tuple[str, ...] = ()  # AT:KIND:TARGET[:DURATION], as written (the manifest keeps the text)
    retries: int = 2  # resends of a request whose node failed it (same request id)
    # Longer than any healthy wait between replies (a cold start, a queue), shorter than timeout_s.
    attempt_timeout_s: float = 10.0
    cluster_file: str = ""  # a deployed cluster (written by deploy.yml) instead of a local one
    standby_coordinator: bool = False  # centralized, hybrid: a Binary Star backup (daemons/coordinator/failover.py)
    failover_after_s: float = 5.0  # the standby's patience: primary silence before it asks the nodes
    # Centralized: the coordinator's periodic rebalancer live-migrates running requests
    # (daemons/policy/rebalance.py); the gossip arm has no such thing and runs without it.
    rebalance: bool = False
    # Centralized: a policy's MIGRATE (startup-optimal) is carried out by live migrations;
    # false: its next best option instead, to measure what migration changes.
    live_migration: bool = True
    insecure: bool = False  # local cluster without CURVE; by default every run makes its own keys
    # Admission queue of the coordinator and of every gossip peer; they wait at most timeout_s.
    queue_limit: int = DEFAULT_LIMIT
    # Priority classes (daemons/policy/priority.py): the queues of the coordinator, the peers and
    # the nodes serve higher classes first, with aging; false: arrival order (--no-priority).
    priority: bool = True
    priority_aging_s: float = DEFAULT_AGING_S  # seconds of waiting worth one priority level
    # Requests per model a node sends its backend at once; more wait in its priority queue (0: no limit).
    max_running: int = 0
    admission: str = "queue"  # queue | slo: shed a request whose predicted TTFT exceeds its class's SLO
    # Local cluster: each node's instances are emulator processes (HTTP, as TGI) or run inside the node.
    backend: str = "emulator"
    # real: the daemons as processes on loopback; sim: the same logic in one process on a virtual
    # clock (daemons/sim), for clusters far larger than one machine.
    engine: str = "real"
    # sim only: CPU microseconds the simulated coordinator spends per decision (0: the default,
    # daemons/sim/coordinator.py Costs; measure yours with scripts/bench_coordinator.py).
    decision_cost_us: float = 0.0
    # Learned affinity (daemons/policy/learned.py) and predictive pre-warming (prewarm.py),
    # for the coordinator and every gossip peer alike.
    affinity: str = "static"  # static | learned
    prewarm: str = "off"  # off | on
    forecast_alpha: float = DEFAULT_ALPHA
    forecast_beta: float = DEFAULT_BETA
    forecast_horizon_s: float = DEFAULT_HORIZON_S
    prewarm_instance_rps: float = DEFAULT_INSTANCE_RPS

    def __post_init__(self) -> None:
        for key in ("name", "policy", "gossip_policy", "gossip_preset", "results_dir", "cluster_file"):
            if not isinstance(getattr(self, key), str):
                raise ConfigError(f"{key} must be a string, got {getattr(self, key)!r}")
        for key in ("standby_coordinator", "rebalance", "live_migration"):
            if not isinstance(getattr(self, key), bool):
                raise ConfigError(f"{key} must be true or false, got {getattr(self, key)!r}")
        check_schedulers(self.schedulers)
        if not self.name or "/" in self.name or " " in self.name:
            raise ConfigError(f"experiment name {self.name!r} must be non-empty, without spaces or '/'")
        if not (math.isfinite(self.timeout_s) and self.timeout_s > 0):
            raise ConfigError(f"timeout_s {self.timeout_s} must be > 0 (--timeout SECONDS)")
        if self.standby_coordinator and not {"centralized", "hybrid"} & set(self.schedulers):
            raise ConfigError("--standby-coordinator backs up the coordinator of a centralized or hybrid arm: add "
                              "--scheduler centralized (or both, or hybrid), or drop it")
        if self.rebalance and "centralized" not in self.schedulers:
            raise ConfigError("--rebalance is the centralized coordinator's (gossip peers do not migrate): add "
                              "--scheduler centralized (or both), or drop it")
        if not (isinstance(self.retries, int) and 0 <= self.retries <= MAX_RETRIES):
            raise ConfigError(f"retries {self.retries} must be a whole number in 0..{MAX_RETRIES}")
        if not (math.isfinite(self.attempt_timeout_s) and self.attempt_timeout_s >= 0):
            raise ConfigError(f"attempt_timeout_s {self.attempt_timeout_s} must be >= 0 (0 = never resend)")
        if self.gossip_preset not in GOSSIP_PRESETS:
            raise ConfigError(f"gossip_preset {self.gossip_preset!r} is unknown; use one of "
                              f"{', '.join(GOSSIP_PRESETS)}")
        check_timing(self.fault_plan, self.workload.duration_s)
        if not self.failover_after_s >= 2.0:
            raise ConfigError(f"failover_after_s {self.failover_after_s} must be >= 2 (two coordinator heartbeats)")
        check_limits(self.queue_limit, self.timeout_s, "[experiment] ")
        self._check_priority()
        self._check_backend()
        get_policy(self.policy, "centralized")  # an unknown name fails here, before any process starts
        get_policy(self.gossip_policy, "gossip")
        # a hybrid arm runs both: its coordinator `policy`, its peers `gossip_policy` (cluster.py)
        if {"centralized", "hybrid"} & set(self.schedulers):
            get_policy(self.policy, "centralized", self.affinity)
        if {"gossip", "hybrid"} & set(self.schedulers):
            get_policy(self.gossip_policy, "gossip", self.affinity)
        prewarm_settings(self.prewarm, self.forecast_alpha, self.forecast_beta, self.forecast_horizon_s,
                         self.prewarm_instance_rps, "[experiment] ")
        if self.cluster_file:
            if self.engine == "sim":
                raise ConfigError("--cluster drives a deployed cluster, which the simulated engine does not use: "
                                  "drop --cluster, or run with --engine real")
            parse_faults(self.faults)  # their targets are checked against the cluster file's nodes (runner)
            if self.insecure:
                raise ConfigError("--insecure turns CURVE off in a local cluster: a deployed cluster's security is "
                                  "set by its deployment (the cluster file's [security]); drop the flag with --cluster")
            if self.rebalance or not self.live_migration:
                raise ConfigError("--rebalance and --no-live-migration configure a local coordinator: a deployed "
                                  "coordinator's are set in its [coordinator] table (rebalance, live_migration); "
                                  "drop the flag with --cluster")
            if self.standby_coordinator:
                raise ConfigError("--standby-coordinator starts a local standby: a deployed cluster's standby is "
                                  "deployed with it (ansible); drop the flag with --cluster")
            return  # the deployed nodes' catalogs are checked by the cluster itself
        self._check_models()
        check_targets(self.fault_plan, self.node_count, self.schedulers)
        self._check_engine()

    def _check_engine(self) -> None:
        """Options one engine has and the other has not: one line each, naming the fix."""
        if self.engine not in ENGINES:
            raise ConfigError(f"engine {self.engine!r} is unknown; use real or sim (--engine)")
        if not (math.isfinite(self.decision_cost_us) and self.decision_cost_us >= 0):
            raise ConfigError(f"decision_cost_us {self.decision_cost_us} must be >= 0 (0: the measured default)")
        if self.engine == "real":
            if self.decision_cost_us:
                raise ConfigError("--decision-cost-us sets the simulated coordinator's CPU cost: add --engine sim, "
                                  "or drop it (a real coordinator spends what it spends)")
            return
        real_only = [(self.insecure, "--insecure (the simulator has no sockets to secure)"),
                     (self.backend != "emulator", "--backend (the simulator models the emulator itself)")]
        for present, what in real_only:
            if present:
                raise ConfigError(f"{what} is an option of the real engine only: drop it, or run with --engine real")
        if self.node_count > SIM_MAX_NODES:
            raise ConfigError(f"{self.node_count} nodes is over the simulator's cap of {SIM_MAX_NODES} (the "
                              f"coordinator's node table, max_nodes): use --nodes {SIM_MAX_NODES} or fewer")

    def _check_backend(self) -> None:
        if self.backend not in LOCAL_BACKENDS:
            raise ConfigError(f"backend {self.backend!r} is unknown; use emulator (an emulator process per model, "
                              "the default) or emulator-inproc (the emulator inside each node: one process per node)")
        if self.cluster_file and self.backend != "emulator":
            raise ConfigError("--backend configures a local cluster's nodes: a deployed node's backend is set in "
                              "its [node] table (backend); drop the flag with --cluster")

    def _check_priority(self) -> None:
        if not isinstance(self.priority, bool):
            raise ConfigError(f"priority must be true or false, got {self.priority!r}")
        check_aging(self.priority_aging_s, "[experiment] ")
        check_admission(self.admission, "[experiment] ")
        if isinstance(self.max_running, bool) or not isinstance(self.max_running, int) or self.max_running < 0:
            raise ConfigError(f"max_running must be a whole number >= 0 (0: no limit), got {self.max_running!r}")

    @property
    def fault_plan(self) -> tuple[Fault, ...]:
        return parse_faults(self.faults)

    def _check_models(self) -> None:
        served = {m for g in self.nodes for m in g.models}
        missing = sorted(set(self.workload.models) - served)
        if missing:
            raise ConfigError(f"workload models {missing} are served by no node; add them to a [[nodes]] "
                              "group's models or remove them from [workload] models")

    @property
    def node_count(self) -> int:
        return sum(g.count for g in self.nodes)

    def node_names(self) -> list[tuple[str, NodeGroup]]:
        groups = [g for g in self.nodes for _ in range(g.count)]
        return [(f"node-{i}", g) for i, g in enumerate(groups)]

    def to_dict(self) -> dict[str, Any]:
        return {
            "experiment": {"name": self.name, "scheduler": list(self.schedulers), "policy": self.policy,
                           "gossip_policy": self.gossip_policy, "gossip_preset": self.gossip_preset,
                           "timeout_s": self.timeout_s, "faults": list(self.faults),
                           "retries": self.retries, "attempt_timeout_s": self.attempt_timeout_s,
                           "results_dir": self.results_dir, "slo": dataclasses.asdict(self.slo),
                           "cluster_file": self.cluster_file, "standby_coordinator": self.standby_coordinator,
                           "failover_after_s": self.failover_after_s, "insecure": self.insecure,
                           "queue_limit": self.queue_limit, "priority": self.priority,
                           "priority_aging_s": self.priority_aging_s, "max_running": self.max_running,
                           "admission": self.admission, "backend": self.backend, "engine": self.engine,
                           "decision_cost_us": self.decision_cost_us, "affinity": self.affinity,
                           "prewarm": self.prewarm, "forecast_alpha": self.forecast_alpha,
                           "forecast_beta": self.forecast_beta, "forecast_horizon_s": self.forecast_horizon_s,
                           "prewarm_instance_rps": self.prewarm_instance_rps,
                           "rebalance": self.rebalance, "live_migration": self.live_migration},
            "workload": self.workload.to_dict(),
            "nodes": [dataclasses.asdict(g) for g in self.nodes],
        }


def scaled_nodes(groups: tuple[NodeGroup, ...], count: int) -> tuple[NodeGroup, ...]:
    """`count` nodes cycling through the groups' kinds, so --nodes keeps the GPU mix."""
    if count < 1:
        raise ConfigError(f"--nodes must be at least 1, got {count}")
    kinds = [dataclasses.replace(g, count=1) for g in groups]
    picked = [kinds[i % len(kinds)] for i in range(count)]
    merged: dict[NodeGroup, int] = {}
    for kind in picked:
        merged[kind] = merged.get(kind, 0) + 1
    return tuple(dataclasses.replace(k, count=n) for k, n in merged.items())


def check_schedulers(schedulers: tuple[str, ...], what: str = "scheduler") -> None:
    """Every arm named is known, and named once (`what`: the setting, for the message)."""
    bad = [s for s in schedulers if s not in SCHEDULERS]
    if bad or not schedulers:
        raise ConfigError(f"{what} {', '.join(map(repr, bad)) or '(none)'} unknown; use {SCHEDULER_HELP}")
    if len(set(schedulers)) != len(schedulers):
        raise ConfigError(f"{what} list {','.join(schedulers)} names an arm twice; name each once")


def parse_schedulers(value: str | list[str]) -> tuple[str, ...]:
    """The arms a `scheduler` setting names: one, `both`, `all`, a comma-separated list, or a
    TOML list (ExperimentSpec checks the names)."""
    if isinstance(value, list):
        return tuple(str(v).strip() for v in value)
    if not isinstance(value, str):
        raise ConfigError(f"scheduler must be {SCHEDULER_HELP}, got {value!r}")
    if value.strip() == "both":
        return BOTH
    if value.strip() == "all":
        return SCHEDULERS
    return tuple(v.strip() for v in value.split(","))


def from_dict(data: dict[str, Any], where: str) -> ExperimentSpec:
    """An ExperimentSpec from the tables of an experiment file or a manifest."""
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected tables [experiment], [workload], [[nodes]], got {type(data).__name__}")
    for table in ("experiment", "workload"):
        if not isinstance(data.get(table, {}), dict):
            raise ConfigError(f"{where}: [{table}] must be a table of settings")
    nodes = data.get("nodes", [])
    if not isinstance(nodes, list) or not all(isinstance(g, dict) for g in nodes):
        raise ConfigError(f"{where}: nodes must be a list of [[nodes]] tables")
    unknown = sorted(set(data) - {"experiment", "workload", "nodes"})
    if unknown:
        raise ConfigError(f"{where}: unknown table(s) {unknown}; use [experiment], [workload], [[nodes]]")
    exp = dict(data.get("experiment", {}))
    if "scheduler" in exp:
        exp["schedulers"] = parse_schedulers(exp.pop("scheduler"))
    if "slo" in exp:
        if not isinstance(exp["slo"], dict):
            raise ConfigError(f"{where}: [experiment.slo] must be a table (ttft_ms, tpot_ms, e2el_ms)")
        exp["slo"] = build(Slo, exp["slo"], f"{where} [experiment.slo]")
    workload = {**DEFAULT_WORKLOAD, **data.get("workload", {})}
    exp["workload"] = workload_from_dict(workload)
    if "nodes" in data:
        exp["nodes"] = tuple(build(NodeGroup, g, f"{where} [[nodes]]") for g in data["nodes"])
    return build(ExperimentSpec, exp, f"{where} [experiment]")


def load_file(path: Path) -> ExperimentSpec:
    try:
        data = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"experiment file {path} not found: check the path") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read experiment file {path} ({exc}): check the path") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"experiment file {path} is not valid TOML ({exc}): fix the syntax") from None
    return from_dict(data, str(path))
