"""What a node learns as it runs: per-model estimates and the arrival forecast of its models.

The node agent feeds `NodeLearning` every served request (its warm TTFT and TPOT, from
`Done.timings`), every completed load (its duration) and every request that arrives for
a model; it publishes `estimates()` with its state (learned affinity, daemons/policy/
estimates.py and learned.py) and, with pre-warming on, ranks its own eviction victims by
least expected use (`victim_key`: the forecast rate of the model, then its last use)
instead of plain LRU (daemons/policy/prewarm.py).

It also keeps the ledger of pre-warmed instances, for the events that count what
pre-warming bought and cost (every detail starts `by=<node>;`, as a node's events must for
a secured observer): `prewarm` when a pre-warm load starts (detail: model, bytes, who
ordered it), `prewarm_hit` when the first request reaches a pre-warmed instance that is
ready (a cold start moved off that request's critical path), `prewarm_unused` when one is
evicted before any request used it. With pre-warming on, every eviction is an `evict`
event (detail: model, why, its forecast).

A pre-warm order (the coordinator's, or a gossip peer's own: `peer_round`, every TICK_S on
its view, daemons/policy/prewarm.py `plan_for_peer`) is taken or skipped by `take_prewarm`.

No sockets and no clock here: the node agent (daemons/node/server.py) and the simulated node
(daemons/sim/node.py) call it with their own `now` (monotonic or virtual seconds) and publish
what it returns.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from daemons.core.messages import ModelEstimate, Prewarm
from daemons.node.catalog import Catalog
from daemons.policy.estimates import Estimate, observe_load, observe_request, request_figures
from daemons.policy.forecast import Forecaster
from daemons.policy.prewarm import PrewarmOrder, PrewarmRounds, PrewarmSettings, plan_for_peer
from daemons.policy.view import ClusterView


@dataclass
class NodeLearning:
    settings: PrewarmSettings
    now: float = 0.0
    _estimates: dict[str, Estimate] = field(default_factory=dict)
    _prewarmed: dict[str, bool] = field(default_factory=dict)  # model -> used since its pre-warm
    _promised: dict[str, tuple[float, float]] = field(default_factory=dict)  # model -> (forecast, until)
    forecaster: Forecaster = field(init=False)
    _rounds: PrewarmRounds = field(init=False)  # a gossip peer's own planning (peer_round)
    _published: list[ModelEstimate] | None = None  # estimates() until the next observation changes them

    def __post_init__(self) -> None:
        self.forecaster = Forecaster(self.settings.forecast, self.now)
        self._rounds = PrewarmRounds(self.now)

    # ----- observations -----------------------------------------------------------------------
    def arrived(self, model: str, now: float) -> None:
        self.forecaster.observe(model, now)

    def served(self, model: str, timings: dict[str, float], tokens: int) -> None:
        figures = request_figures(timings, tokens)
        if figures is not None:
            self._estimates[model] = observe_request(self._estimates.get(model, Estimate()), *figures)
            self._published = None

    def loaded(self, model: str, seconds: float) -> None:
        self._estimates[model] = observe_load(self._estimates.get(model, Estimate()), seconds)
        self._published = None

    def estimates(self) -> list[ModelEstimate]:
        """What the node publishes with every state (made once per change: a simulated gossip
        peer asks for its own state on every decision)."""
        if self._published is None:
            self._published = [ModelEstimate(m, e.ttft_s, e.tpot_s, e.load_s, e.requests, e.tpots, e.loads)
                               for m, e in sorted(self._estimates.items())]
        return list(self._published)

    # ----- pre-warming ------------------------------------------------------------------------
    def rates(self, now: float) -> dict[str, float]:
        return self.forecaster.rates(now)

    def uses(self, now: float) -> dict[str, float]:
        return self.forecaster.uses(now)

    def victim_key(self, model: str, last_used: float, now: float) -> tuple[float, float]:
        """Eviction order: least expected use (with pre-warming on), else least recently used.

        A model pre-warmed here is expected to be used at the forecast that justified it until
        the forecast's horizon has passed, whatever this node has seen of it so far (none yet):
        else the node's next load would evict it first."""
        if not self.settings.enabled:
            return 0.0, last_used
        rate = self.forecaster.expected(model, now)
        promised, until = self._promised.get(model, (0.0, 0.0))
        return (max(rate, promised) if until > now else rate), last_used

    def prewarm_started(self, model: str, forecast_rps: float = 0.0, now: float = 0.0) -> None:
        self._prewarmed[model] = False
        if forecast_rps > 0:
            self._promised[model] = (forecast_rps, now + self.settings.forecast.horizon_s)

    def take_prewarm(self, order: Prewarm, by: str, here: bool, fits: bool, catalog: Catalog,
                     now: float) -> tuple[bool, str]:
        """A pre-warm order from `by` for a model `here` already or not, that `fits` now or not:
        (True, the `prewarm` event's detail) when the node loads it, else (False, why not).

        Taken, the model is expected at the order's forecast until the horizon after its load
        ends (`now` + the catalog's load time) has passed: see `victim_key`."""
        if here or not fits:
            return False, "already here" if here else "it does not fit now"
        model = order.model
        self.prewarm_started(model, order.forecast_rps, now + catalog.load_s(model))
        return True, (f"model={model};bytes={catalog.footprint(model)};ordered_by={by};"
                      f"evict={'+'.join(order.evict)};{order.reason}")

    def peer_round(self, view: Callable[[], ClusterView], me: str, now: float) -> list[PrewarmOrder]:
        """A gossip peer's own pre-warm round, if one is due: the loads naming itself that its own
        forecast says the holders cannot absorb (`plan_for_peer`), none repeated within HOLD_S."""
        return self._rounds.run(now, lambda skip: plan_for_peer(view(), me, self.rates(now), self.settings.instance_rps,
                                                                skip, self.uses(now)))

    def first_use(self, model: str, ready: bool) -> bool:
        """A request arrived for `model`: True once per pre-warm, when it found the instance ready."""
        if model not in self._prewarmed:
            return False
        del self._prewarmed[model]
        return ready

    def evicted(self, model: str) -> bool:
        """`model` left the node: True if it was pre-warmed and never used."""
        return self._prewarmed.pop(model, None) is False


class LoadWatcher:
    """The ModelManager's second observer: loads feed the estimates, evictions become events.
    `now`: the node's clock (time.monotonic in the agent, the virtual clock in the simulator)."""

    def __init__(self, learning: NodeLearning, announce: Callable[[str, str], None],
                 now: Callable[[], float]) -> None:
        self.learning, self.announce, self.now = learning, announce, now

    def loaded(self, model: str, seconds: float) -> None:
        self.learning.loaded(model, seconds)

    def load_failed(self, model: str) -> None:
        self.learning.evicted(model)  # a failed pre-warm is no longer pending

    def evicted(self, model: str) -> None:
        if not self.learning.settings.enabled:
            return  # without pre-warming a node publishes what it always did (no eviction events)
        use = self.learning.forecaster.expected(model, self.now())
        self.announce("evict", f"model={model};why=least_expected_use;expected_rps={use:.3f}")
        if self.learning.evicted(model):
            self.announce("prewarm_unused", f"model={model}")


__all__ = ["LoadWatcher", "NodeLearning"]
