"""The coordinator's configuration: the `[coordinator]` table of schedctl.toml.

Precedence, lowest first: defaults, the TOML file, `SCHEDCTL_COORDINATOR_<FIELD>`
environment variables, command-line flags. Example file:

    [coordinator]
    bind = "tcp://10.0.0.5:5555"        # ROUTER: schedule + status requests
    state_bind = "tcp://10.0.0.5:5556"  # SUB: node agents connect their PUB here
    events_bind = "tcp://10.0.0.5:5557" # PUB: cluster events for observers
    policy = "startup-optimal"
    dead_after_s = 3.0
    seed = 42
    # Optional failover (failover.py): a primary and a backup that name each other.
    role = "primary"                    # standalone (default) | primary | backup
    peer = "tcp://10.0.0.6:5555"        # the other coordinator's bind
    peer_events = "tcp://10.0.0.6:5557" # the other coordinator's events_bind
    epoch_file = "/var/lib/schedctl/epoch"
    failover_after_s = 5.0
    # Requests no node can take now wait (admission.py), per model, in arrival order.
    queue_limit = 64                    # waiting per model; one more is refused `overloaded`
    queue_timeout_s = 120.0             # then it leaves with `queue_timeout` (the request timeout)
    # Priority classes (daemons/policy/priority.py, slo.py).
    priority = true                     # lanes per class, higher first with aging; false: arrival order
    priority_aging_s = 5.0              # seconds of waiting worth one priority level
    admission = "queue"                 # queue | slo: shed a request predicted to miss its class's TTFT SLO
    # Live migration (mover.py): every second, move a running request from the most to the
    # least loaded node when that narrows their gap (Llumnix pair migration).
    rebalance = false
    rebalance_threshold = 8             # a destination's requests after a move, at most
    live_migration = true               # carry out a policy's MIGRATE (false: its next best option)
    # Hybrid scheduling: peers refer cold starts here and follow this map (referrals.py).
    model_map_s = 0.0                   # publish the model -> nodes map this often (0: never)
    # Learned affinity and predictive pre-warming (daemons/policy/learned.py, prewarm.py).
    affinity = "static"                 # static | learned: rank by the TTFT nodes have measured
    prewarm = "off"                     # off | on: load models ahead of a forecast burst
    forecast_alpha = 0.5                # Holt level weight, 0 < a <= 1 (forecast.py)
    forecast_beta = 0.3                 # Holt trend weight, 0 <= b <= 1
    forecast_horizon_s = 5.0            # forecast this far ahead (about a load time)
    prewarm_instance_rps = 2.0          # req/s one ready instance serves before another copy pays off
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from daemons.core.errors import ConfigError
from daemons.core.settings import build, env_overrides, read_section
from daemons.policy import DEFAULT_POLICY, get_policy
from daemons.policy.admission import DEFAULT_LIMIT, DEFAULT_TIMEOUT_S, QueueLimits, check_limits
from daemons.policy.forecast import DEFAULT_ALPHA, DEFAULT_BETA, DEFAULT_HORIZON_S
from daemons.policy.prewarm import DEFAULT_INSTANCE_RPS, PrewarmSettings, prewarm_settings
from daemons.policy.priority import DEFAULT_AGING_S, check_aging
from daemons.policy.rebalance import DEFAULT_THRESHOLD
from daemons.policy.slo import check_admission

SCHEMES = ("tcp://", "ipc://", "inproc://")
ROLES = ("standalone", "primary", "backup")


@dataclass(frozen=True)
class CoordinatorConfig:
    name: str = "coordinator"  # sender name in every envelope it sends
    bind: str = "tcp://127.0.0.1:5555"  # ROUTER where loadgens send Schedule / StatusRequest
    state_bind: str = "tcp://127.0.0.1:5556"  # SUB that node agents' PUB sockets connect to
    events_bind: str = "tcp://127.0.0.1:5557"  # PUB of ClusterEvent for observers
    policy: str = DEFAULT_POLICY  # a policy serving "centralized" (daemons/policy/registry.py)
    dead_after_s: float = 3.0  # a node not heard from for this long is dead (3 missed beats)
    seed: int = 0  # seeds the policy's tie-breaking, so a run can be repeated exactly
    max_nodes: int = 10_000  # node names kept at most (forged names cannot grow memory)
    reap_after_s: float = 600.0  # a dead node is forgotten (and leaves `schedctl status`) after this
    # How long a placement keeps counting as pending load on its node once newer state
    # from the node has arrived: long enough for the loadgen to forward the request and
    # the node to report it, short enough that a lost request does not skew load for long.
    settle_s: float = 0.1
    # Failover (Binary Star, failover.py). A standalone coordinator is active from the start.
    role: str = "standalone"
    peer: str = ""  # the peer coordinator's request ROUTER (witnesses probe it)
    peer_events: str = ""  # the peer's events PUB (its heartbeats)
    epoch_file: str = ""  # required with a peer; optional when standalone (then epochs fence restarts)
    heartbeat_s: float = 1.0  # CoordinatorState on the events PUB, for the peer and observers
    # Silence before a passive coordinator asks the witnesses: longer than a supervised
    # restart (systemd RestartSec=1 + start-up), so a quick restart is not a failover.
    failover_after_s: float = 5.0
    witness_timeout_s: float = 1.5  # a vote is decided by then; nodes probe the peer for 60 % of it
    # Admission queue (admission.py): a request no node can take now waits, at most
    # queue_limit per model, at most queue_timeout_s (a Schedule's own timeout_s may shorten it).
    queue_limit: int = DEFAULT_LIMIT  # requests waiting per model; one more is answered `overloaded`
    queue_timeout_s: float = DEFAULT_TIMEOUT_S  # longest wait for capacity, then `queue_timeout`
    # Priority classes: the queue's lanes per class, higher first, aging (priority.py);
    # false keeps arrival order (--no-priority). admission = "slo" sheds (slo.py).
    priority: bool = True
    priority_aging_s: float = DEFAULT_AGING_S  # seconds of waiting worth one priority level
    admission: str = "queue"  # queue | slo
    # The periodic rebalancer (daemons/policy/rebalance.py, sent by mover.py): live-migrate
    # running requests from the most to the least loaded nodes, every second.
    rebalance: bool = False
    rebalance_threshold: int = DEFAULT_THRESHOLD  # a destination holds at most this many requests after a move
    # A policy's MIGRATE (startup-optimal) is carried out by live migrations; false: the
    # policy's next best option instead (the comparison without migration).
    live_migration: bool = True
    # Hybrid scheduling (referrals.py): publish the model -> nodes map on the events PUB this
    # often, and soon after each placement that loads a model; 0: never (centralized runs).
    model_map_s: float = 0.0
    # Learned affinity (learned.py) and predictive pre-warming (forecast.py, prewarm.py).
    affinity: str = "static"  # static | learned
    prewarm: str = "off"  # off | on
    forecast_alpha: float = DEFAULT_ALPHA  # Holt level weight, 0 < a <= 1
    forecast_beta: float = DEFAULT_BETA  # Holt trend weight, 0 <= b <= 1
    forecast_horizon_s: float = DEFAULT_HORIZON_S  # forecast this far ahead
    prewarm_instance_rps: float = DEFAULT_INSTANCE_RPS  # req/s one ready instance serves

    def __post_init__(self) -> None:
        for key in ("bind", "state_bind", "events_bind"):
            value = getattr(self, key)
            if not isinstance(value, str) or not value.startswith(SCHEMES):
                raise ConfigError(f"{key} must be a ZeroMQ endpoint like tcp://127.0.0.1:5555, "
                                  f"got {value!r}")
        if len({self.bind, self.state_bind, self.events_bind}) != 3:
            raise ConfigError("bind, state_bind and events_bind must be three different addresses")
        if not isinstance(self.name, str) or not self.name:
            raise ConfigError("name must be a non-empty string")
        get_policy(self.policy, "centralized", self.affinity)  # raises ConfigError naming the known policies
        _ = self.prewarming
        _positive("dead_after_s", self.dead_after_s)
        _positive("reap_after_s", self.reap_after_s)
        if not isinstance(self.max_nodes, int) or isinstance(self.max_nodes, bool) or self.max_nodes < 1:
            raise ConfigError(f"max_nodes must be an integer >= 1, got {self.max_nodes!r}")
        if not isinstance(self.settle_s, int | float) or self.settle_s < 0:
            raise ConfigError(f"settle_s must be a number >= 0, got {self.settle_s!r}")
        if not isinstance(self.seed, int) or isinstance(self.seed, bool):
            raise ConfigError(f"seed must be an integer, got {self.seed!r}")
        check_limits(self.queue_limit, self.queue_timeout_s, "[coordinator] ")
        check_aging(self.priority_aging_s, "[coordinator] ")
        check_admission(self.admission, "[coordinator] ")
        for key in ("rebalance", "live_migration"):
            if not isinstance(getattr(self, key), bool):
                raise ConfigError(f"{key} must be true or false, got {getattr(self, key)!r}")
        if not isinstance(self.rebalance_threshold, int) or isinstance(self.rebalance_threshold, bool) \
                or self.rebalance_threshold < 1:
            raise ConfigError(f"rebalance_threshold must be an integer >= 1, got {self.rebalance_threshold!r}")
        if not isinstance(self.model_map_s, int | float) or isinstance(self.model_map_s, bool) \
                or not 0 <= self.model_map_s <= 3600:
            raise ConfigError(f"model_map_s must be seconds in 0..3600 (0: no map), got {self.model_map_s!r}")
        self._check_failover()

    @property
    def prewarming(self) -> PrewarmSettings:
        return prewarm_settings(self.prewarm, self.forecast_alpha, self.forecast_beta, self.forecast_horizon_s,
                                self.prewarm_instance_rps, "[coordinator] ")

    @property
    def queue(self) -> QueueLimits:
        return QueueLimits(self.queue_limit, self.queue_timeout_s)

    def _check_failover(self) -> None:
        if self.role not in ROLES:
            raise ConfigError(f"role {self.role!r} is unknown; use one of {', '.join(ROLES)}")
        for key in ("heartbeat_s", "failover_after_s", "witness_timeout_s"):
            _positive(key, getattr(self, key))
        if self.failover_after_s < 2 * self.heartbeat_s:
            raise ConfigError(f"failover_after_s ({self.failover_after_s}) must be at least two heartbeats "
                              f"(2 x heartbeat_s = {2 * self.heartbeat_s}), or one late beat is a failover")
        if self.role == "standalone":
            return
        for key, flag in (("peer", "--peer"), ("peer_events", "--peer-events"), ("epoch_file", "--epoch-file")):
            if not getattr(self, key):
                raise ConfigError(f"a {self.role} coordinator needs {key}: pass {flag}")
        for key in ("peer", "peer_events"):
            if not getattr(self, key).startswith(SCHEMES):
                raise ConfigError(f"{key} must be a ZeroMQ endpoint like tcp://10.0.0.6:5555, "
                                  f"got {getattr(self, key)!r}")

    @classmethod
    def load(cls, path: Path | None, overrides: dict[str, Any] | None = None) -> CoordinatorConfig:
        """File (or /etc/schedctl/schedctl.toml if present), then environment, then
        `overrides` (flags; None values are ignored)."""
        data = read_section(path, "coordinator")
        data.update(env_overrides(cls, "coordinator"))
        data.update({k: v for k, v in (overrides or {}).items() if v is not None})
        return build(cls, data, f"[coordinator] of {path}" if path else "coordinator config")

    @classmethod
    def from_toml(cls, path: Path) -> CoordinatorConfig:
        """The `[coordinator]` table of `path`, with defaults for what it leaves out."""
        return cls.load(path)

    def describe(self) -> str:
        return " ".join(f"{f.name}={getattr(self, f.name)}" for f in fields(self))


def _positive(key: str, value: object) -> None:
    if not isinstance(value, int | float) or isinstance(value, bool) or value <= 0:
        raise ConfigError(f"{key} must be a positive number, got {value!r}")
