"""Gossip configuration: one frozen dataclass with memberlist's presets.

Every time is in seconds (floats), every size in bytes. The presets copy
hashicorp/memberlist's `DefaultLANConfig`, `DefaultWANConfig` and
`DefaultLocalConfig` (hashicorp/memberlist config.go, util.go), with this project's departures from
§6.4: push/pull every 15 s on a LAN (memberlist: 30 s) because records change
more often than membership, relays nack at 80 % of the probe timeout, and dead
members are reaped after 60 s.

Usage::

    cfg = GossipConfig.lan()            # production default
    ci = GossipConfig.lan().scaled(0.1)  # every time x 0.1, for fast tests
    cfg = dataclasses.replace(GossipConfig.lan(), gossip_nodes=4)
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, fields
from typing import Any

#: Largest frame a gossip socket accepts (ZeroMQ MAXMSGSIZE); bigger frames disconnect the peer.
MAX_FRAME_BYTES = 64 * 1024


@dataclass(frozen=True, slots=True)
class GossipConfig:
    """Protocol timing and sizing. Build one with a preset, then `replace`/`scaled` it."""

    # --- failure detection (SWIM probe loop) ---
    # Period between two probes. Each period probes one member, round-robin over a
    # shuffled list, so every member is probed at least once per ≈2N periods.
    probe_interval: float = 1.0
    # How long to wait for a direct ack before asking relays; set near the p99 RTT.
    probe_timeout: float = 0.5
    # Relays asked to probe (PING_REQ) a target that missed its direct ack (SWIM's k).
    indirect_checks: int = 3
    # A relay answers a PING_REQ with a NACK this fraction into the probe timeout when
    # the target is silent, proving to the prober that its own network works (Lifeguard).
    nack_ratio: float = 0.8

    # --- suspicion (Lifeguard) ---
    # Suspicion min = suspicion_mult * max(1, log10(max(1, N))) * probe_interval: the
    # timeout grows with N because rumours take log(N) rounds to reach the suspect.
    suspicion_mult: int = 4
    # Suspicion max = this * min: a lone suspicion waits long (slow-observer guard),
    # independent confirmations shrink it towards min.
    suspicion_max_timeout_mult: int = 6

    # --- dissemination ---
    # Period of the gossip round, separate from (and faster than) probing as in Serf.
    gossip_interval: float = 0.2
    # Members sent a gossip message each round (fanout).
    gossip_nodes: int = 3
    # Each update is piggybacked retransmit_mult * ceil(log10(N + 1)) times by every
    # member that learns it; enough for all members with high probability.
    retransmit_mult: int = 4
    # Dead members keep receiving gossip this long, so a wrongly declared member
    # learns of its death quickly and refutes it.
    gossip_to_the_dead_time: float = 30.0
    # Piggyback budget of one message (bytes of gossip items); bounds bandwidth per peer.
    # memberlist uses its UDP buffer (1400 B); 1 KiB keeps a fully churning N = 64 cluster
    # under 20 KB/s per peer (our estimate from the frame sizes: 17) at a median staleness of ≈0.6 s.
    max_piggyback_bytes: int = 1024
    # Broadcast queue bound in items; the most-transmitted items are pruned first
    # (push/pull repairs whatever is pruned).
    max_queue_items: int = 4096

    # --- anti-entropy ---
    # Period of the digest exchange with one random member; above 32 members it is
    # stretched by ceil(log2 N - log2 32) + 1, as memberlist's pushPullScale does.
    push_pull_interval: float = 15.0
    # Largest frame this library emits; sync responses are split to stay under it.
    max_frame_bytes: int = MAX_FRAME_BYTES - 4096

    # --- lifecycle ---
    # Dead and left members are kept (to answer digests and stop resurrection by stale
    # gossip) this long, then forgotten.
    dead_reap_time: float = 60.0
    # A join resends its sync request to the seeds this often until someone answers.
    join_retry_interval: float = 2.0
    # Most members (self included, dead ones until reaped) kept: a flood of forged or
    # short-lived ids cannot grow the table without bound. Far above any real cluster.
    max_members: int = 16_384
    # --- bounds on claims (see state.py "Bounds on claims") ---
    # A claim relayed by someone else may raise a member's incarnation by at most this
    # much; only the member itself raises it further.
    max_incarnation_step: int = 16
    # Slack on top of a record's legitimate growth (one version per record_min_interval).
    max_version_step: int = 64

    # --- local health (Lifeguard) ---
    # The Local Health Multiplier ranges over 0..awareness_max_multiplier-1 and scales
    # the probe interval and timeout by (LHM + 1).
    awareness_max_multiplier: int = 8
    # An event-loop tick later than this counts as local trouble (+1 LHM) ...
    loop_lag_threshold: float = 0.25
    # ... and this many on-time ticks in a row take one such point back.
    loop_lag_recovery_ticks: int = 10

    # --- records ---
    # Owners publish a new record version at most every max(this, N / record_rate_per_node)
    # seconds, coalescing changes, so record gossip stays within the byte budget.
    record_min_interval: float = 0.5
    record_rate_divisor: float = 128.0
    # Largest encoded record body an owner may publish.
    max_record_bytes: int = 8192

    def __post_init__(self) -> None:
        positive = (
            "probe_interval", "probe_timeout", "gossip_interval", "push_pull_interval",
            "gossip_to_the_dead_time", "dead_reap_time", "join_retry_interval",
            "loop_lag_threshold", "record_rate_divisor",
        )
        for name in positive:
            value = getattr(self, name)
            if not (isinstance(value, int | float) and math.isfinite(value) and value > 0):
                raise ValueError(f"GossipConfig.{name} must be a positive finite number, got {value!r}")
        if self.record_min_interval < 0:
            raise ValueError("GossipConfig.record_min_interval must be >= 0")
        if self.probe_timeout >= self.probe_interval:
            # The indirect round needs time between the direct timeout and the period end.
            raise ValueError("GossipConfig.probe_timeout must be shorter than probe_interval")
        if not 0.0 < self.nack_ratio < 1.0:
            raise ValueError("GossipConfig.nack_ratio must be in (0, 1)")
        at_least = {
            "indirect_checks": 0, "gossip_nodes": 1, "suspicion_mult": 1,
            "suspicion_max_timeout_mult": 1, "retransmit_mult": 1, "awareness_max_multiplier": 1,
            "loop_lag_recovery_ticks": 1, "max_queue_items": 16, "max_members": 2,
            "max_incarnation_step": 1, "max_version_step": 1,
        }
        for name, low in at_least.items():
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < low:
                raise ValueError(f"GossipConfig.{name} must be an integer >= {low}, got {value!r}")
        if not 256 <= self.max_piggyback_bytes <= self.max_frame_bytes:
            raise ValueError("GossipConfig.max_piggyback_bytes must be in [256, max_frame_bytes]")
        if not 4096 <= self.max_frame_bytes <= MAX_FRAME_BYTES:
            raise ValueError(f"GossipConfig.max_frame_bytes must be in [4096, {MAX_FRAME_BYTES}]")
        if not 64 <= self.max_record_bytes <= self.max_frame_bytes // 4:
            raise ValueError("GossipConfig.max_record_bytes must be in [64, max_frame_bytes / 4]")

    # ----------------------------------------------------------------- presets
    @classmethod
    def lan(cls) -> GossipConfig:
        """memberlist DefaultLANConfig, push/pull 15 s (derived from SWIM and memberlist)."""
        return cls()

    @classmethod
    def wan(cls) -> GossipConfig:
        """memberlist DefaultWANConfig: slower, more tolerant of latency and loss."""
        return cls(
            probe_interval=5.0, probe_timeout=3.0, indirect_checks=3, gossip_interval=0.5,
            gossip_nodes=4, suspicion_mult=6, retransmit_mult=4, push_pull_interval=60.0,
            gossip_to_the_dead_time=60.0,
        )

    @classmethod
    def local(cls) -> GossipConfig:
        """memberlist DefaultLocalConfig: one host or a very fast network."""
        return cls(
            probe_interval=1.0, probe_timeout=0.2, indirect_checks=1, gossip_interval=0.1,
            gossip_nodes=3, suspicion_mult=3, retransmit_mult=2, push_pull_interval=15.0,
            gossip_to_the_dead_time=15.0,
        )

    @classmethod
    def ci(cls) -> GossipConfig:
        """The LAN preset with every time x 0.1: a fast profile for tests (§6.4)."""
        return cls.lan().scaled(0.1)

    @classmethod
    def preset(cls, name: str) -> GossipConfig:
        """Look a preset up by name: lan, wan, local or ci."""
        presets = {"lan": cls.lan, "wan": cls.wan, "local": cls.local, "ci": cls.ci}
        try:
            return presets[name]()
        except KeyError:
            raise ValueError(f"unknown gossip preset {name!r} (expected one of {sorted(presets)})") from None

    def scaled(self, factor: float) -> GossipConfig:
        """This config with every time multiplied by `factor` (sizes and counts unchanged)."""
        if not (math.isfinite(factor) and factor > 0):
            raise ValueError(f"scale factor must be positive, got {factor!r}")
        changes: dict[str, Any] = {
            f.name: getattr(self, f.name) * factor for f in fields(self) if f.name in _TIME_FIELDS
        }
        # N / divisor is a time too, so the divisor scales inversely.
        changes["record_rate_divisor"] = self.record_rate_divisor / factor
        return dataclasses.replace(self, **changes)

    # ----------------------------------------------------------------- derived
    def suspicion_min(self, n: int) -> float:
        """Lifeguard's shortest suspicion timeout for a cluster of `n` members (log10, as ML)."""
        return self.suspicion_mult * max(1.0, math.log10(max(1, n))) * self.probe_interval

    def suspicion_max(self, n: int) -> float:
        """Longest suspicion timeout, used when no confirmation arrives."""
        return self.suspicion_max_timeout_mult * self.suspicion_min(n)

    def suspicion_confirmations(self, n: int) -> int:
        """Independent confirmations K that shrink the timeout to min (0 in tiny clusters)."""
        k = self.suspicion_mult - 2
        return 0 if n - 2 < k else k

    def retransmit_limit(self, n: int) -> int:
        """How often each member retransmits one update: mult * ceil(log10(N + 1))."""
        return self.retransmit_mult * math.ceil(math.log10(n + 1))

    def push_pull_period(self, n: int) -> float:
        """Push/pull interval stretched for large clusters (memberlist pushPullScale)."""
        if n <= 32:
            return self.push_pull_interval
        return self.push_pull_interval * (math.ceil(math.log2(n) - math.log2(32)) + 1)

    def nack_timeout(self) -> float:
        """Delay after which a relay reports a silent target with a NACK."""
        return self.nack_ratio * self.probe_timeout

    def record_interval(self, n: int) -> float:
        """Shortest time between two record versions of one owner."""
        return max(self.record_min_interval, n / self.record_rate_divisor)


_TIME_FIELDS = frozenset({
    "probe_interval", "probe_timeout", "gossip_interval", "gossip_to_the_dead_time",
    "push_pull_interval", "dead_reap_time", "join_retry_interval", "record_min_interval",
})
# Not scaled: loop_lag_threshold measures the host (a stalled event loop), not the protocol;
# a CI profile on a busy machine would otherwise read every scheduling hiccup as ill health.

__all__ = ["MAX_FRAME_BYTES", "GossipConfig"]
