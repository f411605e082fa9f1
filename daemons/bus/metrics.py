"""Prometheus metrics of one daemon: the `[metrics]` table, its registry, its HTTP endpoint.

    [metrics]
    bind = "127.0.0.1:9464"   # HOST:PORT of GET /metrics; empty (the default) = no metrics

    [metrics.node]            # one daemon's own, where one host runs several (one file each host)
    bind = "127.0.0.1:9465"

Every daemon exports on its own `CollectorRegistry`, never prometheus_client's global one:
several daemons may share a process (tests, simulators), and each must export only its own
series. Names follow the Prometheus naming conventions (https://prometheus.io/docs/practices/naming/):
the `schedctl_` prefix, base units (`_seconds`, `_bytes`), `_total` on counters; labels
take a handful of values each (an action, an outcome, a state), never a request id.

Cheap on the hot path. A daemon whose one thread decides (the coordinator's decision loop,
the load generator's sending thread) counts into plain ints and a `Buckets` histogram, lock-
free (a prometheus_client Counter + Histogram cost 2-5 us per decision, up to 12 % of one,
as scripts/bench_coordinator.py measured; these cost 0.2-0.6 us); what a daemon keeps anyway
(queue depth, members by state, its own counters) is read the same way. A `Collector`
(`read_at_scrape`) turns them into metric families only when Prometheus scrapes, on the
endpoint's thread, so a decision pays a few hundred nanoseconds. Elsewhere (the node's event
loop, where a request costs milliseconds) prometheus_client's Counter and Histogram are used
as they are.

The endpoint is prometheus_client's `start_http_server` (a WSGI server on a daemon thread)
serving the daemon's registry: the daemon's own loop never answers a scrape.
"""

from __future__ import annotations

import bisect
import ipaddress
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from daemons.core.errors import ConfigError
from daemons.core.settings import build, env_overrides, read_section

PREFIX = "schedctl_"
DAEMONS = ("coordinator", "node", "loadgen")  # [metrics.<daemon>] sub-tables
# Buckets (seconds) for a placement decision: tens of microseconds to tens of milliseconds.
DECISION_BUCKETS = (0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1)
# Buckets (seconds) for what a request waits for: a token, a model load, a whole answer.
REQUEST_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)
# Buckets (seconds) for one output token, and for how late a load generator sends.
TOKEN_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0)
LAG_BUCKETS = (0.0001, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 1.0)


@dataclass(frozen=True)
class MetricsConfig:
    bind: str = ""  # HOST:PORT of the Prometheus /metrics endpoint, e.g. "127.0.0.1:9464"; empty = off

    def __post_init__(self) -> None:
        if not isinstance(self.bind, str):
            raise ConfigError(f"[metrics] bind must be a string like \"127.0.0.1:9464\", got {self.bind!r}")
        if self.bind:
            parse_bind(self.bind)

    @property
    def enabled(self) -> bool:
        return bool(self.bind)

    @classmethod
    def load(cls, path: Path | None, overrides: dict[str, Any] | None = None, daemon: str = "") -> MetricsConfig:
        """[metrics] of the file, then its [metrics.<daemon>], then SCHEDCTL_METRICS_* environment,
        then flags (None ignored)."""
        data = read_section(path, "metrics")
        own = {name: data.pop(name) for name in DAEMONS if isinstance(data.get(name), dict)}
        data.update(own.get(daemon, {}))
        data.update(env_overrides(cls, "metrics"))
        data.update({k: v for k, v in (overrides or {}).items() if v is not None})
        return build(cls, data, f"[metrics] of {path}" if path else "metrics config")


def parse_bind(text: str) -> tuple[str, int]:
    """(host, port) of "HOST:PORT" ("[::1]:9464" for IPv6; ":9464" = every interface)."""
    fix = f"[metrics] bind must be HOST:PORT like 127.0.0.1:9464 (empty turns metrics off), got {text!r}"
    host, sep, port_text = text.rpartition(":")
    if not sep or not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise ConfigError(f"{fix}: the port must be a number from 1 to 65535")
    host = host.removeprefix("[").removesuffix("]") or "0.0.0.0"
    try:
        ipaddress.ip_address(host)
    except ValueError:
        if not host.replace("-", "").replace(".", "").isalnum():
            raise ConfigError(f"{fix}: {host!r} is neither an IP address nor a host name") from None
    return host, int(port_text)


def name(subsystem: str, what: str) -> str:
    """`schedctl_<subsystem>_<what>`: the one place the prefix is spelled."""
    return f"{PREFIX}{subsystem}_{what}"


class ReadAtScrape(Collector):
    """A collector that asks `collect` for its metric families only when Prometheus scrapes
    (on the endpoint's thread): for what the daemon keeps anyway, so the hot path pays nothing.
    `collect` must only read (plain attributes, immutable snapshots), never mutate."""

    def __init__(self, collect: Callable[[], Iterable[Metric]]) -> None:
        self._collect = collect

    def collect(self) -> Iterable[Metric]:
        return self._collect()


def read_at_scrape(registry: CollectorRegistry, collect: Callable[[], Iterable[Metric]]) -> None:
    registry.register(ReadAtScrape(collect))


class Buckets:
    """A histogram one thread observes into without a lock; a scrape on another thread reads a
    copy (a list copy is one step under the GIL: the buckets it exports are consistent, the sum
    may lag them by an observation in flight)."""

    __slots__ = ("bounds", "counts", "total")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)  # the last is +Inf
        self.total = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(self.bounds, value)] += 1  # le: value <= bound
        self.total += value

    def family(self, metric: str, doc: str) -> HistogramMetricFamily:
        counts, running, buckets = list(self.counts), 0, []
        for bound, count in zip([*map(str, self.bounds), "+Inf"], counts, strict=True):
            running += count
            buckets.append((bound, running))
        return HistogramMetricFamily(metric, doc, buckets=buckets, sum_value=self.total)


def counter_family(metric: str, doc: str, label: str, counts: dict[str, int],
                   constant: dict[str, str] | None = None) -> CounterMetricFamily:
    """A counter family from a dict `label value -> count` kept by one thread (copied first)."""
    extra = constant or {}
    family = CounterMetricFamily(metric, doc, labels=[label, *extra])
    for value, count in dict(counts).items():
        family.add_metric([value, *extra.values()], count)
    return family


class Endpoint:
    """A running /metrics HTTP server (one daemon thread); `close` stops it."""

    def __init__(self, server: WSGIServer, thread: threading.Thread, host: str) -> None:
        self._server, self._thread = server, thread
        self.address = f"{host}:{server.server_port}"

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


def serve(registry: CollectorRegistry, bind: str, flag: str = "--metrics-bind") -> Endpoint:
    """Serve `registry` on http://BIND/metrics; a ConfigError naming the fix when it cannot bind."""
    host, port = parse_bind(bind)
    try:
        server, thread = start_http_server(port, host, registry)
    except OSError as exc:
        raise ConfigError(f"cannot open the metrics endpoint on {bind}: {exc.strerror or exc}: stop what "
                          f"uses it, or pass {flag} with a free HOST:PORT ([metrics] bind; empty = off)") from None
    return Endpoint(server, thread, host)


# The sample names of each metric type (the exposition format's suffixes), from a family name.
SUFFIXES = {"counter": ("_total", "_created"), "gauge": ("",), "histogram": ("_bucket", "_sum", "_count", "_created"),
            "summary": ("", "_sum", "_count", "_created"), "info": ("_info",)}


def exported_names(registry: CollectorRegistry) -> set[str]:
    """Every sample name the registry's families can export (a histogram's _bucket, _sum,
    _count...), whether or not a labelled family has a sample yet."""
    return {family.name + suffix for family in registry.collect() for suffix in SUFFIXES.get(family.type, ("",))}
