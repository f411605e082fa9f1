"""Sparrow: a gossip policy that probes before it places (late binding).

Sparrow (Ousterhout et al., "Sparrow: Distributed, Low Latency Scheduling", SOSP 2013)
does not trust a stale view for the final choice: it asks d candidate peers, and the
request goes to the first that says it has room. This module is the whole policy except
the I/O, which stays with the gossip peer (daemons/node/gossip_mode.py):

- the prober asks `probes(view, request, rng, me)` for a `ProbeRound`: the d candidates
  (holders of the model if any, else nodes that could load it; never itself), or None
  when there is nobody to probe;
- it sends each candidate a `Probe`, waits at most `timeout_s` for the first `ProbeReply`,
  and asks `round.choose(first)` for the decision: the first peer to answer wins;
- no candidate, or no answer in time: the policy itself decides (`__call__`), which is its
  `fallback` (power of d choices from the view);
- a probed peer answers when `free_slot(its load)`: at once if it has a free slot, else
  as soon as one frees, giving up (no answer at all, so a less loaded peer wins) after
  `hold_s`.

Simplified from the paper: one request per probe round (no batch sampling), and the
reply carries no task; the prober then forwards the request to the winner.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from random import Random
from typing import TypeAlias

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


def candidates(view: ClusterView, request: PlacementRequest, rng: Random, d: int) -> list[Option]:
    """d random options: holders of the model if any, else nodes that can load it now."""
    options = [holder_option(n, request.model) for n in holder_nodes(view, request)] or cold_options(view, request)
    return rng.sample(options, min(d, len(options)))
