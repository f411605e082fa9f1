"""The coordinator's migration orders: the periodic rebalancer's moves, and an operator's.

What to order and when is moveplan.py's (sans-IO, the simulator's coordinator runs it too):
the rebalancer's period and cool-down, an operator's order checked against the view. This
file sends each order to its source node as a `Migrate` (no request id for a rebalancing
move: the source picks the request, daemons/node/migration.py). An operator's `Migrate`
(tests, the benchmark, an operator's tool) sent to the coordinator is forwarded the same way.

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
from daemons.coordinator.moveplan import MovePlan, order_of
from daemons.core.messages import Migrate
from daemons.policy.rebalance import Move
from daemons.policy.view import ClusterView

log = logging.getLogger("schedctl.coordinator")


class Mover:
    def __init__(self, ctx: zmq.Context[Any], name: str, threshold: int, curve: CurveClient | None = None) -> None:
        self._name = name
        self.plan = MovePlan(threshold)
        self._links = Links(ctx, curve)  # node endpoint -> DEALER
        self.orders = 0

    def tick(self, view: ClusterView, now: float) -> list[Move]:
        """One rebalancing period if one is due: the moves ordered."""
        moves = self.plan.due(view, now)
        for move in moves:
            log.info("rebalance: moving a %s request from %s to %s (%s)", move.model, move.source,
                     move.destination, move.reason, extra={"SCHEDCTL_ACTION": "MIGRATE"})
            self.order(order_of(move), move.source_endpoint, now)
        return moves

    def forward(self, order: Migrate, view: ClusterView, now: float) -> str:
        """An operator's order: sent to its source; "" if sent, else why not."""
        checked = self.plan.forward(order, view)
        if isinstance(checked, str):
            return checked
        self.order(*checked, now)
        return ""

    def order(self, order: Migrate, endpoint: str, now: float) -> None:
        self.plan.ordered(order, now)
        try:
            self._links.get(endpoint).send(encode(order, self._name, order.request_id), zmq.NOBLOCK)
            self.orders += 1
        except zmq.ZMQError as exc:  # a full queue to a dead node: the next period decides again
            log.warning("could not send a migration order to %s: %s", order.node, exc.strerror)

    def close(self) -> None:
        self._links.close()
