"""Hybrid scheduling's rules: which decisions a peer takes itself, which go to the coordinator.

Hawk (Delgado et al., USENIX ATC 2015) and Eagle (Delgado et al., SoCC 2016) split a
cluster's scheduling by what a decision needs to know: a central scheduler places the jobs
that need the global view (Hawk: the long jobs), distributed schedulers place the rest
(the short ones) by sampling, and Eagle's Succinct State Sharing sends the distributed
schedulers a compact map from the central one (which nodes its long jobs occupy), so they
steer around them. Here the split is by what a request needs of the cluster's memory:

- warm: the peer's gossip policy (power-of-d, local-first, ...) chose a node that holds the
  model (ready, loading, or a load already ordered there): no new load, no eviction, no
  migration. The peer places it itself (`PEER`).
- anything else (a cold start, an eviction to make room, a migration, or no room in the
  peer's view at all) is referred to the coordinator, which decides it with its global view
  and the centralized policy (`COORDINATOR`).
- a retry is referred too: once a node the peer chose could not take the request (it
  refused, or failed it), the peer's view has proven stale for this model, and retrying
  from it tends to pick the next holder just as full. At scale that exhausted a request's
  MAX_PLACEMENTS on full holders and failed it (1,000 simulated nodes, 500 req/s: a quarter
  of all requests) where the coordinator, excluding the nodes tried, sees the queues and
  can start the model elsewhere.
- with the coordinator unreachable, the peer decides those itself too (`PEER_DEGRADED`).

The coordinator publishes its model -> nodes map (`model_map`); a peer adds what the map
says a node holds to that node's gossiped state as placements on their way (`expected`),
unless that state is fresher than the map, so the requests that follow a coordinator's
cold start are placed by peers, on that node, before gossip shows the load. Pure functions:
the node (daemons/node/hybrid_mode.py), the coordinator (daemons/coordinator/referrals.py)
and a simulator run the same rules.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from collections.abc import Set as AbstractSet

from daemons.policy.view import MIGRATE, ClusterView, Decision, Refusal

PEER, COORDINATOR, PEER_DEGRADED = "peer", "coordinator", "peer-degraded"
PATHS = (PEER, COORDINATOR, PEER_DEGRADED)  # requests.csv `decided_by` (empty in other arms)


def peer_decides(view: ClusterView, decision: Decision | Refusal, model: str,
                 tried: AbstractSet[str] = frozenset()) -> bool:
    """Whether a peer places the request itself: its policy chose a node of `view` that holds
    `model` already, so placing it there starts no load, evicts nothing and moves nothing,
    and no node has been `tried` for it yet (a retry goes to the coordinator)."""
    if tried or not isinstance(decision, Decision) or decision.action == MIGRATE or decision.evict:
        return False
    node = view.nodes.get(decision.node)
    return node is not None and node.alive and node.has_model(model)


def model_map(view: ClusterView) -> dict[str, list[str]]:
    """The coordinator's map: model -> the alive nodes holding it (ready, loading, placed)."""
    return {model: list(nodes) for model, nodes in sorted(view.holders.items()) if nodes}


def by_node(models: Mapping[str, Sequence[str]]) -> dict[str, tuple[str, ...]]:
    """A model -> nodes map turned around: node -> the models it holds by the map."""
    out: dict[str, list[str]] = {}
    for model, nodes in models.items():
        for node in nodes:
            out.setdefault(node, []).append(model)
    return {node: tuple(sorted(held)) for node, held in out.items()}


def expected(mapped: Sequence[str], shown: Iterable[str], map_age_s: float, record_age_s: float | None) -> list[str]:
    """Of the models the map gives a node (`mapped`), those its gossiped state does not show
    (`shown`): loads the coordinator placed there, on their way. None when the state is
    fresher than the map (it already says what became of them), or there is no state age."""
    if record_age_s is None or record_age_s < map_age_s:
        return []
    have = set(shown)
    return [m for m in mapped if m not in have]
