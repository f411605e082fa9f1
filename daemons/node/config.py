"""The node agent's configuration: the `[node]` table of schedctl.toml."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import tomli_w

from daemons.core.errors import ConfigError
from daemons.core.settings import build, env_overrides, read_section
from daemons.policy.admission import DEFAULT_LIMIT, DEFAULT_TIMEOUT_S, check_limits
from daemons.policy.forecast import DEFAULT_ALPHA, DEFAULT_BETA, DEFAULT_HORIZON_S
from daemons.policy.prewarm import DEFAULT_INSTANCE_RPS, PrewarmSettings, prewarm_settings
from daemons.policy.priority import DEFAULT_AGING_S, check_aging
from daemons.policy.registry import DEFAULT_GOSSIP_POLICY, get_policy
from daemons.policy.slo import check_admission

# The emulator is the default backend: the same flags text-generation-launcher takes.
# {schedctl} is the console script next to the running interpreter.
EMULATOR_LAUNCHER: tuple[str, ...] = (
    "{schedctl}", "start", "emulator", "--model-id", "{model}", "--port", "{port}",
    "--hostname", "127.0.0.1", "--gpu", "{gpu}", "--checkpoint-tier", "{tier}",
    "--max-batch-total-tokens", "{kv_tokens}", "--init-seconds", "{init_s}",
)
# backend = "tgi": TGI's own launcher (or, on a host without a GPU, the emulator installed
# under its name: schedctl-tgi-launcher). Several instances share a GPU, so each gets its own
# port, shard socket, torch.distributed port and memory fraction (TGI docs, launcher.md).
TGI_LAUNCHER: tuple[str, ...] = (
    "text-generation-launcher", "--model-id", "{model}", "--port", "{port}", "--hostname", "127.0.0.1",
    "--num-shard", "1", "--max-batch-total-tokens", "{kv_tokens}", "--shard-uds-path",
    "/tmp/tgi-{port}", "--master-port", "{master_port}", "--cuda-memory-fraction", "{memory_fraction}",
)
# backend = "emulator-inproc": the emulator's engine inside the node's own process, no HTTP and
# no process per instance (daemons/node/inproc.py): one process per node, for large local clusters.
INPROC = "emulator-inproc"
BACKENDS = ("emulator", "tgi", INPROC)
SCHEDULERS = ("centralized", "gossip", "hybrid")
# A Progress to everyone waiting on a request this node holds (serving it, or placing it in
# gossip mode), this often: a fifth or less of any sane attempt timeout (server.py says why).
PROGRESS_EVERY_S = 1.0
# The agent publishes its NodeState at once on a change, but at most once per this gap: a
# burst of changes is coalesced into at most 50 publications a second (the simulated node too).
MIN_PUBLISH_GAP_S = 0.02
DEFAULT_MODELS: tuple[str, ...] = (
    "facebook/opt-125m", "meta-llama/Llama-2-7b-hf", "meta-llama/Llama-3.1-8B-Instruct",
)


@dataclass(frozen=True)
class NodeConfig:
    name: str = "node-0"  # unique in the cluster: state, logs, gossip membership
    bind: str = "tcp://127.0.0.1:5560"  # ROUTER: infer + status
    advertise: str = ""  # endpoint others use to reach `bind`; empty = same as bind
    publish_to: tuple[str, ...] = ("tcp://127.0.0.1:5556",)  # SUB addresses our PUB connects to
    publish_interval_s: float = 1.0  # how often NodeState goes to the coordinator (and collector)
    gpu_backend: str = "auto"  # auto | nvml | emulated
    gpu: str = "a100-80gb"  # the emulated GPU profile (also the emulator's --gpu)
    checkpoint_tier: str = "ssd"  # where this node's checkpoints live: gpu | dram | ssd | remote
    models: tuple[str, ...] = DEFAULT_MODELS  # the catalog this node may load
    preload: tuple[str, ...] = ()  # models loaded at start-up, before any request (a subset of models)
    backend: str = "emulator"  # emulator | tgi | emulator-inproc (the emulator's engine in this process)
    tgi_launcher: str = "text-generation-launcher"  # backend = "tgi": TGI's launcher, a name on PATH or a path
    launcher: tuple[str, ...] = EMULATOR_LAUNCHER  # the instance command; replaces the backend's outright
    kv_tokens: int = 16384  # KV budget per instance, TGI's --max-batch-total-tokens
    init_s: float = 2.0  # start-up of an instance besides copying weights (CUDA context, warm-up)
    load_timeout_s: float = 300.0  # an instance not healthy by then is a failed load
    request_timeout_s: float = 300.0  # longest a request may run (or wait for memory) on this node
    scheduler: str = "centralized"  # centralized | gossip | hybrid (gossip, referring cold starts to a coordinator)
    # Gossip and hybrid mode: this node is also a peer that places requests from its gossip view.
    gossip_bind: str = "tcp://127.0.0.1:5561"  # ROUTER for the gossip protocol
    gossip_advertise: str = ""  # how peers reach gossip_bind; empty = same
    seeds: tuple[str, ...] = ()  # gossip addresses of peers to join through
    gossip_preset: str = "lan"  # lan | wan | local | ci (daemons/gossip/config.py)
    gossip_max_members: int = 16_384  # members a peer keeps at most (far above any real cluster)
    gossip_policy: str = DEFAULT_GOSSIP_POLICY  # a policy serving "gossip" (daemons/policy/registry.py)
    max_hops: int = 1  # how often a request may be forwarded before it must be served
    # Gossip mode: seeds, with the node's name, the random choices of its placement policy
    # (gossip_mode.peer_rng), so a run repeats exactly; the simulator's peers draw the same.
    seed: int = 0
    # Gossip mode: a request no peer in our view can take waits here (admission.py), at most
    # queue_limit per model, at most queue_timeout_s, and is placed again as the view changes.
    queue_limit: int = DEFAULT_LIMIT
    queue_timeout_s: float = DEFAULT_TIMEOUT_S  # gossip mode: longest wait in that queue (`queue_timeout`)
    # Priority classes (daemons/policy/priority.py): at most max_running requests per model go
    # to its backend at once, the rest wait in this node, highest class first with aging
    # (0: no limit, the backend queues them in arrival order). `priority = false` keeps
    # arrival order in that queue and in the gossip admission queue (--no-priority).
    max_running: int = 0
    priority: bool = True  # false: arrival order in the slot queue and the gossip admission queue
    priority_aging_s: float = DEFAULT_AGING_S  # seconds of waiting worth one priority level
    admission: str = "queue"  # gossip mode: queue | slo (shed a request predicted to miss its TTFT SLO)
    # Hybrid mode (daemons/node/hybrid_mode.py): requests needing a cold start, an eviction or a
    # migration are referred to this coordinator; its events PUB carries its map and heartbeats.
    coordinator: str = ""  # the coordinator's request ROUTER (its `bind`)
    coordinator_events: str = ""  # the coordinator's events PUB (its `events_bind`)
    # Its failover partner (daemons/coordinator/failover.py), if it has one: the peer follows
    # whichever of the two says it is active, with the newest epoch.
    standby: str = ""  # the standby coordinator's request ROUTER
    standby_events: str = ""  # the standby coordinator's events PUB
    # A referral the coordinator leaves unanswered this long (no Placement, Error or Progress),
    # or its heartbeats silent this long, puts the peer in degraded mode: it decides cold starts itself.
    referral_timeout_s: float = 2.0
    # Learned affinity (daemons/policy/learned.py): gossip mode ranks by the TTFT nodes measured.
    affinity: str = "static"  # static | learned
    # Predictive pre-warming (daemons/policy/prewarm.py): evict by least expected use; in
    # gossip mode also load models here ahead of a burst this peer forecasts.
    prewarm: str = "off"  # off | on
    forecast_alpha: float = DEFAULT_ALPHA  # Holt level weight, 0 < a <= 1 (forecast.py)
    forecast_beta: float = DEFAULT_BETA  # Holt trend weight, 0 <= b <= 1
    forecast_horizon_s: float = DEFAULT_HORIZON_S  # forecast this far ahead
    prewarm_instance_rps: float = DEFAULT_INSTANCE_RPS  # req/s one ready instance serves

    def __post_init__(self) -> None:
        if self.gpu_backend not in ("auto", "nvml", "emulated"):
            raise ConfigError(f"gpu_backend must be auto, nvml or emulated, not {self.gpu_backend!r}")
        if self.backend not in BACKENDS:
            raise ConfigError(f"[node] backend must be emulator, tgi or {INPROC}, not {self.backend!r}")
        if self.scheduler not in SCHEDULERS:
            raise ConfigError(f"scheduler must be centralized, gossip or hybrid, not {self.scheduler!r}")
        if self.scheduler == "hybrid" and not (self.coordinator and self.coordinator_events):
            raise ConfigError("scheduler = \"hybrid\" refers cold starts to a coordinator: set coordinator "
                              "(its bind) and coordinator_events (its events_bind) in [node]")
        if bool(self.standby) != bool(self.standby_events) or (self.standby and self.scheduler != "hybrid"):
            raise ConfigError("standby and standby_events name a hybrid peer's standby coordinator: set both "
                              "(its bind and events_bind) with scheduler = \"hybrid\", or neither")
        if not self.referral_timeout_s > 0:
            raise ConfigError(f"referral_timeout_s must be > 0, got {self.referral_timeout_s}")
        if not isinstance(self.gossip_max_members, int) or isinstance(self.gossip_max_members, bool) \
                or self.gossip_max_members < 2:
            raise ConfigError(f"gossip_max_members must be an integer >= 2, got {self.gossip_max_members!r}")
        if not self.launcher or "{port}" not in " ".join(self.launcher):
            raise ConfigError("launcher must be a command list containing {port} (and usually {model})")
        if self.backend == "emulator-inproc" and self.launcher != EMULATOR_LAUNCHER:
            # The in-process engine is resolved from the node's own keys (gpu, checkpoint_tier,
            # kv_tokens, init_s); a launcher's extra flags would be silently ignored.
            raise ConfigError("launcher sets the command of an instance process, and backend = \"emulator-inproc\" "
                              "starts none: remove launcher, or use backend = \"emulator\" to run it")
        unknown = sorted(set(self.preload) - set(self.models))
        if unknown:
            raise ConfigError(f"preload lists {unknown} which are not in models; add them to models")
        if not isinstance(self.seed, int) or isinstance(self.seed, bool):
            raise ConfigError(f"[node] seed must be an integer, got {self.seed!r}")
        if self.max_hops < 0:
            raise ConfigError(f"max_hops must be >= 0, not {self.max_hops}")
        if self.publish_interval_s <= 0 or self.kv_tokens <= 0:
            raise ConfigError("publish_interval_s and kv_tokens must be positive")
        check_limits(self.queue_limit, self.queue_timeout_s, "[node] ")
        check_aging(self.priority_aging_s, "[node] ")
        check_admission(self.admission, "[node] ")
        if isinstance(self.max_running, bool) or not isinstance(self.max_running, int) or self.max_running < 0:
            raise ConfigError(f"[node] max_running must be a whole number >= 0 (0: no limit), "
                              f"got {self.max_running!r}")
        get_policy(self.gossip_policy, "gossip", self.affinity)  # a typo fails at start-up, in either mode
        _ = self.prewarming

    @property
    def prewarming(self) -> PrewarmSettings:
        return prewarm_settings(self.prewarm, self.forecast_alpha, self.forecast_beta, self.forecast_horizon_s,
                                self.prewarm_instance_rps, "[node] ")

    @property
    def launch_template(self) -> tuple[str, ...]:
        """The instance command: `launcher` if set, else the backend's default."""
        if self.backend == "tgi" and self.launcher == EMULATOR_LAUNCHER:
            return (self.tgi_launcher, *TGI_LAUNCHER[1:])
        return self.launcher

    @property
    def endpoint(self) -> str:
        return self.advertise or self.bind

    @classmethod
    def load(cls, path: Path | None, overrides: dict[str, Any]) -> NodeConfig:
        """File, then SCHEDCTL_NODE_* environment, then flags (non-None overrides)."""
        data = read_section(path, "node")
        data.update(env_overrides(cls, "node"))
        data.update({k: v for k, v in overrides.items() if v is not None})
        return build(cls, data, f"[node] of {path}" if path else "node config")


def write_node_config(path: Path, **fields: Any) -> Path:
    """Write a schedctl.toml holding one [node] table (what the local cluster launcher does)."""
    path.write_text(tomli_w.dumps({"node": fields}))
    return path
