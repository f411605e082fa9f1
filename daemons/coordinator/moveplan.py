"""When the coordinator orders live migrations, and which: the rule without sockets (sans-IO).

Every REBALANCE_EVERY_S (with `rebalance = true`) the pure rebalancer
(daemons/policy/rebalance.py) runs on the view; a node that was part of a move sits out the
next MOVE_COOLDOWN_S: its migration's rounds and switch take about a second, and its next
published state must show the result before it is judged again (Llumnix migrates one
request per instance at a time). An operator's order is checked against the view and its
destination's endpoint filled in. A policy's MIGRATE is made room for by `room_moves`
(daemons/policy/startup.py).

The coordinator's `Mover` (mover.py) sends what this decides on DEALERs; the simulator's
coordinator (daemons/sim/coordinator.py) over its simulated wire.
"""

from __future__ import annotations

from daemons.core.messages import Migrate
from daemons.policy.rebalance import REBALANCE_EVERY_S, Move, rebalance
from daemons.policy.startup import room_moves
from daemons.policy.view import ClusterView, Decision

MOVE_COOLDOWN_S = 3.0


def order_of(move: Move) -> Migrate:
    """The `Migrate` a move sends to its source: no request id, the source picks one."""
    return Migrate("", move.source, move.destination, move.destination_endpoint, move.reason, move.model)


class MovePlan:
    def __init__(self, threshold: int) -> None:
        self.threshold = threshold
        self._cooling: dict[str, float] = {}  # node -> until when it sits out
        self._next = 0.0

    def due(self, view: ClusterView, now: float) -> list[Move]:
        """One rebalancing period if one is due: its moves (each then `ordered`)."""
        if now < self._next:
            return []
        self._next = now + REBALANCE_EVERY_S
        self._cooling = {node: until for node, until in self._cooling.items() if until > now}
        return rebalance(view, self.threshold, list(self._cooling))

    def ordered(self, order: Migrate, now: float) -> None:
        """`order` is sent: both its nodes sit out the next periods."""
        for node in (order.node, order.to_node):
            self._cooling[node] = now + MOVE_COOLDOWN_S

    @staticmethod
    def forward(order: Migrate, view: ClusterView) -> tuple[Migrate, str] | str:
        """An operator's order as sent to its source, and the source's endpoint; else why not."""
        src, dst = view.nodes.get(order.node), view.nodes.get(order.to_node)
        if src is None or not src.alive or dst is None or not dst.alive:
            return f"{order.node} and {order.to_node} must both be alive nodes of this coordinator's view"
        return (Migrate(order.request_id, order.node, order.to_node, dst.endpoint, order.reason or "operator",
                        order.model), src.endpoint)

    @staticmethod
    def room(view: ClusterView, decision: Decision, live_migration: bool) -> list[Move]:
        """The moves that make room for a policy's MIGRATE; none with live migration off."""
        return room_moves(view, decision) if live_migration else []
