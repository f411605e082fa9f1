"""The load generator's Prometheus metrics (daemons/bus/metrics.py has the conventions).

The recorder tells `LoadgenMetrics` of every first send and every outcome (it is the
recorder's `observer`), on the sending thread: requests sent, outcomes (ok, error, timeout,
not_sent), errors by code, and histograms of TTFT, TPOT and end-to-end latency (all from
the scheduled send time, as requests.csv has them) and of the send lag (how late the
generator itself sent). In flight is read when Prometheus scrapes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.metrics_core import Metric

from daemons.bus.metrics import LAG_BUCKETS, REQUEST_BUCKETS, TOKEN_BUCKETS, name, read_at_scrape
from daemons.loadgen.recorder import OUTCOMES, RequestRecord

SUB = "loadgen"


class LoadgenMetrics:
    """A load generator's registry; `sent` and `finished` are called by the Recorder."""

    def __init__(self, in_flight: Callable[[], int] = lambda: 0) -> None:
        self.registry = CollectorRegistry()
        self.in_flight = in_flight  # the sender sets it to its recorder's count
        reg = self.registry
        self._sent = Counter(name(SUB, "sent_requests"), "Requests sent (first attempts)", registry=reg)
        outcomes = Counter(name(SUB, "outcomes"), "Requests finished, by outcome", ["outcome"], registry=reg)
        self._outcomes = {outcome: outcomes.labels(outcome) for outcome in OUTCOMES}
        self._errors = Counter(name(SUB, "errors"), "Requests that ended in error, by code", ["code"], registry=reg)
        self._ttft = Histogram(name(SUB, "ttft_seconds"), "Time to first token, from the scheduled send time",
                               buckets=REQUEST_BUCKETS, registry=reg)
        self._tpot = Histogram(name(SUB, "tpot_seconds"), "Time per output token after the first "
                               "(requests with more than one token)", buckets=TOKEN_BUCKETS, registry=reg)
        self._latency = Histogram(name(SUB, "latency_seconds"), "End-to-end latency of completed requests, "
                                  "from the scheduled send time", buckets=REQUEST_BUCKETS, registry=reg)
        self._lag = Histogram(name(SUB, "send_lag_seconds"), "How late the generator sent a request after its "
                              "scheduled time", buckets=LAG_BUCKETS, registry=reg)
        read_at_scrape(reg, self._collect)

    def sent(self, rec: RequestRecord) -> None:
        self._sent.inc()
        lag = rec.send_lag_s
        if lag is not None:
            self._lag.observe(max(lag, 0.0))

    def finished(self, rec: RequestRecord) -> None:
        self._outcomes[rec.status].inc()
        if rec.error:
            self._errors.labels(rec.error).inc()
        if rec.ttft_s is not None:
            self._ttft.observe(rec.ttft_s)
        if rec.latency_s is not None:
            self._latency.observe(rec.latency_s)
        if rec.tpot_s is not None:
            self._tpot.observe(rec.tpot_s)

    def _collect(self) -> Iterable[Metric]:
        return [GaugeMetricFamily(name(SUB, "in_flight"), "Requests sent and not yet finished",
                                  value=self.in_flight())]
