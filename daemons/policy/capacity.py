"""Which nodes can take a request, and at what cost in loading: shared by every policy.

An `Option` is one node a request could go to without disturbing running work:
- SERVE: the model is ready there;
- COLD_START: the model is loading there, or the node lists it in its catalog and its
  footprint fits in GPU memory after evicting idle models (LRU first).
Capacity awareness lives here so no policy can send a COLD_START to a node that cannot
hold the model (PROTO had no capacity accounting at all, the prototype, joshSi/Team-4-Decentralized-Scheduler).

Evicting a *busy* model is not an option here: that is MIGRATE, decided by the
startup-optimal policy alone (see `startup.py`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from random import Random
from typing import TypeVar

from daemons.core.slotted import positional
from daemons.policy.view import (
    COLD_START,
    FAILED,
    NO_NODES,
    SERVE,
    UNKNOWN_MODEL,
    ClusterView,
    Decision,
    NodeView,
    PlacementRequest,
    Refusal,
)

GIB = float(1 << 30)
T = TypeVar("T")
# PROTO's estimate of the wait behind one queued request (uncalibrated): est_wait_s of every
# policy, and the queue term of startup-optimal's cost.
SERVICE_S = 0.5


def ahead(node: NodeView, priority: int) -> int:
    """The requests at `node` a new request of `priority` would wait behind: all it holds,
    less the ones waiting in its queues with a lower priority, which it overtakes
    (priority.py). Every policy that estimates queueing counts this, never `load` alone."""
    waiting = node.waiting_by_priority
    if not waiting:  # the common case, on every decision: nothing to overtake
        return node.load
    below = sum(n for p, n in waiting.items() if p < priority)
    return max(0, node.load - below)


def queue_wait_s(node: NodeView, request: PlacementRequest) -> float:
    """Estimated wait at `node` before `request` starts: the work ahead of it."""
    return ahead(node, request.priority) * SERVICE_S


@dataclass(frozen=True, slots=True)
class Option:
    """A node that can take the request, what it must do first and how long loading takes."""

    node: NodeView
    action: str  # SERVE | COLD_START
    load_s: float  # 0 when ready; the node's catalog load time when loading or cold
    evict: tuple[str, ...] = ()  # idle models to evict first (COLD_START only)

    def decide(self, est_wait_s: float, reason: str) -> Decision:
        return _new_decision(self.node.name, self.node.endpoint, self.action, est_wait_s, reason, self.evict)


_new_decision = positional(Decision)  # Decision(...) with every field, at half the cost (slotted.py)
_new_option = positional(Option)  # built once per decision too


def usable(view: ClusterView, name: str, request: PlacementRequest) -> NodeView | None:
    """The node if it is alive and not excluded by the request."""
    node = view.nodes.get(name)
    if node is None or not node.alive or name in request.exclude:
        return None
    return node


def holder_nodes(view: ClusterView, request: PlacementRequest) -> list[NodeView]:
    """Usable nodes where the model is ready, loading, or a load was already ordered."""
    nodes, exclude = view.nodes, request.exclude
    return [n for name in view.holders.get(request.model, ())
            if name not in exclude and (n := nodes[name]).alive]


def cold_nodes(view: ClusterView, request: PlacementRequest) -> list[NodeView]:
    """Usable nodes without the model that could load it now (after idle evictions)."""
    model, nodes, exclude = request.model, view.nodes, request.exclude
    return [n for name in view.catalog.listing.get(model, ())
            if name not in exclude and (n := nodes[name]).alive and not n.has_model(model) and fits(n, model)]


def fits(node: NodeView, model: str) -> bool:
    """The model's footprint fits after evicting idle models, and it did not just fail here."""
    item = node.catalog.get(model)
    if item is None or item.footprint_bytes > node.reclaimable_bytes:
        return False
    current = node.models.get(model)
    return current is None or current.state != FAILED  # retrying a failed load would loop


def option_for(node: NodeView, model: str) -> Option:
    """What `node` must do to take `model`: a holder's option or a COLD_START with victims."""
    if node.has_model(model):
        return holder_option(node, model)
    item = node.catalog[model]
    return _new_option(node, COLD_START, item.load_s, idle_victims(node, item.footprint_bytes))


def holder_option(node: NodeView, model: str) -> Option:
    if node.is_ready(model):
        return _new_option(node, SERVE, 0.0, ())
    item = node.catalog.get(model)
    return _new_option(node, COLD_START, item.load_s if item is not None else 0.0, ())


def cold_option(node: NodeView, model: str) -> Option | None:
    """COLD_START on a node that does not hold the model, if it fits after idle evictions."""
    return option_for(node, model) if fits(node, model) else None


def holder_options(view: ClusterView, request: PlacementRequest) -> list[Option]:
    return [holder_option(n, request.model) for n in holder_nodes(view, request)]


def cold_options(view: ClusterView, request: PlacementRequest) -> list[Option]:
    return [option_for(n, request.model) for n in cold_nodes(view, request)]


def all_options(view: ClusterView, request: PlacementRequest) -> list[Option]:
    return holder_options(view, request) + cold_options(view, request)


def idle_victims(node: NodeView, needed: int) -> tuple[str, ...]:
    """Idle models to evict, least recently used first, until `needed` bytes are free."""
    if needed <= node.free_bytes:
        return ()
    idle = sorted((m for m in node.models.values() if node.is_idle(m)), key=lambda m: m.last_used)
    victims: list[str] = []
    free = node.free_bytes
    for m in idle:
        if free >= needed:
            break
        victims.append(m.model)
        free += m.memory_bytes
    return tuple(victims)


def refusal(view: ClusterView, request: PlacementRequest) -> Refusal:
    """The error for a request no option was found for, naming the problem."""
    model = request.model
    if model not in view.catalog.known:
        known = ", ".join(sorted(view.catalog.known)[:10]) or "none"
        return Refusal(UNKNOWN_MODEL, f"model {model!r} is in no node's catalog (known: {known}): "
                                      "check the name or add it to a node's models")
    if not view.order:
        return Refusal(NO_NODES, f"no live node ({len(view.nodes)} known, all dead): "
                                 "start node agents publishing to this scheduler")
    excluded = sum(1 for name in view.order if name in request.exclude)
    footprint = _footprint(view, model)
    return Refusal(NO_NODES, f"no live node can hold model {model!r}: {len(view.order)} alive, "
                             f"{excluded} excluded, none has it loaded or {footprint / GIB:.1f} GiB free "
                             "after evicting idle models")


def worth_waiting(view: ClusterView, request: PlacementRequest) -> bool:
    """Whether a request refused now may be placed later, so a scheduler should hold it.

    Yes when no node is alive (one may join or come back), or when a live node the request
    does not exclude lists the model and could hold it once memory frees there (busy models
    go idle, loads finish). No when the model fits no such node even empty: waiting cannot help.
    """
    if not view.order:
        return True
    for name in view.catalog.listing.get(request.model, ()):
        node = usable(view, name, request)
        item = None if node is None else node.catalog.get(request.model)
        if node is not None and item is not None and item.footprint_bytes <= node.memory_total:
            return True
    return False


def _footprint(view: ClusterView, model: str) -> int:
    for node in view.nodes.values():
        item = node.catalog.get(model)
        if item is not None:
            return item.footprint_bytes
    return 0


def pick_min(options: Sequence[T], cost: Sequence[float], rng: Random) -> tuple[T, float]:
    """The cheapest item, ties broken at random (a stable sort sent PROTO's ties to one node)."""
    best = min(cost)
    tied = [o for o, c in zip(options, cost, strict=True) if c == best]
    return (tied[0] if len(tied) == 1 else rng.choice(tied)), best
