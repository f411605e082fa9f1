"""The coordinator's Prometheus metrics (daemons/bus/metrics.py has the conventions).

Counted as they happen (the decision loop calls `placed` and `refused`): decisions by
action and policy, the decision latency, refusals by code. Read when Prometheus scrapes,
from what the coordinator keeps anyway: node states received and dropped frames (its
counters), nodes alive and dead (its cluster book), requests waiting for capacity, its
epoch and its failover role and state.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.metrics_core import Metric

from daemons.bus.metrics import DECISION_BUCKETS, name, read_at_scrape
from daemons.core.messages import ACTIONS

SUB = "coordinator"
STATES = ("active", "passive")  # a failover state (failover.py); a standalone one is active


@dataclass(frozen=True)
class Snapshot:
    """What the coordinator reports at a scrape (read on the endpoint's thread)."""

    states: int  # NodeState frames received
    dropped: int  # frames dropped: malformed, unexpected, not allowed
    alive: int
    dead: int
    queued: int  # requests waiting for capacity (admission.py)
    epoch: int
    role: str  # standalone | primary | backup
    state: str  # active | passive


class CoordinatorMetrics:
    """The coordinator's registry; `placed` / `refused` are on the decision path (cheap)."""

    def __init__(self, policy: str, snapshot: Callable[[], Snapshot | None] = lambda: None) -> None:
        self.registry = CollectorRegistry()
        self.snapshot = snapshot  # the coordinator sets it: what a scrape reads
        decisions = Counter(name(SUB, "decisions"), "Placement decisions answered, by action and policy",
                            ["action", "policy"], registry=self.registry)
        self._decisions = {action: decisions.labels(action, policy)
                           for action in ACTIONS}
        self._decisions_of: Callable[[str], Counter] = lambda action: decisions.labels(action, policy)
        self._latency = Histogram(name(SUB, "decision_seconds"), "Time the policy took to place a request "
                                  "(as sent in the Placement)", buckets=DECISION_BUCKETS, registry=self.registry)
        self._refusals = Counter(name(SUB, "refusals"), "Schedule requests answered with an error, by code",
                                 ["code"], registry=self.registry)
        read_at_scrape(self.registry, self._collect)

    def placed(self, action: str, seconds: float) -> None:
        child = self._decisions.get(action)
        if child is None:  # an action added to messages.ACTIONS later: still a handful of values
            child = self._decisions[action] = self._decisions_of(action)
        child.inc()
        self._latency.observe(seconds)

    def refused(self, code: str) -> None:
        self._refusals.labels(code).inc()

    def _collect(self) -> Iterable[Metric]:
        snap = self.snapshot()
        if snap is None:  # no coordinator attached yet
            return []
        states = CounterMetricFamily(name(SUB, "node_states_received"), "NodeState frames received from node agents")
        states.add_metric([], snap.states)
        dropped = CounterMetricFamily(name(SUB, "dropped_frames"), "Frames dropped: malformed, unexpected "
                                      "or not allowed for their sender")
        dropped.add_metric([], snap.dropped)
        nodes = GaugeMetricFamily(name(SUB, "nodes"), "Nodes in the coordinator's view, by state", labels=["state"])
        nodes.add_metric(["alive"], snap.alive)
        nodes.add_metric(["dead"], snap.dead)
        queued = GaugeMetricFamily(name(SUB, "queued_requests"), "Requests waiting for capacity", value=snap.queued)
        epoch = GaugeMetricFamily(name(SUB, "epoch"), "The epoch this coordinator's placements carry",
                                  value=snap.epoch)
        role = GaugeMetricFamily(name(SUB, "role"), "1 for this coordinator's configured role and failover "
                                 "state", labels=["role", "state"])
        role.add_metric([snap.role, snap.state], 1)
        active = GaugeMetricFamily(name(SUB, "active"), "1 while this coordinator answers placements",
                                   value=1 if snap.state == "active" else 0)
        return [states, dropped, nodes, queued, epoch, role, active]
