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

import math
from random import Random

from daemons.policy.capacity import Option, fits, option_for, queue_wait_s, refusal
from daemons.policy.view import SERVE, ClusterView, Decision, NodeView, PlacementRequest, Refusal

HAS_MODEL_BONUS = 1000.0
QUEUE_WEIGHT = 10.0
UTIL_WEIGHT = 100.0
NO_MODEL = HAS_MODEL_BONUS * False  # 0.0, as `score` computes it for a node without the model
COLD_WAIT_S = 10.0  # PROTO's flat cold-start estimate, used when a node gives no load time


def score(node: NodeView, has_model: bool) -> float:
    return HAS_MODEL_BONUS * has_model - QUEUE_WEIGHT * node.load - UTIL_WEIGHT * node.gpu_util


def affinity_score(view: ClusterView, request: PlacementRequest, rng: Random) -> Decision | Refusal:
    """Highest score wins; SERVE if the winner has the model ready, else COLD_START."""
    best, tied = _best_holders(view, request)
    # A node without the model scores at most 0, so it can only win when every holder is
    # below 0: the nodes that could load it are scanned only then (the hot case skips them).
    if best < 0.0:
        best, tied = _with_cold_nodes(view, request, best, tied)
        if not tied:
            return refusal(view, request)
    winner = tied[0] if len(tied) == 1 else rng.choice(tied)
    option = option_for(winner, request.model)
    return option.decide(_est_wait(option, request), _reason(option, best))


# The two scans below are `score` and `pick_min` over `holder_nodes` + `cold_nodes` (capacity.py)
# inlined into one pass each: they run on every decision, and a call per node and a list per
# step cost several times the arithmetic. The same float operations in the same order give the
# same scores; the nodes tied at the best score come in the same order (holders, then the rest
# in listing order), so the random draw among them is the same too (tests/policy/test_affinity.py
# checks all of it against the rule written plainly).
def _best_holders(view: ClusterView, request: PlacementRequest) -> tuple[float, list[NodeView]]:
    """The best score of the usable holders and those that reach it (-inf, [] when none)."""
    nodes, exclude = view.nodes, request.exclude
    best = -math.inf
    tied: list[NodeView] = []
    bonus, queue_weight, util_weight = HAS_MODEL_BONUS, QUEUE_WEIGHT, UTIL_WEIGHT  # locals: read per holder
    for name in view.holders.get(request.model, ()):
        if exclude and name in exclude:  # most requests exclude nothing
            continue
        n = nodes[name]
        if not n.alive:
            continue
        s = bonus - queue_weight * n.load - util_weight * n.gpu_util  # score(n, True)
        if s > best:
            best, tied = s, [n]
        elif s == best:
            tied.append(n)
    return best, tied


def _with_cold_nodes(view: ClusterView, request: PlacementRequest, best: float,
                     tied: list[NodeView]) -> tuple[float, list[NodeView]]:
    """`best` and `tied` once the nodes that could cold-start the model compete too. A node
    scoring below the best so far cannot be among the final ties, so whether the model fits
    there (the costly check) is asked only of the others."""
    model, nodes, exclude = request.model, view.nodes, request.exclude
    for name in view.catalog.listing.get(model, ()):
        if name in exclude:
            continue
        n = nodes[name]
        if not n.alive:
            continue
        s = NO_MODEL - QUEUE_WEIGHT * n.load - UTIL_WEIGHT * n.gpu_util  # score(n, False)
        if s < best or n.has_model(model) or not fits(n, model):
            continue
        if s > best:
            best, tied = s, [n]
        else:
            tied.append(n)
    return best, tied


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
