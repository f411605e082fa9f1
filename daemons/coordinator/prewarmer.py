"""The coordinator's predictive pre-warming (`prewarm = "on"`): forecast, plan, order loads.

Every Schedule the coordinator answers is one arrival of its model for the forecaster
(Holt, daemons/policy/forecast.py). Every TICK_S the pure planner (daemons/policy/prewarm.py)
compares each model's forecast with the capacity of the nodes holding it, and each load
it names goes to its node as a `Prewarm` (with the idle victims to evict, least expected
use first). The node loads it and publishes a `prewarm` event (its detail: model, bytes,
forecast and capacity), so the run's events count every pre-warm wherever it was decided.

An order is not repeated for HOLD_S: the node's next state shows the model loading, and
the planner then counts it as a holder; a node that declined (it no longer fits there)
is asked again only after that.
"""

from __future__ import annotations

import logging
from typing import Any

import zmq

from daemons.bus import encode
from daemons.bus.security import CurveClient
from daemons.coordinator.links import Links
from daemons.core.messages import Prewarm
from daemons.policy.forecast import Forecaster
from daemons.policy.prewarm import PrewarmOrder, PrewarmSettings, plan
from daemons.policy.view import ClusterView

log = logging.getLogger("schedctl.coordinator")
TICK_S = 0.5
HOLD_S = 5.0


class Prewarmer:
    def __init__(self, ctx: zmq.Context[Any], name: str, settings: PrewarmSettings, now: float,
                 curve: CurveClient | None = None) -> None:
        self._name = name
        self.settings = settings
        self.forecaster = Forecaster(settings.forecast, now)
        self._links = Links(ctx, curve)  # node endpoint -> DEALER
        self._ordered: dict[tuple[str, str], float] = {}  # (node, model) -> until when not to repeat it
        self._next = now
        self.orders = 0

    def arrived(self, model: str, now: float) -> None:
        if self.settings.enabled:
            self.forecaster.observe(model, now)

    def tick(self, view: ClusterView, now: float) -> list[PrewarmOrder]:
        """One planning round if one is due: the loads ordered."""
        if not self.settings.enabled or now < self._next:
            return []
        self._next = now + TICK_S
        self._ordered = {key: until for key, until in self._ordered.items() if until > now}
        orders = plan(view, self.forecaster.rates(now), self.settings.instance_rps, self._ordered,
                      self.forecaster.uses(now))
        for order in orders:
            log.info("pre-warm: loading %s on %s (%s)", order.model, order.node, order.reason,
                     extra={"SCHEDCTL_MODEL": order.model, "SCHEDCTL_NODE": order.node})
            reason = f"forecast_rps={order.forecast_rps:.3f};capacity_rps={order.capacity_rps:.3f}"
            self._send(Prewarm(order.model, list(order.evict), reason, order.forecast_rps), order.endpoint)
            self._ordered[(order.node, order.model)] = now + HOLD_S
        return orders

    def _send(self, order: Prewarm, endpoint: str) -> None:
        try:
            self._links.get(endpoint).send(encode(order, self._name), zmq.NOBLOCK)
            self.orders += 1
        except zmq.ZMQError as exc:  # a full queue to a dead node: the next round decides again
            log.warning("could not send a pre-warm order to %s: %s", endpoint, exc.strerror)

    def close(self) -> None:
        self._links.close()

