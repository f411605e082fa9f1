"""The coordinator's migration orders: the periodic rebalancer's moves, and an operator's.

Every REBALANCE_EVERY_S (with `rebalance = true`), the active coordinator runs the pure
rebalancer (daemons/policy/rebalance.py) on its view and sends each move to its source node
as a `Migrate` (no request id: the source picks the request, daemons/node/migration.py).
A node that was part of a move sits out the next MOVE_COOLDOWN_S: its migration's rounds
and switch take about a second, and its next published state must show the result before
it is judged again (Llumnix migrates one request per instance at a time).

An operator's `Migrate` (tests, the benchmark, an operator's tool) sent to the coordinator is
forwarded the same way, the destination's endpoint filled in from the view.

One DEALER per source endpoint, made on first use; nothing is read from them (a node does
not answer a Migrate: the outcome shows in its state, its log and its `migrated` event).
"""

from __future__ import annotations

import logging
from typing import Any

import zmq

from daemons.bus import encode
from daemons.bus.security import CurveClient
from daemons.coordinator.links import Links
from daemons.core.messages import Migrate
from daemons.policy.rebalance import REBALANCE_EVERY_S, Move, rebalance
from daemons.policy.view import ClusterView

log = logging.getLogger("schedctl.coordinator")
MOVE_COOLDOWN_S = 3.0


class Mover:
    def __init__(self, ctx: zmq.Context[Any], name: str, threshold: int, curve: CurveClient | None = None) -> None:
        self._name, self._threshold = name, threshold
        self._links = Links(ctx, curve)  # node endpoint -> DEALER
        self._cooling: dict[str, float] = {}  # node -> until when it sits out
        self._next = 0.0
        self.orders = 0

    def tick(self, view: ClusterView, now: float) -> list[Move]:
        """One rebalancing period if one is due: the moves ordered."""
        if now < self._next:
            return []
        self._next = now + REBALANCE_EVERY_S
        self._cooling = {node: until for node, until in self._cooling.items() if until > now}
        busy = list(self._cooling)
        moves = rebalance(view, self._threshold, busy)
        for move in moves:
            log.info("rebalance: moving a %s request from %s to %s (%s)", move.model, move.source,
                     move.destination, move.reason, extra={"SCHEDCTL_ACTION": "MIGRATE"})
            self.order(Migrate("", move.source, move.destination, move.destination_endpoint, move.reason,
                               move.model), move.source_endpoint, now)
        return moves

    def forward(self, order: Migrate, view: ClusterView, now: float) -> str:
        """An operator's order: sent to its source; "" if sent, else why not."""
        src, dst = view.nodes.get(order.node), view.nodes.get(order.to_node)
        if src is None or not src.alive or dst is None or not dst.alive:
            return f"{order.node} and {order.to_node} must both be alive nodes of this coordinator's view"
        self.order(Migrate(order.request_id, order.node, order.to_node, dst.endpoint, order.reason or "operator",
                           order.model), src.endpoint, now)
        return ""

    def order(self, order: Migrate, endpoint: str, now: float) -> None:
        for node in (order.node, order.to_node):
            self._cooling[node] = now + MOVE_COOLDOWN_S
        try:
            self._links.get(endpoint).send(encode(order, self._name, order.request_id), zmq.NOBLOCK)
            self.orders += 1
        except zmq.ZMQError as exc:  # a full queue to a dead node: the next period decides again
            log.warning("could not send a migration order to %s: %s", order.node, exc.strerror)

    def close(self) -> None:
        self._links.close()

