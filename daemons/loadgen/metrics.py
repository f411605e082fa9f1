"""The load generator's Prometheus metrics (daemons/bus/metrics.py has the conventions).

The recorder tells `LoadgenMetrics` of every first send and every outcome (it is the
recorder's `observer`), on the sending thread, which keeps the run's clock: so they are
plain adds, lock-free. Exported: requests sent, outcomes (ok, error, timeout, not_sent),
errors by code, and histograms of TTFT, TPOT and end-to-end latency (all from the scheduled
send time, as requests.csv has them) and of the send lag (how late the generator itself
sent); in flight is read when Prometheus scrapes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.metrics_core import Metric

from daemons.bus.metrics import (
    LAG_BUCKETS,
    REQUEST_BUCKETS,
    TOKEN_BUCKETS,
    Buckets,
    counter_family,
    name,
    read_at_scrape,
)
from daemons.loadgen.recorder import OUTCOMES, RequestRecord

SUB = "loadgen"


class LoadgenMetrics:
    """A load generator's registry; `sent` and `finished` are called by the Recorder."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.in_flight: Callable[[], int] = lambda: 0  # the sender sets it to its recorder's count
        self.sent_requests = 0
        self.outcomes = dict.fromkeys(OUTCOMES, 0)
        self.errors: dict[str, int] = {}
        self.ttft, self.latency = Buckets(REQUEST_BUCKETS), Buckets(REQUEST_BUCKETS)
        self.tpot, self.lag = Buckets(TOKEN_BUCKETS), Buckets(LAG_BUCKETS)
        read_at_scrape(self.registry, self._collect)

    def sent(self, rec: RequestRecord) -> None:
        self.sent_requests += 1
        lag = rec.send_lag_s
        if lag is not None:
            self.lag.observe(max(lag, 0.0))

    def finished(self, rec: RequestRecord) -> None:
        self.outcomes[rec.status] = self.outcomes.get(rec.status, 0) + 1
        if rec.error:
            self.errors[rec.error] = self.errors.get(rec.error, 0) + 1
        for buckets, value in ((self.ttft, rec.ttft_s), (self.latency, rec.latency_s), (self.tpot, rec.tpot_s)):
            if value is not None:
                buckets.observe(value)

    def _collect(self) -> Iterable[Metric]:
        return [
            CounterMetricFamily(name(SUB, "sent_requests"), "Requests sent (first attempts)", value=self.sent_requests),
            counter_family(name(SUB, "outcomes"), "Requests finished, by outcome", "outcome", self.outcomes),
            counter_family(name(SUB, "errors"), "Requests that ended in error, by code", "code", self.errors),
            self.ttft.family(name(SUB, "ttft_seconds"), "Time to first token, from the scheduled send time"),
            self.tpot.family(name(SUB, "tpot_seconds"), "Time per output token after the first "
                             "(requests with more than one token)"),
            self.latency.family(name(SUB, "latency_seconds"), "End-to-end latency of completed requests, "
                                "from the scheduled send time"),
            self.lag.family(name(SUB, "send_lag_seconds"), "How late the generator sent a request after its "
                            "scheduled time"),
            GaugeMetricFamily(name(SUB, "in_flight"), "Requests sent and not yet finished", value=self.in_flight()),
        ]
