"""A gossip peer's Prometheus metrics (daemons/bus/metrics.py has the conventions).

All read when Prometheus scrapes, from the counters the protocol and the transport keep
anyway (`Memberlist.stats`, `ZmqTransport.stats`), so gossip pays nothing per message:
members by state, messages and bytes sent and received, sends dropped, frames dropped by
cause, probes and their failures, the probe round trip (a summary: count and sum),
suspicions raised, deaths declared, refutations and the Lifeguard health score.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, SummaryMetricFamily
from prometheus_client.metrics_core import Metric

from daemons.bus.metrics import name, read_at_scrape
from daemons.gossip.agent import GossipAgent
from daemons.gossip.memberlist import Memberlist
from daemons.gossip.transport import TransportStats

SUB = "gossip"


Sources = Callable[[], tuple[Memberlist, TransportStats] | None]


class GossipMetrics:
    """Registers a gossip peer's metrics in `registry` (a node's, or the agent CLI's own);
    `sources` gives the running peer's memberlist and transport counters (None: not running)."""

    def __init__(self, sources: Sources, registry: CollectorRegistry) -> None:
        self._sources = sources
        read_at_scrape(registry, self._collect)

    @classmethod
    def of(cls, agent: GossipAgent, registry: CollectorRegistry) -> GossipMetrics:
        def sources() -> tuple[Memberlist, TransportStats] | None:
            try:
                return agent.memberlist, agent.transport.stats
            except RuntimeError:  # not started, or stopped
                return None
        return cls(sources, registry)

    def _collect(self) -> Iterable[Metric]:
        running = self._sources()
        if running is None:
            return []
        ml, st = running
        members = GaugeMetricFamily(name(SUB, "members"), "Members in this peer's view (itself included), "
                                    "by state", labels=["state"])
        for state, count in ml.count_by_status().items():
            members.add_metric([state], count)
        ps = ml.stats
        out: list[Metric] = [members]
        for what, value, doc in (
            ("messages_sent", st.msgs_out, "Gossip messages sent"),
            ("messages_received", st.msgs_in, "Gossip messages received"),
            ("sent_bytes", st.bytes_out, "Bytes of gossip messages sent"),
            ("received_bytes", st.bytes_in, "Bytes of gossip messages received"),
            ("send_dropped", st.send_dropped, "Sends dropped: the peer's pipe was full or failed"),
            ("probes", ps.probes, "Failure-detector probes started"),
            ("probe_failures", ps.probe_failures, "Probes not answered, directly or through relays"),
            ("suspicions", ps.suspicions_raised, "Suspicions this peer raised"),
            ("deaths", ps.deaths_declared, "Members this peer declared dead"),
            ("refutations", ps.refutations, "Suspicions of this peer it refuted"),
        ):
            out.append(CounterMetricFamily(name(SUB, what), doc, value=value))
        dropped = CounterMetricFamily(name(SUB, "dropped_frames"), "Frames dropped, by cause", labels=["cause"])
        for cause, count in dict(st.malformed).items():
            dropped.add_metric([cause], count)
        rtt = SummaryMetricFamily(name(SUB, "probe_rtt_seconds"), "Round trip of answered probes",
                                  count_value=ps.probe_acks, sum_value=ps.probe_rtt_s)
        health = GaugeMetricFamily(name(SUB, "health_score"), "Lifeguard local health (0 = healthy; higher "
                                   "stretches timeouts)", value=ml.health)
        return [*out, dropped, rtt, health]
