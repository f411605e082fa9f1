"""Predictive pre-warming: load a model ahead of its demand, evict by least expected use.

Given the forecast arrival rate of every model (forecast.py) and a cluster view, `plan`
names the loads worth starting now. A model needs another instance when its forecast
exceeds what its holders absorb:

    forecast_rps(model) > holders(model) × instance_rps

(`instance_rps`: the rate one ready instance serves before another copy pays off; a
setting, since the view does not carry batch capacity). It is then loaded on *idle
capacity*: a live node that lists it, does not hold it, has at most IDLE_LOAD requests,
and can make room without evicting anything expected to be used as much: the victims
are idle models taken in order of least expected use (lowest forecast first, least
recently used among equals), and only models forecast below the one being loaded. Among
such nodes, the one needing fewest evictions wins, then the least loaded, then the fastest
to load it (ties by name, so every gossip peer that plans on the same view names the same
node). At most one order per model and MAX_ORDERS per call: the caller calls again once
the view shows the load (a node lists a loading model as held).

The same rule evicts on a node's own loads when pre-warming is on (`victim_order`):
least expected use instead of plain LRU (the prototype's future enhancement 4, "use
historical data to anticipate load spikes", as a forecaster rather than a history table).

Pure: the coordinator calls it with its forecasts, a gossip peer with its own (scaled from
its local view) and acts only on orders naming itself; a simulator can call it too.

`PrewarmRounds` is the planning loop around `plan`, without its clock: a round at most
every TICK_S, and an order not repeated for HOLD_S (the node's next state shows the model
loading, and the planner then counts it as a holder; a node that declined, because the
model no longer fits there, is asked again only after that). The coordinator
(daemons/coordinator/prewarmer.py), every gossip peer (daemons/node/learning.py) and the
simulator's (daemons/sim) run the same rounds; `order_message` is the `Prewarm` each sends.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

from daemons.core.errors import ConfigError
from daemons.core.messages import Prewarm
from daemons.policy.forecast import DEFAULT_BUCKET_S, ForecastSettings
from daemons.policy.view import ClusterView, LoadedModel, NodeView

IDLE_LOAD = 1  # a node with more requests than this is not idle capacity
# A model forecast below this is not pre-warmed even with no holder: its next request (one in
# more than 2 s) will load it anyway, and a load ahead of time would only take memory from others.
MIN_FORECAST_RPS = 0.5
MAX_ORDERS = 2  # loads ordered per planning round: a wrong forecast costs at most this much
DEFAULT_INSTANCE_RPS = 2.0
TICK_S = 0.5  # a planning round at most this often
HOLD_S = 5.0  # an order is not repeated for this long (its load shows in the node's state by then)
PREWARMS = ("off", "on")


@dataclass(frozen=True, slots=True)
class PrewarmSettings:
    """`--prewarm on` and its forecaster's settings (all validated on construction)."""

    enabled: bool = False
    instance_rps: float = DEFAULT_INSTANCE_RPS
    forecast: ForecastSettings = field(default_factory=ForecastSettings)

    def __post_init__(self) -> None:
        if not (isinstance(self.instance_rps, int | float) and 0 < self.instance_rps <= 1e6):
            raise ConfigError(f"prewarm_instance_rps {self.instance_rps!r} is out of range: use a rate > 0 "
                              "(requests per second one ready instance serves, e.g. 2)")


def check_prewarm(value: object, where: str = "") -> bool:
    """`on` -> True, `off` -> False; anything else is one ConfigError."""
    if value not in PREWARMS:
        raise ConfigError(f"{where}prewarm {value!r} is unknown: use off or on (load models ahead of a "
                          "forecast burst)")
    return value == "on"


def prewarm_settings(prewarm: object, alpha: float, beta: float, horizon_s: float, instance_rps: float,
                     where: str = "") -> PrewarmSettings:
    """The settings a daemon's config names (`prewarm`, `forecast_*`, `prewarm_instance_rps`),
    each checked: one ConfigError naming the first bad one and its range."""
    enabled = check_prewarm(prewarm, where)
    try:
        return PrewarmSettings(enabled, instance_rps, ForecastSettings(alpha, beta, DEFAULT_BUCKET_S, horizon_s))
    except ConfigError as exc:
        raise ConfigError(f"{where}{exc}") from None


@dataclass(frozen=True, slots=True)
class PrewarmOrder:
    """Load `model` on `node` now, evicting `evict` (idle, least expected use) first."""

    node: str
    endpoint: str
    model: str
    evict: tuple[str, ...]
    forecast_rps: float
    capacity_rps: float
    footprint_bytes: int

    @property
    def reason(self) -> str:
        evict = f", evicting {', '.join(self.evict)}" if self.evict else ""
        return (f"forecast {self.forecast_rps:.2f} req/s > capacity {self.capacity_rps:.2f} req/s "
                f"of its holders{evict}")


def plan(view: ClusterView, rates: Mapping[str, float], instance_rps: float,
         skip: Iterable[tuple[str, str]] = (), uses: Mapping[str, float] | None = None) -> list[PrewarmOrder]:
    """The loads worth starting now (see the module doc); `skip`: (node, model) already ordered;
    `uses`: each model's expected use, which ranks eviction victims (default: `rates`)."""
    skipped = set(skip)
    uses = rates if uses is None else uses
    orders: list[PrewarmOrder] = []
    busy: set[str] = set()
    for model, rate in sorted(rates.items(), key=lambda mr: (-mr[1], mr[0])):
        if len(orders) >= MAX_ORDERS or rate < MIN_FORECAST_RPS:
            break
        capacity = len(view.holders.get(model, ())) * instance_rps
        if rate <= capacity or any(m == model for _, m in skipped):
            continue
        target = _target(view, model, rate, uses, busy)
        if target is not None:
            node, victims = target
            orders.append(PrewarmOrder(node.name, node.endpoint, model, victims, rate, capacity,
                                       node.catalog[model].footprint_bytes))
            busy.add(node.name)
    return orders


def _target(view: ClusterView, model: str, rate: float, rates: Mapping[str, float],
            busy: set[str]) -> tuple[NodeView, tuple[str, ...]] | None:
    best: tuple[tuple[int, int, float, str], NodeView, tuple[str, ...]] | None = None
    for name in view.catalog.listing.get(model, ()):
        node = view.nodes[name]
        if name in busy or not node.alive or node.has_model(model) or node.load > IDLE_LOAD:
            continue
        item = node.catalog[model]
        victims = room_by_expected_use(node, item.footprint_bytes, rates, below=rate, holders=view.holders)
        if victims is None:
            continue
        key = (len(victims), node.load, item.load_s, name)
        if best is None or key < best[0]:
            best = (key, node, victims)
    return None if best is None else (best[1], best[2])


def plan_for_peer(view: ClusterView, me: str, local_rates: Mapping[str, float], instance_rps: float,
                  skip: Iterable[tuple[str, str]] = (),
                  local_uses: Mapping[str, float] | None = None) -> list[PrewarmOrder]:
    """A gossip peer's own pre-warms: it sees only the requests entering the cluster through
    it, which a load generator spreading requests over the peers makes ~1/N of the total, so
    its rates are scaled by the live peers N; it plans on its view like the coordinator and
    keeps only the orders naming itself (the planner's ties go by name, so peers with
    similar views agree on one target instead of all loading the model)."""
    n = max(1, len(view.order))
    rates = {model: rate * n for model, rate in local_rates.items()}
    uses = None if local_uses is None else {model: use * n for model, use in local_uses.items()}
    return [o for o in plan(view, rates, instance_rps, skip, uses) if o.node == me]


class PrewarmRounds:
    """When the next planning round is due and which orders not to repeat yet (module doc)."""

    def __init__(self, now: float = 0.0) -> None:
        self._next = now
        self._held: dict[tuple[str, str], float] = {}  # (node, model) -> until when not to order it again

    def run(self, now: float, planner: Callable[[Iterable[tuple[str, str]]], list[PrewarmOrder]]) -> \
            list[PrewarmOrder]:
        """One round if one is due: `planner(skip)` names the loads (`plan` or `plan_for_peer`
        with the caller's forecasts), skipping the (node, model) pairs ordered within HOLD_S."""
        if now < self._next:
            return []
        self._next = now + TICK_S
        self._held = {key: until for key, until in self._held.items() if until > now}
        orders = planner(self._held)
        for order in orders:
            self._held[(order.node, order.model)] = now + HOLD_S
        return orders


def order_message(order: PrewarmOrder) -> Prewarm:
    """The `Prewarm` that carries `order` to its node (its reason: the forecast and the capacity)."""
    reason = f"forecast_rps={order.forecast_rps:.3f};capacity_rps={order.capacity_rps:.3f}"
    return Prewarm(order.model, list(order.evict), reason, order.forecast_rps)


def room_by_expected_use(node: NodeView, needed: int, rates: Mapping[str, float],
                         below: float = float("inf"),
                         holders: Mapping[str, tuple[str, ...]] | None = None) -> tuple[str, ...] | None:
    """Idle models to evict, least expected use first, until `needed` bytes are free; only
    models expected under `below` may go, and (given `holders`) not the last copy of a model
    still expected at MIN_FORECAST_RPS or more: a pre-warm that takes a model's only copy just
    moves the cold start to that model's next request. None when that cannot free enough."""
    free = node.free_bytes
    if needed <= free:
        return ()
    victims: list[str] = []
    for m in victim_order((m for m in node.models.values() if node.is_idle(m)), rates):
        use = rates.get(m.model, 0.0)
        if use >= below:
            break
        if holders is not None and use >= MIN_FORECAST_RPS and len(holders.get(m.model, ())) <= 1:
            continue  # its last copy
        victims.append(m.model)
        free += m.memory_bytes
        if free >= needed:
            return tuple(victims)
    return None


def victim_order(idle: Iterable[LoadedModel], rates: Mapping[str, float]) -> list[LoadedModel]:
    """Least expected use first: the lowest forecast rate, then least recently used."""
    return sorted(idle, key=lambda m: (rates.get(m.model, 0.0), m.last_used, m.model))


__all__ = ["DEFAULT_INSTANCE_RPS", "HOLD_S", "PREWARMS", "TICK_S", "PrewarmOrder", "PrewarmRounds", "PrewarmSettings",
           "check_prewarm", "order_message", "plan", "plan_for_peer", "prewarm_settings", "room_by_expected_use",
           "victim_order"]
