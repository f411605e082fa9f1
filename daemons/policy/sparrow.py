"""Sparrow: a gossip policy that probes before it places (late binding).

Sparrow (Ousterhout et al., "Sparrow: Distributed, Low Latency Scheduling", SOSP 2013)
does not trust a stale view for the final choice: it asks d candidate peers, and the
request goes to the first that says it has room. This module is the whole policy except
the I/O, which stays with the gossip peer (daemons/node/gossip_mode.py):

- the prober asks `probes(view, request, rng, me)` for a `ProbeRound`: the d candidates
  (holders of the model if any, else nodes that could load it; never itself), or None
  when there is nobody to probe;
- it sends each candidate a `Probe` and starts the round's `ProbeRace`
  (`round.start(now)`), which takes the replies as they come: the first within `timeout_s`
  wins, and `race.decision()` is that peer's (`round.choose(first)`);
- no candidate, or no answer in time: the policy itself decides (`__call__`), which is its
  `fallback` (power of d choices from the view);
- a probed peer holds the probe as a `ProbeHold` (`hold(now)`) and asks it, on arrival and
  whenever its own state changes, what to do with its load then: answer (`free_slot`: at
  once if it has a free slot, else as soon as one frees) with `probe_reply`, wait, or give
  up (no answer at all, so a less loaded peer wins) once `hold_s` has passed.

`ProbeRace` and `ProbeHold` are sans-IO: they are given the time and the events and say
what follows, so the real peer (asyncio, daemons/node/gossip_mode.py) and the simulated one
(virtual clock, daemons/sim/peer.py) run the same rule.

Simplified from the paper: one request per probe round (no batch sampling), and the
reply carries no task; the prober then forwards the request to the winner.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from random import Random
from typing import TypeAlias

from daemons.core.messages import NodeState, Probe, ProbeReply
from daemons.policy.capacity import Option, cold_options, holder_nodes, holder_option
from daemons.policy.view import ClusterView, Decision, PlacementRequest, Refusal

PROBE_TIMEOUT_S = 0.25  # the prober waits this long for a first answer, then falls back
PROBE_WAIT_S = 0.5  # a busy probed peer holds its answer this long for a slot to free

Fallback: TypeAlias = Callable[[ClusterView, PlacementRequest, Random, str], Decision | Refusal]


@dataclass(frozen=True)
class ProbeRound:
    """The probes of one placement: whom to ask, and the decision each answer makes."""

    options: tuple[Option, ...]  # one per probed peer, in the order they are probed
    timeout_s: float

    @property
    def endpoints(self) -> list[str]:
        """Where the probes go: each candidate's node endpoint."""
        return [o.node.endpoint for o in self.options]

    def choose(self, first: str | None) -> Decision | None:
        """The decision for the peer that answered first (by its endpoint); None when
        nobody answered in time, or the answer came from no candidate: fall back."""
        for option in self.options:
            if option.node.endpoint == first:
                return option.decide(0.0, f"sparrow: first of {len(self.options)} probed peers to answer")
        return None

    def start(self, now: float) -> ProbeRace:
        """The round under way, its probes sent at `now`."""
        return ProbeRace(self, now + self.timeout_s)


@dataclass
class ProbeRace:
    """One probe round in flight at the prober: the first reply by `deadline` wins (sans-IO:
    the caller brings each reply with the time it came, and wakes at `deadline`)."""

    round: ProbeRound
    deadline: float
    first: str | None = None  # the endpoint of the peer that answered first

    def reply(self, endpoint: str, now: float) -> bool:
        """A ProbeReply came from `endpoint` at `now`: True when it is the first in time,
        which ends the round (a later one, or one after the deadline, changes nothing)."""
        if self.first is not None or now > self.deadline:
            return False
        self.first = endpoint
        return True

    def decision(self) -> Decision | None:
        """The round's outcome: the first answer's decision, or None (fall back)."""
        return self.round.choose(self.first)


class Move(Enum):
    """What a probed peer does with a probe it holds, now."""

    ANSWER = "answer"
    WAIT = "wait"  # for its next state change, or the deadline
    GIVE_UP = "give_up"  # say nothing: a less loaded peer wins


@dataclass(frozen=True)
class ProbeHold:
    """A probe a peer got and has not answered (sans-IO: the caller asks `step` when the probe
    arrives, whenever its own state changes and at `deadline`)."""

    sparrow: Sparrow
    deadline: float

    def step(self, load: int, now: float) -> Move:
        """With `load` requests in flight at `now`: answer if a slot is free, else wait until
        the deadline, then give up."""
        if self.sparrow.free_slot(load):
            return Move.ANSWER
        return Move.GIVE_UP if now >= self.deadline else Move.WAIT


def probe_reply(probe: Probe, state: NodeState) -> ProbeReply:
    """The probed peer's answer, from its state when it answers."""
    ready = any(m.model == probe.model and m.state == "ready" for m in state.models)
    return ProbeReply(probe.request_id, state.node, state.in_flight, ready)


@dataclass(frozen=True)
class Sparrow:
    """The Sparrow policy (module doc); called as a plain peer policy, it is its fallback."""

    fallback: Fallback  # the decision when there is nobody to probe or nobody answers
    d: int  # peers probed per request
    slots: int  # a probed peer with fewer requests in flight than this answers at once
    timeout_s: float = PROBE_TIMEOUT_S
    hold_s: float = PROBE_WAIT_S

    def __call__(self, view: ClusterView, request: PlacementRequest, rng: Random, me: str) -> Decision | Refusal:
        return self.fallback(view, request, rng, me)

    def probes(self, view: ClusterView, request: PlacementRequest, rng: Random, me: str) -> ProbeRound | None:
        """The probe round for `request` placed by peer `me`: d random candidates other
        than `me` (sampled among all, so fewer when `me` is one), or None if none."""
        options = [o for o in candidates(view, request, rng, self.d) if o.node.name != me]
        return ProbeRound(tuple(options), self.timeout_s) if options else None

    def free_slot(self, load: int) -> bool:
        """A probed peer with `load` requests in flight answers now (else when one finishes)."""
        return load < self.slots

    def hold(self, now: float) -> ProbeHold:
        """A probe that arrived at `now`, held for at most `hold_s`."""
        return ProbeHold(self, now + self.hold_s)


def candidates(view: ClusterView, request: PlacementRequest, rng: Random, d: int) -> list[Option]:
    """d random options: holders of the model if any, else nodes that can load it now."""
    options = [holder_option(n, request.model) for n in holder_nodes(view, request)] or cold_options(view, request)
    return rng.sample(options, min(d, len(options)))
