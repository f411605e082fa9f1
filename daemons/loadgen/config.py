"""The load generator's configuration: where requests go and how long to wait for them.

`LoadgenConfig.load` reads the `[loadgen]` table of the config file, then
`SCHEDCTL_LOADGEN_<FIELD>` environment variables, then flags; the keys are the field names:

    [loadgen]
    mode = "centralized"                    # centralized | gossip
    coordinator = "tcp://10.0.0.1:5555"     # centralized: the coordinator's ROUTER
    standby = "tcp://10.0.0.6:5555"         # optional: the standby coordinator's ROUTER
    entry = ["tcp://10.0.0.2:5560"]         # gossip: peers to send to (chosen per request)
    timeout_s = 120.0                       # a request with no outcome this long after its
                                            # scheduled time is recorded as a timeout
    name = "loadgen"                        # sender name in every envelope
    nice = -10                              # optional: priority of the sending thread
    retries = 2                             # resends of a request whose node failed it
    attempt_timeout_s = 0                   # > 0: resend when an attempt is silent this long
                                            # (nodes send Progress every second: keep it >= 3 s)
    coordinator_timeout_s = 2.0             # a schedule request unplaced this long is asked again,
                                            # of the standby if there is one
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from daemons.core.errors import ConfigError
from daemons.core.settings import build, env_overrides, read_section

MODES = ("centralized", "gossip")
TRANSPORTS = ("tcp://", "ipc://", "inproc://")


def check_endpoint(endpoint: str, what: str) -> None:
    """A ZeroMQ endpoint the sender can connect to, e.g. tcp://127.0.0.1:5555."""
    if not isinstance(endpoint, str) or not endpoint.startswith(TRANSPORTS) or len(endpoint) > 256:
        raise ConfigError(f"{what} {endpoint!r} is not a ZeroMQ endpoint; write it like tcp://HOST:PORT")
    if endpoint.startswith("tcp://") and ":" not in endpoint[len("tcp://"):]:
        raise ConfigError(f"{what} {endpoint!r} has no port; write it like tcp://HOST:PORT")


@dataclass(frozen=True, slots=True)
class LoadgenConfig:
    """How to send a schedule: to a coordinator (centralized) or straight to peers (gossip)."""

    mode: str = "centralized"  # centralized (ask the coordinator) | gossip (send to a peer)
    coordinator: str = ""  # centralized: the coordinator's request ROUTER
    entry: tuple[str, ...] = ()  # gossip: peers' ROUTERs; each request goes to a random live one
    timeout_s: float = 120.0  # after its scheduled time, an unanswered request is a timeout
    name: str = "loadgen"  # sender name in every envelope
    priority: int = 0  # Schedule.priority of every request
    # poll() times out in whole milliseconds and wakes ~0.12 ms (p50) to 0.16 ms (p99) late, so the
    # sender sleeps in poll() until this margin plus the sub-millisecond remainder before a send, then
    # spins on poll(0). Longer spins lost on a busy 2-core VM (A/B, 6 x 5 s at 1,000 req/s, CV 8,
    # median p99 lag: 3.1 ms spinning < 1 ms, 3.9 ms at 0.5 ms margin, 4.6 ms at 2 ms): a spinning
    # thread uses up its CPU share and is then preempted by the cluster it is measuring.
    spin_s: float = 0.0002
    progress_interval_s: float = 1.0  # seconds between progress lines
    max_nodes: int = 1024  # node endpoints a coordinator may send us to (one socket each)
    # Nice value for the sending thread (and the ZeroMQ I/O thread it starts) during a run; 0 leaves
    # it alone. On a busy host a negative value (needs root or CAP_SYS_NICE, else a warning) keeps
    # other processes from delaying sends by a scheduler time slice: measured on a loaded 2-core VM,
    # p99 send lag at 1,000 req/s, CV 8 fell from 4.7-6.9 ms at nice 0 to 1.1-3.9 ms at nice -10.
    nice: int = 0
    # Lazy Pirate (ZeroMQ Guide, ch. 4): a request whose node failed it (RETRYABLE codes, a dropped
    # connection, a death verdict, or no word for attempt_timeout_s: nodes send a Progress every
    # second while they hold a request, so this is silence, not age) is sent again with the same
    # request id, avoiding the nodes that failed it; at most `retries` times. 0 disables the timer.
    retries: int = 2
    attempt_timeout_s: float = 0.0  # an attempt silent this long is sent again elsewhere (0 = never)
    # Coordinator failover (coordinators.py): a Placement is answered in well under a
    # millisecond, so seconds of silence mean the coordinator is gone (Lazy Pirate: 2.5 s).
    standby: str = ""
    coordinator_timeout_s: float = 2.0  # no placement for this long: ask the other coordinator
    # Reroutes to a(nother) coordinator per request: enough to wait out a failover
    # (failover_after_s + a witness vote, asked every REROUTE_BACKOFF_S at worst).
    coordinator_retries: int = 40

    @property
    def coordinators(self) -> tuple[str, ...]:
        """The coordinator endpoints, primary first (centralized mode)."""
        return (self.coordinator, self.standby) if self.standby else (self.coordinator,)

    def __post_init__(self) -> None:
        object.__setattr__(self, "entry", tuple(self.entry))
        if self.mode not in MODES:
            raise ConfigError(f"mode {self.mode!r} is unknown; use centralized or gossip")
        if self.mode == "centralized":
            if not self.coordinator:
                raise ConfigError("centralized mode needs the coordinator's endpoint; "
                                  "pass --coordinator tcp://HOST:PORT")
            check_endpoint(self.coordinator, "coordinator")
            if self.standby:
                check_endpoint(self.standby, "standby")
                if self.standby == self.coordinator:
                    raise ConfigError("standby is the coordinator's own endpoint; pass the standby's --bind")
        else:
            if not self.entry:
                raise ConfigError("gossip mode needs at least one peer; "
                                  "pass --entry tcp://HOST:PORT (repeatable)")
            for endpoint in self.entry:
                check_endpoint(endpoint, "entry")
        if not (math.isfinite(self.timeout_s) and self.timeout_s > 0):
            raise ConfigError(f"timeout {self.timeout_s} s must be > 0; pass --timeout SECONDS")
        if not self.name or len(self.name) > 64 or any(c.isspace() for c in self.name):
            raise ConfigError(f"name {self.name!r} must be 1-64 characters without spaces")
        if not 0 <= self.spin_s <= 0.05:
            raise ConfigError(f"spin_s {self.spin_s} must be in 0..0.05 s")
        if not self.progress_interval_s > 0:
            raise ConfigError(f"progress_interval_s {self.progress_interval_s} must be > 0")
        if self.max_nodes < 1:
            raise ConfigError(f"max_nodes {self.max_nodes} must be >= 1")
        if not -20 <= self.nice <= 19:
            raise ConfigError(f"nice {self.nice} must be in -20..19 (negative = higher priority)")
        if not 0 <= self.retries <= 10:
            raise ConfigError(f"retries {self.retries} must be in 0..10")
        if not (math.isfinite(self.attempt_timeout_s) and self.attempt_timeout_s >= 0):
            raise ConfigError(f"attempt_timeout_s {self.attempt_timeout_s} must be >= 0 (0 = off)")
        if not (math.isfinite(self.coordinator_timeout_s) and self.coordinator_timeout_s >= 0):
            raise ConfigError(f"coordinator_timeout_s {self.coordinator_timeout_s} must be >= 0 (0 = off)")
        if not 0 <= self.coordinator_retries <= 1000:
            raise ConfigError(f"coordinator_retries {self.coordinator_retries} must be in 0..1000")

    @classmethod
    def from_dict(cls, table: dict[str, Any], where: str = "[loadgen]") -> LoadgenConfig:
        """Build a config from a `[loadgen]` TOML table; unknown keys and wrong types are errors."""
        return build(cls, table, where)

    @classmethod
    def load(cls, path: Path | None, overrides: dict[str, Any]) -> LoadgenConfig:
        """File (`[loadgen]`), then SCHEDCTL_LOADGEN_* environment, then flags (non-None overrides)."""
        data = read_section(path, "loadgen")
        data.update(env_overrides(cls, "loadgen"))
        data.update({k: v for k, v in overrides.items() if v is not None})
        return build(cls, data, f"[loadgen] of {path}" if path else "loadgen config")
