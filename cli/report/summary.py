"""One run's aggregate figures: the prototype's summary CSV columns and a few more.

Units: every time is in **seconds** (TTFT, TPOT, latency, duration, recovery), memory
and GPU utilisation and the cache hit rate are fractions 0..1, throughputs are per second
of the *measured window*, SLOs are in milliseconds (as the manifest and `--slo-*-ms` flags
give them). A figure with nothing to measure (no successful request, no recovery event, a
column the run did not record) is NaN, written as an empty cell.

Definitions (vLLM benchmarks/serve.py, vLLM `bench serve`):
- latency (E2EL) = done_s − scheduled_s and TTFT = first_token_s − scheduled_s, both from
  the *scheduled* time so a slow sender cannot hide queueing (no coordinated omission);
  only successful requests (status ok) count;
- TPOT = (latency − TTFT) / (tokens − 1), only for requests with tokens > 1;
- percentiles by `numpy.percentile` with linear interpolation;
- the measured window (`measured_duration`) runs from the first send (sent_s, else
  scheduled_s when the column is absent) to the last completion (done_s, or a later
  send: a failed request completed no earlier than it was sent): what vLLM's benchmark
  times. Throughput = successful requests / window, output token throughput =
  their generated tokens / window, goodput = successful requests meeting *every*
  configured SLO / window, where TPOT counts as 0 for tokens ≤ 1; goodput is NaN when no
  SLO is configured (it would equal throughput). `duration` stays the configured (or
  wall-clock) length of the run, the prototype's column; dividing by it would tie every
  two runs that both serve everything;
- cache_hit_rate = SERVE / successful requests that report an action: a hit only when
  the model was loaded and ready as the request reached the node. SERVE_LOADING (it
  waited for another request's load), COLD_START and MIGRATE are misses; failed requests
  are left out (their action is the coordinator's guess, not what a node did);
- migrate_count: requests moved by a live migration (requests.csv `migrated_to` set), not
  the MIGRATE label of the action mix, which only says how a placement was served;
- memory, GPU compute and queue statistics over the per-second samples of nodes that are
  alive (a dead node's zeros would otherwise flatter the cluster); GPU compute utilisation
  is NaN when nodes.csv has no `gpu_utilization` column or no value in it;
- cluster queue depth: per collector tick, the sum of queue_depth over the nodes alive in
  it; a tick is a run of rows in time order that names no node twice (the collector
  writes each node once per second).
- per-node dispersion (`queue_*`, `mem_util_*`, `compute_util_*`: CV, Jain's index and
  max/mean across alive nodes each second, time-averaged), `requests_affected` by a fault
  and the host's CPU (`host_*`, `schedctl_cpu_*`, from host.csv): defined in dispersion.py,
  affected.py and host.py;
- a request recorded `not_sent` (the run was interrupted before its send time) is neither
  a success nor a failure: it is left out of failed_requests and of success_rate's
  denominator and counted in not_sent_count; `interrupted` says the run was stopped early.

Workload classes (requests.csv `class`, with the class's `slo_ttft_ms` / `slo_tpot_ms`):
- a request's SLO is its class's where the class sets one, else the run's (so goodput and
  good_requests count each request against its own class's objectives);
- shed_count: requests refused by `--admission slo` (status `shed`): failed, not timeouts;
- decided_by_peer / _coordinator / _peer_degraded (hybrid runs): requests.csv rows per
  `decided_by` path; degraded_count: events.csv rows of kind `hybrid_degraded`;
- per class (a run with classes), columns `<class>_<figure>`: requests, successful, shed,
  ttft_p50, ttft_p99, latency_p50, latency_p99 (s, successful requests of the class),
  goodput (good requests of the class / s of the run's window) and slo_attainment (good /
  the class's requests that were sent: what fraction met its SLOs, shed ones count as missed).

Pre-warming: critical_cold_starts, prewarms, prewarm_hits, prewarm_unused, prewarm_gpu_gib
and evictions are defined in prewarming.py.

Faults and recoveries:
- fault_count: events.csv rows of kind `fault` (or any kind starting with "fault", case-
  insensitive): a fault injected on `target` at `t_s`;
- avg_recovery_time, recovery_count: the mean and number of the recovery_s figures of the
  faults that recovered, as recovery.csv holds them (cli/report/recovery.py defines them).
  Other event kinds (detected, failover, ...) are drawn on plots only.
"""

from __future__ import annotations

import csv
import dataclasses
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np

from cli.report.affected import requests_affected, timeout_of
from cli.report.dispersion import dispersion_columns
from cli.report.host import host_columns
from cli.report.prewarming import prewarm_columns
from cli.report.results import CACHE_HITS, RunData, load_run
from daemons.policy.hybrid import COORDINATOR, PATHS, PEER, PEER_DEGRADED
from daemons.rundir import NOT_SENT, SHED, TIMEOUT, Event, NodeSample, RequestRow, Slo

SUMMARY = "summary.csv"
NAN = math.nan
HYBRID_DEGRADED = "hybrid_degraded"  # events.csv kind a hybrid peer announces (daemons/node/hybrid_mode.py)


@dataclass(frozen=True)
class Summary:
    """Aggregates of one run; field order is the summary.csv column order."""

    # The prototype's columns, in its order.
    experiment_name: str
    scheduler_type: str
    start_time: str
    end_time: str
    duration: float
    total_requests: int  # rows recorded in requests.csv
    successful_requests: int
    failed_requests: int  # every status but ok, timeouts included
    avg_ttft: float
    p50_ttft: float
    p95_ttft: float
    p99_ttft: float
    avg_latency: float
    p50_latency: float
    p95_latency: float
    p99_latency: float
    avg_memory_utilization: float
    min_memory_utilization: float
    max_memory_utilization: float
    p50_memory_utilization: float
    p95_memory_utilization: float
    avg_queue_depth: float
    min_queue_depth: float
    max_queue_depth: float
    p50_queue_depth: float
    p95_queue_depth: float
    avg_recovery_time: float
    serve_count: int
    cold_start_count: int
    migrate_count: int
    # schedctl's additions.
    policy: str
    planned_requests: int | None
    duplicate_requests: int  # rows whose request_id was already seen
    record_check: str  # "" when planned and recorded agree, else what is wrong
    timeout_count: int
    success_rate: float  # 0..1 of recorded requests
    avg_tpot: float
    p50_tpot: float
    p95_tpot: float
    p99_tpot: float
    request_throughput: float  # successful requests / s of the measured window
    output_token_throughput: float  # generated tokens of successful requests / s of the window
    slo_ttft_ms: float | None
    slo_tpot_ms: float | None
    slo_e2el_ms: float | None
    good_requests: int
    goodput: float  # good requests / s
    recovery_count: int
    fault_count: int
    measured_duration: float  # first send to last completion, s
    serve_loading_count: int  # served after waiting for another request's model load
    cache_hits: int  # successful SERVE requests
    cache_hit_rate: float  # cache_hits / successful requests with an action
    avg_gpu_utilization: float  # compute, 0..1
    p50_gpu_utilization: float
    p95_gpu_utilization: float
    max_gpu_utilization: float
    avg_cluster_queue_depth: float  # sum over alive nodes, per tick
    p95_cluster_queue_depth: float
    max_cluster_queue_depth: float
    run_dir: str
    not_sent_count: int = 0  # never sent: the run was interrupted first (not in success_rate)
    interrupted: bool = False  # the run was stopped early (manifest "interrupted")
    # Spread over the nodes (dispersion.py): time averages over the seconds with any load.
    queue_cv: float = NAN
    queue_jain: float = NAN
    queue_max_over_mean: float = NAN
    queue_dispersion_seconds: int = 0
    mem_util_cv: float = NAN
    mem_util_jain: float = NAN
    mem_util_max_over_mean: float = NAN
    mem_util_dispersion_seconds: int = 0
    compute_util_cv: float = NAN
    compute_util_jain: float = NAN
    compute_util_max_over_mean: float = NAN
    compute_util_dispersion_seconds: int = 0
    requests_affected: int = 0  # by an injected fault (affected.py)
    # The host (host.py, host.csv): fractions 0..1 of all its cores; NaN / empty when not sampled.
    host_cpu_p50: float = NAN
    host_cpu_max: float = NAN
    schedctl_cpu_p50: float = NAN  # the run's process tree
    schedctl_cpu_max: float = NAN
    host_saturated_fraction: float = NAN  # of the seconds with host CPU above host.SATURATED_CPU
    host_saturated: bool | None = None  # the figures measure the host, not the scheduler
    shed_count: int = 0  # refused by --admission slo (in failed_requests)
    # Hybrid runs: requests served as placed by each path (requests.csv decided_by); 0 in other arms.
    decided_by_peer: int = 0
    decided_by_coordinator: int = 0
    decided_by_peer_degraded: int = 0
    degraded_count: int = 0  # hybrid_degraded events: a peer found the coordinator unreachable
    engine: str = "real"  # real | sim: a simulated run's figures are the model's (manifest "engine")
    # Predictive pre-warming (prewarming.py): cold starts on requests' critical path, and
    # what pre-warming did about them and cost.
    critical_cold_starts: int = 0
    prewarms: int = 0
    prewarm_hits: int = 0
    prewarm_unused: int = 0
    prewarm_gpu_gib: float = 0.0
    evictions: int = 0
    classes: tuple[ClassFigures, ...] = ()  # per workload class; () without classes (not a column)

    @property
    def records_ok(self) -> bool:
        return not self.record_check


@dataclass(frozen=True)
class ClassFigures:
    """One workload class's figures: summary.csv columns `<name>_<field>` (see the module doc)."""

    name: str
    requests: int
    successful: int
    shed: int
    ttft_p50: float
    ttft_p99: float
    latency_p50: float
    latency_p99: float
    goodput: float
    slo_attainment: float


@dataclass(frozen=True)
class Stats:
    """Distribution figures of one sample; NaN everywhere for an empty sample."""

    avg: float
    min: float
    max: float
    p50: float
    p95: float
    p99: float

    @classmethod
    def of(cls, values: Iterable[float]) -> Stats:
        arr = np.asarray([v for v in values if not math.isnan(v)], dtype=float)
        if arr.size == 0:
            return cls(NAN, NAN, NAN, NAN, NAN, NAN)
        p50, p95, p99 = (float(x) for x in np.percentile(arr, [50, 95, 99], method="linear"))
        return cls(float(arr.mean()), float(arr.min()), float(arr.max()), p50, p95, p99)


def summarize(run_dir: Path, slo: Slo | None = None) -> Summary:
    """Read a results directory and aggregate it; `slo` values override the manifest's."""
    return summarize_run(load_run(run_dir), slo)


def summarize_run(run: RunData, slo: Slo | None = None) -> Summary:
    """Aggregate an already loaded run (see the module docstring for definitions)."""
    m = run.manifest
    used_slo = m.slo.overridden_by(slo or Slo())
    ok = [r for r in run.requests if r.ok]
    not_sent = sum(1 for r in run.requests if r.status == NOT_SENT)
    judged = len(run.requests) - not_sent  # requests the system was asked to serve
    duration = run_duration(run)
    window = measured_window(run.requests)
    ttft = Stats.of(r.ttft_s for r in ok)
    latency = Stats.of(r.latency_s for r in ok)
    tpot = Stats.of(tpot_s(r) for r in ok if (r.tokens or 0) > 1)
    alive = [n for n in run.nodes if n.alive]
    memory = Stats.of(n.memory_utilization for n in alive)
    queue = Stats.of(n.queue_depth for n in alive)
    gpu = Stats.of(n.gpu_utilization for n in alive)
    totals = Stats.of(total for _, total in cluster_queue(run.nodes))
    hits, hit_rate = cache_hits(run.requests)
    recoveries = [r.recovery_s for r in run.recoveries if r.recovered]
    good = sum(1 for r in ok if meets_slo(r, request_slo(r, used_slo)))
    duplicates = len(run.requests) - len({r.request_id for r in run.requests})
    decided = decided_counts(run.requests)
    return Summary(
        experiment_name=m.name, scheduler_type=m.scheduler, start_time=m.start_time, end_time=m.end_time,
        duration=duration, total_requests=len(run.requests), successful_requests=len(ok),
        failed_requests=judged - len(ok),
        avg_ttft=ttft.avg, p50_ttft=ttft.p50, p95_ttft=ttft.p95, p99_ttft=ttft.p99,
        avg_latency=latency.avg, p50_latency=latency.p50, p95_latency=latency.p95, p99_latency=latency.p99,
        avg_memory_utilization=memory.avg, min_memory_utilization=memory.min,
        max_memory_utilization=memory.max, p50_memory_utilization=memory.p50,
        p95_memory_utilization=memory.p95,
        avg_queue_depth=queue.avg, min_queue_depth=queue.min, max_queue_depth=queue.max,
        p50_queue_depth=queue.p50, p95_queue_depth=queue.p95,
        avg_recovery_time=float(np.mean(recoveries)) if recoveries else NAN,
        serve_count=_count_action(run.requests, "SERVE"),
        cold_start_count=_count_action(run.requests, "COLD_START"),
        migrate_count=sum(1 for r in run.requests if r.migrated),
        policy=m.policy, planned_requests=m.planned_requests, duplicate_requests=duplicates,
        record_check=record_check(m.planned_requests, len(run.requests), duplicates),
        timeout_count=sum(1 for r in run.requests if r.status == TIMEOUT),
        success_rate=len(ok) / judged if judged else NAN,
        avg_tpot=tpot.avg, p50_tpot=tpot.p50, p95_tpot=tpot.p95, p99_tpot=tpot.p99,
        request_throughput=_per_s(len(ok), window),
        output_token_throughput=_per_s(sum(r.tokens or 0 for r in ok), window),
        slo_ttft_ms=used_slo.ttft_ms, slo_tpot_ms=used_slo.tpot_ms, slo_e2el_ms=used_slo.e2el_ms,
        good_requests=good if used_slo.configured else 0,
        goodput=_per_s(good, window) if used_slo.configured else NAN,
        recovery_count=len(recoveries), fault_count=sum(1 for e in run.events if is_fault(e)),
        measured_duration=window, serve_loading_count=_count_action(run.requests, "SERVE_LOADING"),
        cache_hits=hits, cache_hit_rate=hit_rate,
        avg_gpu_utilization=gpu.avg, p50_gpu_utilization=gpu.p50, p95_gpu_utilization=gpu.p95,
        max_gpu_utilization=gpu.max,
        avg_cluster_queue_depth=totals.avg, p95_cluster_queue_depth=totals.p95,
        max_cluster_queue_depth=totals.max,
        run_dir=str(run.run_dir),
        not_sent_count=not_sent, interrupted=bool(m.raw.get("interrupted", False)),
        **dispersion_columns(collector_ticks(run.nodes)),
        requests_affected=requests_affected(run, timeout_of(m.raw)), **host_columns(run.hosts),
        shed_count=sum(1 for r in run.requests if r.status == SHED),
        decided_by_peer=decided[PEER], decided_by_coordinator=decided[COORDINATOR],
        decided_by_peer_degraded=decided[PEER_DEGRADED],
        degraded_count=sum(1 for e in run.events if e.kind == HYBRID_DEGRADED),
        engine=str(m.raw.get("engine") or "real"),
        **prewarm_columns(run.events, run.requests),
        classes=class_figures(run.requests, used_slo, window),
    )


def request_slo(r: RequestRow, run_slo: Slo) -> Slo:
    """The SLO a request is judged by: its class's TTFT / TPOT where set, else the run's."""
    ttft, tpot = r.slo_ttft_ms, r.slo_tpot_ms
    if math.isnan(ttft) and math.isnan(tpot):
        return run_slo
    return dataclasses.replace(run_slo, ttft_ms=run_slo.ttft_ms if math.isnan(ttft) else ttft,
                               tpot_ms=run_slo.tpot_ms if math.isnan(tpot) else tpot)


def class_figures(requests: Sequence[RequestRow], run_slo: Slo, window: float) -> tuple[ClassFigures, ...]:
    """Figures per workload class, in order of first appearance; () when no request has a class."""
    names = list(dict.fromkeys(r.klass for r in requests if r.klass))
    out = []
    for name in names:
        mine = [r for r in requests if r.klass == name]
        ok = [r for r in mine if r.ok]
        judged = [r for r in mine if r.status != NOT_SENT]
        good = sum(1 for r in ok if meets_slo(r, request_slo(r, run_slo)))
        ttft, latency = Stats.of(r.ttft_s for r in ok), Stats.of(r.latency_s for r in ok)
        out.append(ClassFigures(name, len(mine), len(ok), sum(1 for r in mine if r.status == SHED),
                                ttft.p50, ttft.p99, latency.p50, latency.p99, _per_s(good, window),
                                good / len(judged) if judged else NAN))
    return tuple(out)


def tpot_s(r: RequestRow) -> float:
    """Time per output token after the first; 0 for one token, as vLLM's goodput counts it."""
    tokens = r.tokens or 0
    return (r.latency_s - r.ttft_s) / (tokens - 1) if tokens > 1 else 0.0


def meets_slo(r: RequestRow, slo: Slo) -> bool:
    """Whether a request met every configured SLO (a missing time never meets one)."""
    checks = ((slo.ttft_ms, r.ttft_s), (slo.tpot_ms, tpot_s(r)), (slo.e2el_ms, r.latency_s))
    # `not (x <= limit)` so that a NaN time fails the SLO rather than passing it.
    return r.ok and not any(limit is not None and not (1000 * t <= limit) for limit, t in checks)


def run_duration(run: RunData) -> float:
    """The manifest's duration; else end − start; else up to the last scheduled request."""
    m = run.manifest
    if m.duration_s is not None and m.duration_s > 0:
        return m.duration_s
    try:
        span = (datetime.fromisoformat(m.end_time) - datetime.fromisoformat(m.start_time)).total_seconds()
    except (ValueError, TypeError):  # unparsable, or one time zone-aware and one naive
        span = 0.0
    if span > 0:
        return span
    last = max((r.scheduled_s for r in run.requests), default=0.0)
    return last if last > 0 else NAN


def measured_window(requests: Sequence[RequestRow]) -> float:
    """Seconds from the first send to the last completion; NaN when nothing completed.

    A failed request has no done_s, but it ended no earlier than it was sent: the window
    reaches the last send too, so a run that refuses its late requests is not measured
    as a shorter, faster one."""
    sends = [r.scheduled_s if math.isnan(r.sent_s) else r.sent_s for r in requests]
    dones = [r.done_s for r in requests if not math.isnan(r.done_s)]
    if not dones:
        return NAN
    span = max(*dones, *sends) - min(sends)
    return span if span > 0 else NAN


def collector_ticks(nodes: Sequence[NodeSample]) -> list[list[NodeSample]]:
    """The samples grouped by collector tick: in time order, a tick ends where a node repeats."""
    ticks: list[list[NodeSample]] = []
    seen: set[str] = set()
    for sample in sorted(nodes, key=lambda n: n.t_s):
        if not ticks or sample.node in seen:
            ticks.append([])
            seen = set()
        ticks[-1].append(sample)
        seen.add(sample.node)
    return ticks


def cluster_queue(nodes: Sequence[NodeSample]) -> list[tuple[float, float]]:
    """Per tick, (its first sample's t_s, the queue depth summed over its alive nodes)."""
    totals = []
    for tick in collector_ticks(nodes):
        depths = [n.queue_depth for n in tick if n.alive and not math.isnan(n.queue_depth)]
        if depths:
            totals.append((tick[0].t_s, float(sum(depths))))
    return totals


def cache_hits(requests: Sequence[RequestRow]) -> tuple[int, float]:
    """(hits, hit rate) over the successful requests that report an action; rate NaN if none."""
    placed_ok = [r for r in requests if r.ok and r.action]
    hits = sum(1 for r in placed_ok if r.action in CACHE_HITS)
    return hits, hits / len(placed_ok) if placed_ok else NAN


def record_check(planned: int | None, recorded: int, duplicates: int) -> str:
    """Empty when every planned request has exactly one row; else a sentence saying what is off."""
    problems = []
    if planned is not None and planned != recorded:
        gap = planned - recorded
        what = f"{gap} missing" if gap > 0 else f"{-gap} more than planned"
        problems.append(f"{recorded} rows recorded for {planned} planned requests ({what})")
    if duplicates:
        problems.append(f"{duplicates} duplicate request_id row(s)")
    return "; ".join(problems)


def is_fault(event: Event) -> bool:
    return event.kind.startswith("fault")


def is_recovery(event: Event) -> bool:
    return event.kind in ("recovered", "recovery")


def decided_counts(requests: Sequence[RequestRow]) -> dict[str, int]:
    """Rows per `decided_by` path of a hybrid run (all 0 in other arms)."""
    return {path: sum(1 for r in requests if r.decided_by == path) for path in PATHS}


def _count_action(requests: Sequence[RequestRow], action: str) -> int:
    return sum(1 for r in requests if r.action == action)


def _per_s(count: float, duration: float) -> float:
    return count / duration if duration > 0 else NAN


def summary_row(summary: Summary) -> dict[str, str]:
    """The summary as CSV cells: NaN and None empty, floats to 9 significant digits."""
    row = {f.name: _cell(getattr(summary, f.name)) for f in dataclasses.fields(summary) if f.name != "classes"}
    for figures in summary.classes:
        row.update({f"{figures.name}_{f.name}": _cell(getattr(figures, f.name))
                    for f in dataclasses.fields(figures) if f.name != "name"})
    return row


def _cell(value: object) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, float):
        return f"{value:.9g}"
    return str(value)


def write_summary_csv(summary: Summary, path: Path) -> Path:
    """Write one header row and one data row."""
    row = summary_row(summary)
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(row))
        writer.writeheader()
        writer.writerow(row)
    return path
