"""The coordinator's predictive pre-warming (`prewarm = "on"`): forecast, plan, order loads.

Every Schedule the coordinator answers is one arrival of its model for the forecaster
(Holt, daemons/policy/forecast.py). Every TICK_S the pure planner (daemons/policy/prewarm.py)
compares each model's forecast with the capacity of the nodes holding it, and each load
it names goes to its node as a `Prewarm` (with the idle victims to evict, least expected
use first). The node loads it and publishes a `prewarm` event (its detail: model, bytes,
forecast and capacity), so the run's events count every pre-warm wherever it was decided.
An order is not repeated for HOLD_S (`PrewarmRounds`).

`Prewarmer` is that rule without a socket: the decision server feeds it and sends what its
`tick` returns through `PrewarmLinks`; the simulated coordinator (daemons/sim/coordinator.py)
feeds the same `Prewarmer` on its virtual clock and sends its orders over the simulated wire.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import zmq

from daemons.bus import encode
from daemons.bus.security import CurveClient
from daemons.coordinator.links import Links
from daemons.policy.forecast import Forecaster
from daemons.policy.prewarm import PrewarmOrder, PrewarmRounds, PrewarmSettings, order_message, plan
from daemons.policy.view import ClusterView

log = logging.getLogger("schedctl.coordinator")


class Prewarmer:
    """The coordinator's forecasts and planning rounds, sans-IO (the caller passes `now`)."""

    def __init__(self, settings: PrewarmSettings, now: float) -> None:
        self.settings = settings
        self.forecaster = Forecaster(settings.forecast, now)
        self._rounds = PrewarmRounds(now)

    def arrived(self, model: str, now: float) -> None:
        """A new request for `model` (not one asking again while it waits in the queue)."""
        if self.settings.enabled:
            self.forecaster.observe(model, now)

    def tick(self, view: Callable[[], ClusterView], now: float) -> list[PrewarmOrder]:
        """One planning round if one is due: the loads to order now (none without pre-warming)."""
        if not self.settings.enabled:
            return []
        return self._rounds.run(now, lambda skip: plan(view(), self.forecaster.rates(now), self.settings.instance_rps,
                                                       skip, self.forecaster.uses(now)))


class PrewarmLinks:
    """The orders' way to their nodes: a DEALER per node endpoint."""

    def __init__(self, ctx: zmq.Context[Any], name: str, curve: CurveClient | None = None) -> None:
        self._name = name
        self._links = Links(ctx, curve)  # node endpoint -> DEALER
        self.orders = 0

    def send(self, order: PrewarmOrder) -> None:
        log.info("pre-warm: loading %s on %s (%s)", order.model, order.node, order.reason,
                 extra={"SCHEDCTL_MODEL": order.model, "SCHEDCTL_NODE": order.node})
        try:
            self._links.get(order.endpoint).send(encode(order_message(order), self._name), zmq.NOBLOCK)
            self.orders += 1
        except zmq.ZMQError as exc:  # a full queue to a dead node: the next round decides again
            log.warning("could not send a pre-warm order to %s: %s", order.endpoint, exc.strerror)

    def close(self) -> None:
        self._links.close()
