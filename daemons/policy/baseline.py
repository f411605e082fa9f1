"""Baseline policies: round-robin, random, least-loaded (the usual baselines).

Round-robin and random ignore load and locality on purpose (they are what the smarter
policies must beat), but not capacity: a node is taken only if it holds the model or can
load it after evicting idle models, so a baseline never orders an impossible COLD_START.
"""

from __future__ import annotations

from random import Random

from daemons.policy.capacity import (
    Option,
    ahead,
    all_options,
    cold_nodes,
    fits,
    holder_nodes,
    option_for,
    pick_min,
    queue_wait_s,
    refusal,
    usable,
)
from daemons.policy.view import ClusterView, Decision, PlacementRequest, Refusal

RANDOM_TRIES = 8  # random picks before falling back to a full shuffled scan


def _option_on(view: ClusterView, name: str, request: PlacementRequest) -> Option | None:
    node = usable(view, name, request)
    if node is None or not (node.has_model(request.model) or fits(node, request.model)):
        return None
    return option_for(node, request.model)


def _decide(option: Option, why: str, request: PlacementRequest) -> Decision:
    wait = queue_wait_s(option.node, request) + option.load_s
    return option.decide(wait, f"{why}; {option.action} (queue {option.node.load})")


def round_robin(view: ClusterView, request: PlacementRequest, rng: Random) -> Decision | Refusal:
    """The next alive node in name order (from `view.cursor`) that can take the model."""
    n = len(view.order)
    for step in range(n):
        option = _option_on(view, view.order[(view.cursor + step) % n], request)
        if option is not None:
            return _decide(option, "round-robin", request)
    return refusal(view, request)


def random_choice(view: ClusterView, request: PlacementRequest, rng: Random) -> Decision | Refusal:
    """A uniformly random alive node among those that can take the model."""
    if not view.order:
        return refusal(view, request)
    # A few cheap random probes first: shuffling 100 names per request costs more than the
    # rest of the decision, and most nodes can usually take the model.
    for _ in range(RANDOM_TRIES):
        option = _option_on(view, rng.choice(view.order), request)
        if option is not None:
            return _decide(option, "random", request)
    options = all_options(view, request)
    if not options:
        return refusal(view, request)
    return _decide(rng.choice(options), "random", request)


def least_loaded(view: ClusterView, request: PlacementRequest, rng: Random) -> Decision | Refusal:
    """Join the shortest queue (waiting + running + pending) among holders, else among all."""
    nodes = holder_nodes(view, request)
    why = "least-loaded holder"
    if not nodes:
        nodes = cold_nodes(view, request)
        why = "least-loaded node (no holder)"
    if not nodes:
        return refusal(view, request)
    winner, _ = pick_min(nodes, [float(ahead(n, request.priority)) for n in nodes], rng)
    return _decide(option_for(winner, request.model), why, request)
