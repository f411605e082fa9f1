"""Placement policies: pure functions `(ClusterView, PlacementRequest, Random) -> Decision | Refusal`.

No sockets, no clocks, no daemon imports: the coordinator, every gossip peer and the
simulator run the same code on a view they built themselves.

    from random import Random
    from daemons.policy import ClusterView, NodeView, PlacementRequest, get_policy
    view = ClusterView.build([NodeView("n0", "tcp://127.0.0.1:5560", ...)])
    decision = get_policy("affinity-score")(view, PlacementRequest("m"), Random(0))
"""

from daemons.policy.registry import DEFAULT_POLICY, POLICIES, Policy, get_policy
from daemons.policy.view import (
    COLD_START,
    MIGRATE,
    NO_NODES,
    SERVE,
    UNKNOWN_MODEL,
    CatalogIndex,
    CatalogItem,
    ClusterView,
    Decision,
    LoadedModel,
    NodeView,
    PlacementRequest,
    Refusal,
    with_placement,
)

__all__ = [
    "COLD_START",
    "DEFAULT_POLICY",
    "MIGRATE",
    "NO_NODES",
    "POLICIES",
    "SERVE",
    "UNKNOWN_MODEL",
    "CatalogIndex",
    "CatalogItem",
    "ClusterView",
    "Decision",
    "LoadedModel",
    "NodeView",
    "PlacementRequest",
    "Policy",
    "Refusal",
    "get_policy",
    "with_placement",
]
