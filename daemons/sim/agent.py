"""A simulated node agent's own time: one event loop that handles the request path's messages,
and the start-up of the backend instances it launches.

The real node agent (daemons/node/server.py, gossip_mode.py) is one asyncio loop in one
process: taking an Infer, placing it, asking the backend, relaying a peer's answer each
take that loop's CPU, and a message that arrives while it works waits. The simulated node
runs the same way on the virtual clock: `AgentLoop.run(cost, then)` starts `then` once the
loop has spent `cost` on it, after everything queued before it (first come, first served),
as `Costs` does for the coordinator's decisions (daemons/sim/coordinator.py).

What each message costs is `AgentCosts`, measured on real agents with
scripts/bench_agent.py; so is `launch_s`, what a cold start waits beyond the load the
catalog models (daemons/node/catalog.py, which the policies read, is left as it is). The
wire's latency (daemons/sim/wire.py) stays the network between machines: each agent has
its own loop, so the simulator still models a cluster of separate machines, and a host's
other processes are no part of it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from daemons.sim.clock import Clock


@dataclass(frozen=True)
class AgentCosts:
    """Seconds of a node agent's loop per message on the request path, and of an instance's launch.

    Measured with `python scripts/bench_agent.py` (two real gossip-mode agents on loopback,
    the emulator as backend, one request at a time, 1,020-token prompts; each agent's CPU
    time from psutil, less its idle gossip and publication; 300 short requests, 60 of 34
    tokens, 3 cold starts) on the 2-core reference host, 2026-12-05, three runs; the
    medians (docs/simulation.md, "The node agent's own time"):

    - `serve_s`: a request served here: the Infer taken, the backend asked, its FirstToken
      and Done sent (2,293 µs; runs 2,092-2,421);
    - `place_s`: gossip mode: an Infer from the load generator taken, placed and forwarded
      (902 µs; 864-1,005);
    - `relay_s`: gossip mode: one answer of a forwarded request relayed to its asker
      (131 µs; 127-136);
    - `first_link_s`: the first forward to a peer in an agent's life, beyond a warm one (its
      link opened, first use of that code path: 8.3 ms; 7.2-58 ms);
    - `launch_s`: not loop time: an instance's wait beyond the load the catalog models (the
      backend process's start-up before its load begins, the 50 ms /health polls): 268 ms,
      the median of 9 cold starts (240-725 ms);
    - `token_s`: reading one generated token from the backend's stream (179 µs; 167-205).
      Not charged: the simulated batch ends runs of decode steps, not tokens; at the
      validation's loads it is a few per cent of an agent's time.
    """

    serve_s: float = 2.29e-3
    place_s: float = 0.90e-3
    relay_s: float = 0.131e-3
    first_link_s: float = 8.3e-3
    launch_s: float = 0.268
    token_s: float = 0.179e-3

    @classmethod
    def free(cls) -> AgentCosts:
        """No agent time at all (the simulator before it was measured)."""
        return cls(0.0, 0.0, 0.0, 0.0, 0.0, 0.0)


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
