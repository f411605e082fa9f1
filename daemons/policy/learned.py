"""`--affinity learned`: rank a request's candidates by the TTFT their own observations predict.

The static policies rank by configured scores (affinity-score's 1000·has_model − 10·queue −
100·gpu_util, startup-optimal's queue·0.5 s + catalog load time + prefill, the gossip
policies' queue lengths), which cannot tell a fast GPU from a slow one serving the same
model. With learned affinity every candidate (a holder, SERVE; or a node where the model
fits, COLD_START) is costed from what that node has measured (estimates.py):

    predicted TTFT = load + (1 + ahead) · ttft

- `ttft`: the node's EWMA of its warm TTFT for this model (prefill on that GPU); a node
  that has not served the model yet gets the mean of the nodes that have (neutral: neither
  favoured nor shunned, so it gets tried), or the static prefill estimate when nobody has;
- `ahead`: the requests a new one would queue behind (capacity.ahead): under continuous
  batching (TGI's router, the emulator) prefills run one batch step at a time, so each
  request ahead holds a new one up by about one prefill of that node;
- `load`: 0 where the model is ready; otherwise the node's EWMA of its own load time for
  the model, or its catalog figure before its first load; plus EVICT_S per idle model evicted.

The cheapest wins, ties at random. Centralized (affinity-score, startup-optimal) ranks every
option; a gossip peer (local-first, power-of-d, sparrow's fallback) ranks D random options
plus its own, since the argmin of a stale table herds every peer onto one node (Sparrow).
A request no option fits goes to the base policy unchanged (its MIGRATE or its refusal).
"""

from __future__ import annotations

from collections.abc import Callable
from random import Random

from daemons.policy.capacity import Option, ahead, all_options, pick_min
from daemons.policy.startup import EVICT_S, prefill_s
from daemons.policy.view import SERVE, ClusterView, Decision, PlacementRequest, Refusal

D = 2  # gossip: random options ranked besides the peer's own (power of two choices)

Centralized = Callable[[ClusterView, PlacementRequest, Random], Decision | Refusal]
Peer = Callable[[ClusterView, PlacementRequest, Random, str], Decision | Refusal]


def prior_ttft(view: ClusterView, request: PlacementRequest) -> float:
    """The TTFT assumed where a node has no observation of the model yet."""
    seen = [e.ttft_s for name in view.catalog.listing.get(request.model, ())
            if (e := view.nodes[name].estimates.get(request.model)) is not None and e.requests]
    return sum(seen) / len(seen) if seen else prefill_s(request)


def predicted_ttft(option: Option, request: PlacementRequest, prior: float) -> float:
    """Seconds to this request's first token on the option's node (module doc)."""
    node, est = option.node, option.node.estimates.get(request.model)
    ttft = est.ttft_s if est is not None and est.requests else prior
    load = 0.0
    if option.action != SERVE:
        load = est.load_s if est is not None and est.loads else option.load_s
        load += EVICT_S * len(option.evict)
    return load + (1 + ahead(node, request.priority)) * ttft


def _choose(options: list[Option], view: ClusterView, request: PlacementRequest, rng: Random,
            why: str) -> Decision:
    prior = prior_ttft(view, request)
    costs = [predicted_ttft(o, request, prior) for o in options]
    best, cost = pick_min(options, costs, rng)
    est = best.node.estimates.get(request.model)
    basis = f"{est.requests} observation(s)" if est is not None and est.requests else "no observation yet"
    return best.decide(cost, f"{why} learned affinity: predicted TTFT {cost:.3f} s on {best.node.name} "
                             f"({basis}, queue {best.node.load}) over {len(options)} option(s)")


def centralized(base: Centralized, name: str) -> Centralized:
    """`name` (affinity-score, startup-optimal) ranking every option by predicted TTFT."""
    def learned(view: ClusterView, request: PlacementRequest, rng: Random) -> Decision | Refusal:
        options = all_options(view, request)
        if not options:
            return base(view, request, rng)
        return _choose(options, view, request, rng, f"{name}:")
    return learned


def peer(base: Peer, name: str) -> Peer:
    """A gossip policy ranking its own option and D random others by predicted TTFT."""
    def learned(view: ClusterView, request: PlacementRequest, rng: Random, me: str) -> Decision | Refusal:
        options = all_options(view, request)
        if not options:
            return base(view, request, rng, me)
        mine = [o for o in options if o.node.name == me]
        others = [o for o in options if o.node.name != me]
        sample = mine + rng.sample(others, min(D, len(others)))
        return _choose(sample, view, request, rng, f"{name}:")
    return learned


__all__ = ["D", "centralized", "peer", "predicted_ttft", "prior_ttft"]
