"""A simulated node agent's own time: one event loop that handles the request path's messages.

The real node agent (daemons/node/server.py, gossip_mode.py) is one asyncio loop in one
process: taking an Infer, placing it, asking the backend, relaying a peer's answer each
take that loop's CPU, and a message that arrives while it works waits. The simulated node
runs the same way on the virtual clock: `AgentLoop.run(cost, then)` starts `then` once the
loop has spent `cost` on it, after everything queued before it (first come, first served),
as `Costs` does for the coordinator's decisions (daemons/sim/coordinator.py).

What each message costs is `AgentCosts`, measured on real agents with
scripts/bench_agent.py. The wire's latency (daemons/sim/wire.py) stays the network between
machines: each agent has its own loop, so the simulator still models a cluster of
separate machines, and a host's other processes are no part of it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from daemons.sim.clock import Clock


@dataclass(frozen=True)
class AgentCosts:
    """Seconds of a node agent's loop per message on the request path.

    Measured with `python scripts/bench_agent.py` (two real gossip-mode agents on loopback,
    the emulator as backend, one request at a time; each agent's CPU time from psutil, less
    its idle gossip and publication; 300 short requests, 60 of 34 tokens) on the 2-core
    reference host, 2026-12-05, two runs: serve 1,870 / 1,983 µs, place 604 / 769 µs,
    relay 118 / 132 µs, a backend token 140 / 168 µs, the first forward 12.7 ms more than a
    warm one (docs/simulation.md, "The node agent's own time"). Their means, rounded:

    - `serve_s`: a request served here: the Infer taken, the backend asked, its FirstToken
      and Done sent (the stream's tokens are `token_s` each, not charged: see below);
    - `place_s`: gossip mode: an Infer from the load generator taken and placed (and
      forwarded, when a peer gets it);
    - `relay_s`: gossip mode: one answer of a forwarded request relayed to its asker;
    - `first_link_s`: the first forward to a peer in an agent's life (its link opened,
      first use of that code path);
    - `token_s`: reading one generated token from the backend's stream. Not charged: the
      simulated batch ends runs of decode steps, not tokens, and at the validation's loads
      it is a few per cent of an agent's time (0.15 ms x a few hundred tokens a second).
    """

    serve_s: float = 1.93e-3
    place_s: float = 0.69e-3
    relay_s: float = 0.125e-3
    first_link_s: float = 12.7e-3
    token_s: float = 0.154e-3

    @classmethod
    def free(cls) -> AgentCosts:
        """No agent time at all (the simulator before it was measured)."""
        return cls(0.0, 0.0, 0.0, 0.0, 0.0)


class AgentLoop:
    """One agent's event loop: work runs one piece at a time, in arrival order."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.free_at = 0.0
        self.busy_s = 0.0
        self.life = 1  # bumps when the process dies: work queued in a previous life never ends

    def run(self, cost: float, then: Callable[[], None]) -> None:
        """Call `then` once the loop has spent `cost` on it, after the work queued before (at
        once when the loop is idle and `cost` is 0: a message it takes up without delay)."""
        if cost <= 0 and self.free_at <= self.clock.now:
            then()
            return
        start = max(self.clock.now, self.free_at)
        self.free_at = start + cost
        self.busy_s += cost
        life = self.life
        self.clock.at(self.free_at, lambda: then() if life == self.life else None)

    def die(self) -> None:
        """The process died: what it was working on is lost; a new process starts idle."""
        self.life += 1
        self.free_at = self.clock.now
