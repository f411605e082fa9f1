"""`startup-optimal`: ServerlessLLM-style placement with MIGRATE (ServerlessLLM sllm/schedulers).

Every node that can take the request without disturbing running work is an option, costed

    cost = queue wait + load time + prefill
         = load·SERVICE_S + (0 if ready, else the node's catalog load_s + EVICT_S per idle
           model evicted) + prompt_tokens·PREFILL_S_PER_TOKEN

and the cheapest wins (ties at random): SERVE where the model is ready, COLD_START
elsewhere. Load times differ per node (each node's catalog says how long *it* takes, e.g.
checkpoint on NVMe vs remote store), which is what makes a node "locality-best".

MIGRATE, kept simple and honest: it is emitted only when the request should go to a node
that cannot hold the model even after evicting its idle models, so it must also evict
models that are running requests, and moving those requests costs less than every
alternative. The moving cost of one busy model instance is

    running·(α·TOKENS_EST + β) + queued·β + L_dst

with α = 0.01 s/token and β = 0.1 s (SLLM's resume cost: the destination re-prefills the
prompt and the tokens generated so far), TOKENS_EST the assumed tokens per running
request (the view carries no per-request token counts), and L_dst the load time of that
model at its best other node (0 where it is ready). The set of instances to move is the
cheapest one that frees enough memory (exhaustive over subsets, at most 2^10; greedy by
cost per byte beyond). MIGRATE's cost = load_s here + EVICT_S per evicted model + moving
cost + the remaining queue + prefill; it is taken only if strictly cheaper than the best
SERVE/COLD_START option, or when there is no other option.

How a MIGRATE is carried out: the coordinator orders the node to live-migrate the running
requests of the busy models it must evict (`room_moves`: one `Migrate` per running
request, to the best other node for that model: ready there and least loaded, else the
fastest to load it), and sends the request there with action MIGRATE. The node's load of
the new model waits until those models go idle (daemons/node/instances.py: a busy
instance is never evicted), which the migrations bring about; requests of theirs that
have not started yet finish there first.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from random import Random

from daemons.policy.capacity import (
    SERVICE_S,
    Option,
    cold_option,
    fits,
    holder_options,
    option_for,
    pick_min,
    queue_wait_s,
    refusal,
    usable,
)
from daemons.policy.rebalance import Move
from daemons.policy.view import (
    FAILED,
    MIGRATE,
    READY,
    SERVE,
    ClusterView,
    Decision,
    LoadedModel,
    NodeView,
    PlacementRequest,
    Refusal,
)

ALPHA_S_PER_TOKEN = 0.01  # SLLM migration resume cost per token (ServerlessLLM sllm/schedulers)
BETA_S = 0.1  # SLLM migration fixed cost per request
TOKENS_EST = 256  # assumed prompt + generated tokens of a running request (uncalibrated)
EVICT_S = 0.5  # stopping one idle instance (uncalibrated; TGI exits in well under a second)
PREFILL_S_PER_TOKEN = 0.0002  # ≈5k prompt tokens/s for a 7-8B model on one GPU (derived, §3)
EXACT_KNAPSACK_MAX = 10  # busy instances per node searched exhaustively


@dataclass(frozen=True, slots=True)
class _Migration:
    node: NodeView
    victims: tuple[str, ...]  # busy models whose requests move
    move_s: float
    cost: float


def option_cost(option: Option, request: PlacementRequest) -> float:
    """Estimated seconds until this request's prefill is done on the option's node."""
    load = option.load_s + EVICT_S * len(option.evict)
    return queue_wait_s(option.node, request) + load + prefill_s(request)


def prefill_s(request: PlacementRequest) -> float:
    return request.prompt_tokens * PREFILL_S_PER_TOKEN


def startup_optimal(view: ClusterView, request: PlacementRequest, rng: Random) -> Decision | Refusal:
    """Cheapest of SERVE / COLD_START / MIGRATE under the cost model above."""
    options, costs, crowded = _survey(view, request)
    best: Option | None = None
    best_cost = float("inf")
    if options:
        best, best_cost = pick_min(options, costs, rng)
    migration = _best_migration(view, crowded, request, best_cost)
    if migration is not None:
        return _migrate_decision(migration, best_cost)
    if best is None:
        return refusal(view, request)
    action = "model ready" if best.action == SERVE else f"load {best.load_s:.1f} s"
    return best.decide(best_cost, f"startup-optimal: {action}, queue {best.node.load}, "
                                  f"est {best_cost:.2f} s over {len(options)} option(s)")


def _survey(view: ClusterView,
            request: PlacementRequest) -> tuple[list[Option], list[float], list[NodeView]]:
    """One pass over the nodes that know the model: the options with their costs, and the
    nodes that could only take it by moving running work (MIGRATE candidates), fastest-
    loading first. A node whose load time alone already exceeds the best cost so far can
    win neither way and is skipped without costing it (the hot path when holders exist)."""
    model = request.model
    options = holder_options(view, request)
    costs = [option_cost(o, request) for o in options]
    bound = min(costs, default=float("inf"))
    floor = prefill_s(request)
    crowded: list[NodeView] = []
    if view.catalog.fastest_load_s.get(model, 0.0) + floor > bound:
        return options, costs, crowded  # no node loads it fast enough to beat a holder
    for name in view.catalog.listing.get(model, ()):
        node = usable(view, name, request)
        if node is None or node.has_model(model):
            continue
        item = node.catalog[model]
        if item.load_s + floor > bound:
            continue
        if fits(node, model):
            option = option_for(node, model)
            options.append(option)
            costs.append(cost := option_cost(option, request))
            bound = min(bound, cost)
        elif item.footprint_bytes <= node.memory_total and _not_failed(node, model):
            crowded.append(node)
    crowded.sort(key=lambda n: n.catalog[model].load_s)
    return options, costs, crowded


def _not_failed(node: NodeView, model: str) -> bool:
    current = node.models.get(model)
    return current is None or current.state != FAILED


def _best_migration(view: ClusterView, crowded: list[NodeView], request: PlacementRequest,
                    to_beat: float) -> _Migration | None:
    """The cheapest MIGRATE option that beats `to_beat`, if any."""
    found: _Migration | None = None
    for node in crowded:
        # MIGRATE costs at least this node's load time plus one resume; `crowded` is
        # sorted by load time, so once that bound loses, every later node loses too.
        if node.catalog[request.model].load_s + BETA_S + prefill_s(request) >= to_beat:
            break
        candidate = _migration_on(view, node, request)
        if candidate is not None and candidate.cost < to_beat:
            found, to_beat = candidate, candidate.cost
    return found


def _migration_on(view: ClusterView, node: NodeView, request: PlacementRequest) -> _Migration | None:
    item = node.catalog[request.model]
    shortage = item.footprint_bytes - node.reclaimable_bytes
    movable = [(m, cost) for m in node.models.values()
               if m.state == READY and not node.is_idle(m) and m.model not in node.pending_models
               and (cost := _move_cost(view, node, m)) is not None]
    chosen = _cheapest_cover(movable, shortage)
    if chosen is None:
        return None
    victims = tuple(m.model for m, _ in chosen)
    move_s = sum(c for _, c in chosen)
    idle = sum(1 for m in node.models.values() if node.is_idle(m))
    left = node.load - sum(m.queue_depth for m, _ in chosen)
    cost = (item.load_s + EVICT_S * (idle + len(victims)) + move_s + max(0, left) * SERVICE_S
            + prefill_s(request))
    return _Migration(node, victims, move_s, cost)


def _move_cost(view: ClusterView, src: NodeView, m: LoadedModel) -> float | None:
    """Seconds to move this instance's requests elsewhere; None if nowhere can take them."""
    resume = m.running * (ALPHA_S_PER_TOKEN * TOKENS_EST + BETA_S) + m.queue_depth * BETA_S
    if any(n != src.name and view.nodes[n].is_ready(m.model) for n in view.holders.get(m.model, ())):
        return resume
    loads = [o.load_s for n in view.catalog.listing.get(m.model, ())
             if n != src.name and (o := cold_option(view.nodes[n], m.model)) is not None]
    return resume + min(loads) if loads else None


def _cheapest_cover(movable: list[tuple[LoadedModel, float]],
                    shortage: int) -> list[tuple[LoadedModel, float]] | None:
    """Minimum-cost subset whose memory covers `shortage` (a 0/1 knapsack, as in SLLM)."""
    if sum(m.memory_bytes for m, _ in movable) < shortage:
        return None
    if len(movable) > EXACT_KNAPSACK_MAX:
        return _greedy_cover(movable, shortage)
    best: list[tuple[LoadedModel, float]] | None = None
    best_cost = float("inf")
    for r in range(1, len(movable) + 1):
        for subset in itertools.combinations(movable, r):
            cost = sum(c for _, c in subset)
            if cost < best_cost and sum(m.memory_bytes for m, _ in subset) >= shortage:
                best, best_cost = list(subset), cost
    return best


def _greedy_cover(movable: list[tuple[LoadedModel, float]],
                  shortage: int) -> list[tuple[LoadedModel, float]]:
    ranked = sorted(movable, key=lambda mc: mc[1] / max(1, mc[0].memory_bytes))
    chosen, freed = [], 0
    for m, c in ranked:
        if freed >= shortage:
            break
        chosen.append((m, c))
        freed += m.memory_bytes
    return chosen


def _migrate_decision(mig: _Migration, alternative: float) -> Decision:
    node = mig.node
    idle = tuple(m.model for m in node.models.values() if node.is_idle(m))
    alt = "no other option" if alternative == float("inf") else f"best alternative {alternative:.2f} s"
    reason = (f"startup-optimal: MIGRATE requests of {', '.join(mig.victims)} off (moving {mig.move_s:.2f} s) "
              f"to load here, est {mig.cost:.2f} s vs {alt}")
    return Decision(node.name, node.endpoint, MIGRATE, mig.cost, reason, idle + mig.victims)


def room_moves(view: ClusterView, decision: Decision) -> list[Move]:
    """The live migrations that make room for a MIGRATE `decision`: one per running request
    of each busy model it evicts, to that model's best other node (none if nowhere)."""
    node = view.nodes.get(decision.node)
    if node is None or decision.action != MIGRATE:
        return []
    moves: list[Move] = []
    for name in decision.evict:
        m = node.models.get(name)
        if m is None or not m.running:
            continue
        dst = _move_destination(view, node, name)
        if dst is not None:
            moves += [Move(node.name, node.endpoint, dst.name, dst.endpoint, name,
                           f"startup-optimal: room for a load on {node.name}")] * m.running
    return moves


def _move_destination(view: ClusterView, src: NodeView, model: str) -> NodeView | None:
    """Ready elsewhere and least loaded; else where it loads fastest (as `_move_cost` costs it)."""
    ready = [view.nodes[n] for n in view.holders.get(model, ()) if n != src.name and view.nodes[n].is_ready(model)]
    if ready:
        return min(ready, key=lambda n: (n.load, n.name))
    cold = [(o.load_s, n) for n in view.catalog.listing.get(model, ())
            if n != src.name and (o := cold_option(view.nodes[n], model)) is not None]
    return view.nodes[min(cold)[1]] if cold else None
