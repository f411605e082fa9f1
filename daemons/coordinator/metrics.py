"""The coordinator's Prometheus metrics (daemons/bus/metrics.py has the conventions).

Counted by the decision loop as they happen, lock-free (`placed`, `refused`): decisions by
action and policy, the decision latency, refusals by code. Read from what the coordinator
keeps anyway: node states received and dropped frames (its counters), nodes alive and dead
(its cluster book), requests waiting for capacity, its epoch and its failover role and
state. Everything becomes a metric family only when Prometheus scrapes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.metrics_core import Metric

from daemons.bus.metrics import DECISION_BUCKETS, Buckets, counter_family, name, read_at_scrape
from daemons.core.messages import ACTIONS

SUB = "coordinator"


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
    """The coordinator's registry; `placed` / `refused` run on the decision path (plain adds)."""

    def __init__(self, policy: str, snapshot: Callable[[], Snapshot | None] = lambda: None) -> None:
        self.registry = CollectorRegistry()
        self.policy = policy
        self.snapshot = snapshot  # the coordinator sets it: what a scrape reads
        self.decisions = dict.fromkeys(ACTIONS, 0)  # action -> placements answered with it
        self.latency = Buckets(DECISION_BUCKETS)
        self.refusals: dict[str, int] = {}  # error code -> Schedule requests answered with it
        read_at_scrape(self.registry, self._collect)

    def placed(self, action: str, seconds: float) -> None:
        self.decisions[action] = self.decisions.get(action, 0) + 1
        self.latency.observe(seconds)

    def refused(self, code: str) -> None:
        self.refusals[code] = self.refusals.get(code, 0) + 1

    def _collect(self) -> Iterable[Metric]:
        out: list[Metric] = [
            counter_family(name(SUB, "decisions"), "Placement decisions answered, by action and policy", "action",
                           self.decisions, {"policy": self.policy}),
            self.latency.family(name(SUB, "decision_seconds"), "Time the policy took to place a request "
                                "(as sent in the Placement)"),
            counter_family(name(SUB, "refusals"), "Schedule requests answered with an error, by code", "code",
                           self.refusals),
        ]
        snap = self.snapshot()
        if snap is None:  # no coordinator attached yet
            return out
        states = CounterMetricFamily(name(SUB, "node_states_received"), "NodeState frames received from node agents",
                                     value=snap.states)
        dropped = CounterMetricFamily(name(SUB, "dropped_frames"), "Frames dropped: malformed, unexpected "
                                      "or not allowed for their sender", value=snap.dropped)
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
        return [*out, states, dropped, nodes, queued, epoch, role, active]
