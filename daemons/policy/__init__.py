"""Placement policies: pure functions of a `ClusterView` and a `PlacementRequest` -> Decision | Refusal.

No sockets, no clocks, no daemon imports: the coordinator, every gossip peer and the
simulator run the same code on a view they built themselves.

    from random import Random
    from daemons.policy import ClusterView, NodeView, PlacementRequest, get_policy
    view = ClusterView.build([NodeView("n0", "tcp://127.0.0.1:5560", ...)])
    decision = get_policy("affinity-score", "centralized")(view, PlacementRequest("m"), Random(0))
    decision = get_policy("power-of-d", "gossip")(view, PlacementRequest("m"), Random(0), "n0")

Which policies serve which mode (the coordinator, gossip peers): daemons/policy/registry.py.
"""

from daemons.policy.registry import (
    DEFAULT_GOSSIP_POLICY,
    DEFAULT_POLICY,
    MODES,
    POLICIES,
    Mode,
    PeerPolicy,
    Policy,
    PolicyEntry,
    get_policy,
    names,
)
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
    "DEFAULT_GOSSIP_POLICY",
    "DEFAULT_POLICY",
    "MIGRATE",
    "MODES",
    "NO_NODES",
    "POLICIES",
    "SERVE",
    "UNKNOWN_MODEL",
    "CatalogIndex",
    "CatalogItem",
    "ClusterView",
    "Decision",
    "LoadedModel",
    "Mode",
    "NodeView",
    "PeerPolicy",
    "PlacementRequest",
    "Policy",
    "PolicyEntry",
    "Refusal",
    "get_policy",
    "names",
    "with_placement",
]
