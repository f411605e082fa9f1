"""The one virtual clock of a simulated run.

The gossip package's simulated network (daemons/gossip/simnet.py) already is a
discrete-event loop: a heap of deliveries, member timers and scheduled calls, its clock
jumping from one to the next. The simulator runs everything else on that same heap (node
steps, the coordinator, the load generator, faults), so gossip messages and requests
interleave on one clock, in one process.
"""

from __future__ import annotations

from collections.abc import Callable

from daemons.gossip.config import GossipConfig
from daemons.gossip.simnet import SimNetwork


class Clock:
    """`now`, `at(t, fn)` and the simulated network whose heap they share."""

    def __init__(self, gossip: GossipConfig, seed: int, latency: tuple[float, float]) -> None:
        self.net = SimNetwork(gossip, seed=seed, latency=latency, keep_events=False)
        self.events = 0  # calls run, for the benchmark

    @property
    def now(self) -> float:
        return self.net.now

    def at(self, time: float, action: Callable[[], None]) -> None:
        """Run `action` at virtual time `time` (now if that has passed)."""
        self.events += 1
        self.net.at(time, action)

    def after(self, delay: float, action: Callable[[], None]) -> None:
        self.at(self.net.now + delay, action)

    def run_until(self, end: float) -> None:
        self.net.run_until(end)
