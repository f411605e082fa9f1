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
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from daemons.bus.errors import ConfigError
from daemons.bus.settings import build, env_overrides, read_section
from daemons.policy import DEFAULT_POLICY, get_policy

SCHEMES = ("tcp://", "ipc://", "inproc://")


@dataclass(frozen=True)
class CoordinatorConfig:
    name: str = "coordinator"  # sender name in every envelope it sends
    bind: str = "tcp://127.0.0.1:5555"  # ROUTER where loadgens send Schedule / StatusRequest
    state_bind: str = "tcp://127.0.0.1:5556"  # SUB that node agents' PUB sockets connect to
    events_bind: str = "tcp://127.0.0.1:5557"  # PUB of ClusterEvent for observers
    policy: str = DEFAULT_POLICY  # a name in daemons.policy.POLICIES
    dead_after_s: float = 3.0  # a node not heard from for this long is dead (3 missed beats)
    seed: int = 0  # seeds the policy's tie-breaking, so a run can be repeated exactly
    # How long a placement keeps counting as pending load on its node once newer state
    # from the node has arrived: long enough for the loadgen to forward the request and
    # the node to report it, short enough that a lost request does not skew load for long.
    settle_s: float = 0.1

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
        get_policy(self.policy)  # raises ConfigError naming the known policies
        _positive("dead_after_s", self.dead_after_s)
        if not isinstance(self.settle_s, int | float) or self.settle_s < 0:
            raise ConfigError(f"settle_s must be a number >= 0, got {self.settle_s!r}")
        if not isinstance(self.seed, int) or isinstance(self.seed, bool):
            raise ConfigError(f"seed must be an integer, got {self.seed!r}")

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
