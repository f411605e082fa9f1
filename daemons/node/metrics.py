"""The node agent's Prometheus metrics (daemons/bus/metrics.py has the conventions).

Counted as they happen: requests answered, by outcome (`ok` or the error code sent);
backend errors by code; model loads by outcome and their duration; evictions. Read when
Prometheus scrapes, from the last NodeState the node published (an immutable snapshot, so
the scrape thread never touches the event loop's objects): queue depth, requests in flight,
per-GPU memory and compute utilisation (NVML's or the emulated GPU's, as `schedctl node
gpu` shows), and instances by state. In gossip mode the node's gossip peer adds its own
(daemons/gossip/metrics.py) to the same registry.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.metrics_core import Metric

from daemons.bus.metrics import REQUEST_BUCKETS, name, read_at_scrape
from daemons.core.messages import NodeState

SUB = "node"
INSTANCE_STATES = ("loading", "ready", "failed", "evicting")


class NodeMetrics:
    """The node's registry. `answered`, `backend_error` and the ModelManager's observer
    calls (`loaded`, `load_failed`, `evicted`) happen on the event loop; they only count."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.state: Callable[[], NodeState | None] = lambda: None  # the node sets it: its last NodeState
        self._requests = Counter(name(SUB, "requests"), "Requests this node served to an answer, by outcome "
                                 "(ok or the error code sent)", ["outcome"], registry=self.registry)
        self._ok = self._requests.labels("ok")
        self._backend_errors = Counter(name(SUB, "backend_errors"), "Requests the backend failed, by code",
                                       ["code"], registry=self.registry)
        self._loads = Counter(name(SUB, "model_loads"), "Model instance loads, by outcome", ["outcome"],
                              registry=self.registry)
        self._load_seconds = Histogram(name(SUB, "model_load_seconds"), "Time from launching a model "
                                       "instance to its first healthy answer", buckets=REQUEST_BUCKETS,
                                       registry=self.registry)
        self._evictions = Counter(name(SUB, "evictions"), "Idle model instances stopped to make room",
                                  registry=self.registry)
        read_at_scrape(self.registry, self._collect)

    def answered(self, outcome: str) -> None:
        (self._ok if outcome == "ok" else self._requests.labels(outcome)).inc()

    def backend_error(self, code: str) -> None:
        self._backend_errors.labels(code).inc()

    # ModelManager's observer (daemons/node/instances.py LoadObserver)
    def loaded(self, model: str, seconds: float) -> None:
        self._loads.labels("ok").inc()
        self._load_seconds.observe(seconds)

    def load_failed(self, model: str) -> None:
        self._loads.labels("failed").inc()

    def evicted(self, model: str) -> None:
        self._evictions.inc()

    def _collect(self) -> Iterable[Metric]:
        state = self.state()
        if state is None:  # nothing published yet
            return []
        queue = GaugeMetricFamily(name(SUB, "queue_depth"), "Requests waiting in this node's model queues",
                                  value=state.queue_depth)
        in_flight = GaugeMetricFamily(name(SUB, "in_flight"), "Requests accepted and not yet answered",
                                      value=state.in_flight)
        total = GaugeMetricFamily(name(SUB, "gpu_memory_total_bytes"), "GPU memory", labels=["gpu"])
        used = GaugeMetricFamily(name(SUB, "gpu_memory_used_bytes"), "GPU memory in use", labels=["gpu"])
        util = GaugeMetricFamily(name(SUB, "gpu_utilization_ratio"), "GPU compute utilisation, 0 to 1",
                                 labels=["gpu"])
        for gpu in state.gpus:
            total.add_metric([str(gpu.index)], gpu.memory_total)
            used.add_metric([str(gpu.index)], gpu.memory_used)
            util.add_metric([str(gpu.index)], gpu.utilization)
        instances = GaugeMetricFamily(name(SUB, "instances"), "Model instances by state", labels=["state"])
        for kind in INSTANCE_STATES:
            instances.add_metric([kind], sum(1 for m in state.models if m.state == kind))
        info = GaugeMetricFamily(name(SUB, "info"), "1, labelled with the node's GPU probe and scheduler",
                                 labels=["gpu_backend", "scheduler"])
        info.add_metric([state.gpu_backend, state.scheduler], 1)
        return [queue, in_flight, total, used, util, instances, info]
