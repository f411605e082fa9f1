"""Decentralized policies: a gossip peer places a request from its own, possibly stale, view.

Each is a pure function of (view, request, rng, me) where `me` is the deciding peer. They
follow Sparrow, Ousterhout et al. SOSP'13; Mitzenmacher's power of d choices: never route to the argmin of a stale table
(that herds every peer onto the same node); sample a few candidates instead, and count
the peer's own recent placements as pending load (the view's optimistic update).

- `local-first` (D0): serve here when the model is ready and our queue is short, else
  forward to a random holder with a short queue, else load it here if it fits, else the
  least loaded holder, else COLD_START on a random node that fits.
- `power-of-d` (D1): the less loaded of d random holders; if nobody holds the model,
  COLD_START on the cheapest (load time + queue) of d random nodes where it fits.
- `sparrow` (D2): probe d candidates, the first to answer wins (late binding, one extra
  round trip); power-of-d when nobody answers. Its own module (daemons/policy/sparrow.py)
  holds the probe step; the peer only sends the probes and collects the replies.

They are looked up by name, with the coordinator's, in daemons/policy/registry.py.
"""

from __future__ import annotations

from random import Random

from daemons.policy.capacity import (
    Option,
    ahead,
    cold_nodes,
    cold_options,
    holder_nodes,
    holder_option,
    option_for,
    pick_min,
    queue_wait_s,
    refusal,
    usable,
)
from daemons.policy.sparrow import Sparrow
from daemons.policy.view import ClusterView, Decision, PlacementRequest, Refusal

QUEUE_CAP = 4  # local-first: a queue this long or longer sends work elsewhere
D = 2  # power of two choices: most of the gain of sampling (Mitzenmacher)

def _decide(option: Option, why: str, request: PlacementRequest) -> Decision:
    wait = queue_wait_s(option.node, request) + option.load_s
    return option.decide(wait, f"{why}; {option.action} (queue {option.node.load})")


def local_first(view: ClusterView, request: PlacementRequest, rng: Random, me: str) -> Decision | Refusal:
    mine = usable(view, me, request)
    if mine is not None and mine.is_ready(request.model) and mine.load < QUEUE_CAP:
        return _decide(holder_option(mine, request.model), "local-first: ready here", request)
    holders = [n for n in holder_nodes(view, request) if n.name != me]
    short = [n for n in holders if n.is_ready(request.model) and n.load < QUEUE_CAP]
    if short:
        return _decide(holder_option(rng.choice(short), request.model), "local-first: forward to a holder", request)
    if mine is not None:
        here = [o for o in cold_options(view, request) if o.node.name == me]
        if mine.has_model(request.model) or here:
            return _decide(option_for(mine, request.model), "local-first: here", request)
    if holders:
        best, _ = pick_min(holders, [float(ahead(n, request.priority)) for n in holders], rng)
        return _decide(holder_option(best, request.model), "local-first: least loaded holder", request)
    cold = cold_options(view, request)
    if cold:
        return _decide(rng.choice(cold), "local-first: load on a random node", request)
    return refusal(view, request)


def power_of_d(view: ClusterView, request: PlacementRequest, rng: Random, me: str) -> Decision | Refusal:
    holders = holder_nodes(view, request)
    if holders:
        sample = rng.sample(holders, min(D, len(holders)))
        best, _ = pick_min(sample, [float(ahead(n, request.priority)) for n in sample], rng)
        return _decide(holder_option(best, request.model), f"power-of-{D}: less loaded of {len(sample)} holders",
                       request)
    cold = cold_nodes(view, request)
    if not cold:
        return refusal(view, request)
    # The sample is drawn from the nodes, and only its few become options (idle victims
    # and all): the same draw as from their options, at O(d) instead of O(nodes) each.
    options = [option_for(n, request.model) for n in rng.sample(cold, min(D, len(cold)))]
    cheapest, _ = pick_min(options, [o.load_s + queue_wait_s(o.node, request) for o in options], rng)
    return _decide(cheapest, f"power-of-{D}: cheapest load of {len(options)} nodes", request)


# A probed peer answers at once below local-first's queue cap: the same "room here" rule.
SPARROW = Sparrow(fallback=power_of_d, d=D, slots=QUEUE_CAP)
