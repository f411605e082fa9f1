"""`affinity-score`: the prototype's rule, as its documents meant it (joshSi/Team-4-Decentralized-Scheduler).

    score = 1000·has_model − 10·queue − 100·gpu_util

computed over every node that can take the request, the best score wins: SERVE where the
model is ready, otherwise COLD_START (on the best-scoring node that can hold it, which is
the least loaded one since has_model is 0 for all of them).

What the prototype got wrong and this version does not:
- it split holders and non-holders *before* ranking, so the +1000 never mattered and an
  overloaded holder always won; here both compete on one score, so a holder ~100 requests
  deep loses to an idle node that can cold-start the model;
- it had no optimistic update and broke ties by list order, so a burst against stale
  state went 100 % to one node; here `queue` counts the caller's pending placements and
  ties are broken at random;
- it had no capacity accounting; here a COLD_START only goes where the model fits.

`queue` is the node's waiting requests plus pending placements; `gpu_util` is memory
utilisation (used / total), which is what PROTO's scorer read.
"""

from __future__ import annotations

from random import Random

from daemons.policy.capacity import Option, cold_nodes, holder_nodes, option_for, pick_min, queue_wait_s, refusal
from daemons.policy.view import SERVE, ClusterView, Decision, NodeView, PlacementRequest, Refusal

HAS_MODEL_BONUS = 1000.0
QUEUE_WEIGHT = 10.0
UTIL_WEIGHT = 100.0
COLD_WAIT_S = 10.0  # PROTO's flat cold-start estimate, used when a node gives no load time


def score(node: NodeView, has_model: bool) -> float:
    return HAS_MODEL_BONUS * has_model - QUEUE_WEIGHT * node.load - UTIL_WEIGHT * node.gpu_util


def affinity_score(view: ClusterView, request: PlacementRequest, rng: Random) -> Decision | Refusal:
    """Highest score wins; SERVE if the winner has the model ready, else COLD_START."""
    held = _best_holders(view, request)
    if held is not None:  # the common, hot case: a holder scores >= 0, no non-holder can win
        best, tied = held
        winner = tied[0] if len(tied) == 1 else rng.choice(tied)
    else:
        nodes = holder_nodes(view, request)
        scores = [score(n, True) for n in nodes]
        cold = cold_nodes(view, request)
        nodes += cold
        scores += [score(n, False) for n in cold]
        if not nodes:
            return refusal(view, request)
        winner, cost = pick_min(nodes, [-s for s in scores], rng)
        best = -cost
    option = option_for(winner, request.model)
    return option.decide(_est_wait(option, request), _reason(option, best))


def _best_holders(view: ClusterView, request: PlacementRequest) -> tuple[float, list[NodeView]] | None:
    """The best holder score and the usable holders that reach it, in holder order (the ties
    `pick_min` would draw from); None when no holder scores >= 0, which is when the nodes
    without the model must be scored too (one scores at most 0).

    `score` and `pick_min` inlined over one pass: this runs on every decision, and a call per
    holder and per list cost as much as the rest of the policy (the same float operations in
    the same order, so the same scores, ties and random draws)."""
    nodes, exclude = view.nodes, request.exclude
    best = -1.0
    tied: list[NodeView] = []
    for name in view.holders.get(request.model, ()):
        if name in exclude:
            continue
        n = nodes[name]
        if not n.alive:
            continue
        s = HAS_MODEL_BONUS - QUEUE_WEIGHT * n.load - UTIL_WEIGHT * n.gpu_util  # score(n, True): 1000.0 * True is exact
        if s > best:
            best, tied = s, [n]
        elif s == best:
            tied.append(n)
    return (best, tied) if best >= 0.0 else None


def _est_wait(option: Option, request: PlacementRequest) -> float:
    wait = queue_wait_s(option.node, request)
    if option.action != SERVE:
        wait += option.load_s or COLD_WAIT_S
    return wait


def _reason(option: Option, best: float) -> str:
    node = option.node
    where = "model ready" if option.action == SERVE else "model not ready there"
    return (f"affinity score {best:.0f} ({where}, queue {node.load}, "
            f"gpu util {node.gpu_util:.0%})")
