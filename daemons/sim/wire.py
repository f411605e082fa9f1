"""Who can talk to whom in a simulated run, and how long a message takes.

Every message of the request path (schedule, placement, infer, tokens, node state) goes
through `Wire.send`: delivered after a one-way `latency_s` unless an end is down (lost, as
when a process dies), held while an end is paused (SIGSTOP: ZeroMQ buffers the frames and
the process reads them when it continues) or cut off by a partition (TCP retransmits
until the link heals). Gossip traffic has its own rules in the simulated network
(daemons/gossip/simnet.py), which the faults drive alongside.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from daemons.sim.clock import Clock

Deliver = Callable[[], None]


@dataclass
class Party:
    """One process on the wire: a node, the coordinator or the load generator."""

    name: str
    up: bool = True
    paused: bool = False
    cut: bool = False
    held: list[tuple[str, str, Deliver]] = field(default_factory=list)  # (src, dst, deliver)
    gen: int = 1  # bumps on every death: a message to a previous life is lost

    @property
    def reachable(self) -> bool:
        return self.up and not self.paused and not self.cut


class Wire:
    def __init__(self, clock: Clock, latency_s: float) -> None:
        self.clock = clock
        self.latency_s = latency_s
        self.parties: dict[str, Party] = {}
        self.messages = 0

    def add(self, name: str) -> Party:
        party = self.parties[name] = Party(name)
        return party

    def send(self, src: str, dst: str, deliver: Deliver) -> None:
        """Deliver `deliver()` at `dst` one latency from now, by the rules above."""
        self.messages += 1
        s, d = self.parties[src], self.parties[dst]
        if not (s.up and d.up):
            return
        blocked = s if (s.paused or s.cut) else d if d.cut else None
        if blocked is not None:
            blocked.held.append((src, dst, deliver))
            return
        gen = d.gen
        self.clock.after(self.latency_s, lambda: self._arrive(src, d, gen, deliver))

    def _arrive(self, src: str, d: Party, gen: int, deliver: Deliver) -> None:
        if not d.up or d.gen != gen:
            return
        if d.paused or d.cut:
            d.held.append((src, d.name, deliver))
            return
        deliver()

    def kill(self, name: str) -> None:
        party = self.parties[name]
        party.up, party.paused, party.cut = False, False, False
        party.gen += 1
        party.held.clear()

    def revive(self, name: str) -> None:
        party = self.parties[name]
        party.up = True

    def pause(self, name: str) -> None:
        self.parties[name].paused = True

    def resume(self, name: str) -> None:
        party = self.parties[name]
        party.paused = False
        self._release(party)

    def cut(self, name: str) -> None:
        self.parties[name].cut = True

    def heal(self, name: str) -> None:
        party = self.parties[name]
        party.cut = False
        self._release(party)

    def _release(self, party: Party) -> None:
        held, party.held = party.held, []
        for src, dst, deliver in held:
            self.send(src, dst, deliver)
