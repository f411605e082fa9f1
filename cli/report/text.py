"""Plain-text and Markdown rendering: aligned tables and the one-run summary printout."""

from __future__ import annotations

import math
from collections.abc import Sequence

from cli.report.host import saturation_warning
from cli.report.summary import Summary

# The prototype's report was f"{metric:<40} {a:<20} {b:<20} {winner}"; keep those widths
# as minimums so old and new reports line up, and grow for longer cells.
_FIRST_WIDTH, _COLUMN_WIDTH = 40, 20


def align(rows: Sequence[Sequence[str]], min_widths: Sequence[int] = ()) -> list[str]:
    """Left-align every column to its widest cell (at least `min_widths`), one space between."""
    ncols = max((len(r) for r in rows), default=0)
    widths = [max((len(r[i]) for r in rows if i < len(r)), default=0) for i in range(ncols)]
    widths = [max(w, min_widths[i] if i < len(min_widths) else 0) for i, w in enumerate(widths)]
    return [" ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=False)).rstrip() for r in rows]


def render_text_table(title: str, headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """The prototype's layout: a ruled title, a header row, a rule, the rows, a closing rule."""
    mins = [_FIRST_WIDTH] + [_COLUMN_WIDTH] * (len(headers) - 1)
    lines = align([list(headers), *rows], mins)
    rule_width = max(80, *(len(line) for line in lines))
    heavy, light = "=" * rule_width, "-" * rule_width
    return "\n".join([heavy, title, heavy, "", lines[0], light, *lines[1:], heavy]) + "\n"


def render_markdown_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    def line(cells: Sequence[str]) -> str:
        return "| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |"

    rule = "|" + "|".join(["---"] + ["---:"] * (len(headers) - 2) + [":---:"]) + "|"
    return "\n".join([line(headers), rule, *(line(r) for r in rows)]) + "\n"


def num(value: float | None, decimals: int = 2, scale: float = 1.0, suffix: str = "") -> str:
    """A figure for display; "-" when there is nothing to show."""
    if value is None or math.isnan(value):
        return "-"
    return f"{value * scale:.{decimals}f}{suffix}"


def format_summary(s: Summary) -> str:
    """The summary of one run, for a terminal: facts first, then the distributions."""
    facts = [
        ["run", s.run_dir],
        ["experiment", f"{s.experiment_name}  scheduler {s.scheduler_type}  policy {s.policy or '-'}"],
        ["time", f"{s.start_time or '?'} .. {s.end_time or '?'}  ({num(s.duration, 1)} s)"],
        ["requests", _requests_line(s)],
        ["records", _records_line(s)],
        ["throughput", f"{num(s.request_throughput, 3)} req/s, {num(s.output_token_throughput, 1)} "
                       f"output tok/s over {num(s.measured_duration, 2)} s (first send to last completion)"],
        ["goodput", _goodput_line(s)],
        ["actions", f"SERVE {s.serve_count}, SERVE_LOADING {s.serve_loading_count}, "
                    f"COLD_START {s.cold_start_count}, MIGRATE {s.migrate_count}"],
        ["cache hits", f"{num(s.cache_hit_rate, 1, 100, '%')} ({s.cache_hits} successful requests found "
                       "their model ready)"],
        *([["decided by", f"peer {s.decided_by_peer}, coordinator {s.decided_by_coordinator}, "
                          f"peer-degraded {s.decided_by_peer_degraded} ({s.degraded_count} degraded spell(s))"]]
          if s.scheduler_type == "hybrid" else []),
        *([["pre-warming", _prewarm_line(s)]] if s.prewarms or s.evictions else []),
        ["recovery", _recovery_line(s)],
        ["affected", _affected_line(s)],
        ["host", _host_line(s)],
    ]
    if s.engine == "sim":  # said first: every figure below is the simulator's model, not a measurement
        facts.insert(0, ["engine", "SIMULATED (--engine sim): one process on a virtual clock; the figures are the "
                                   "model's, not measured on a cluster"])
    grid = [
        ["", "avg", "p50", "p95", "p99", "min", "max"],
        ["TTFT (ms)", *_ms(s.avg_ttft, s.p50_ttft, s.p95_ttft, s.p99_ttft), "", ""],
        ["TPOT (ms)", *_ms(s.avg_tpot, s.p50_tpot, s.p95_tpot, s.p99_tpot), "", ""],
        ["latency (ms)", *_ms(s.avg_latency, s.p50_latency, s.p95_latency, s.p99_latency), "", ""],
        ["memory util", *(num(v, 1, 100, "%") for v in (s.avg_memory_utilization, s.p50_memory_utilization,
                                                       s.p95_memory_utilization)), "",
         num(s.min_memory_utilization, 1, 100, "%"), num(s.max_memory_utilization, 1, 100, "%")],
        ["GPU compute", *(num(v, 1, 100, "%") for v in (s.avg_gpu_utilization, s.p50_gpu_utilization,
                                                       s.p95_gpu_utilization)), "", "",
         num(s.max_gpu_utilization, 1, 100, "%")],
        ["queue depth", *(num(v) for v in (s.avg_queue_depth, s.p50_queue_depth, s.p95_queue_depth)), "",
         num(s.min_queue_depth), num(s.max_queue_depth)],
        ["cluster queue", num(s.avg_cluster_queue_depth), "", num(s.p95_cluster_queue_depth), "", "",
         num(s.max_cluster_queue_depth)],
    ]
    warning = saturation_warning(s.host_saturated_fraction, s.host_saturated)
    lines = [*align(facts, [11]), "", *align(grid, [13, 10, 10, 10, 10, 10, 10]), "",
             *align(_spread_grid(s), [13, 10, 10, 10, 10])]
    if len(s.classes) > 1:
        lines += ["", *align(_class_grid(s), [13, 9, 9, 7, 11, 11, 13, 13, 10, 10])]
    lines += [f"warning: {warning}"] if warning else []
    return "\n".join(lines) + "\n"


def _class_grid(s: Summary) -> list[list[str]]:
    """One row per workload class: its outcomes, TTFT and latency, goodput and SLO attainment."""
    grid = [["class", "requests", "ok", "shed", "TTFT p50", "TTFT p99", "latency p50", "latency p99",
             "goodput", "SLO met"]]
    for c in s.classes:
        grid.append([c.name, str(c.requests), str(c.successful), str(c.shed),
                     *_ms(c.ttft_p50, c.ttft_p99, c.latency_p50, c.latency_p99),
                     num(c.goodput, 3), num(c.slo_attainment, 1, 100, "%")])
    return grid


def _ms(*values: float) -> list[str]:
    return [num(v, 2, 1000) for v in values]


def _prewarm_line(s: Summary) -> str:
    """What pre-warming bought (cold starts moved off requests' critical path) and cost (GPU memory)."""
    return (f"{s.prewarms} pre-warm(s) booking {num(s.prewarm_gpu_gib, 1)} GiB: {s.prewarm_hits} cold start(s) "
            f"moved off the critical path, {s.prewarm_unused} evicted unused; {s.critical_cold_starts} "
            f"request(s) still waited for a load; {s.evictions} eviction(s)")


def _requests_line(s: Summary) -> str:
    shed = f", {s.shed_count} shed" if s.shed_count else ""
    return (f"{s.total_requests} recorded, {s.successful_requests} ok, {s.failed_requests} failed "
            f"({s.timeout_count} timeouts{shed}), success {num(s.success_rate, 1, 100, '%')}")


def _records_line(s: Summary) -> str:
    if s.record_check:
        return f"MISMATCH: {s.record_check}"
    if s.planned_requests is None:
        return "not checked (manifest.json has no planned_requests)"
    return f"ok: {s.planned_requests} planned, one row each"


def _goodput_line(s: Summary) -> str:
    slos = [f"{name} <= {v:g} ms" for name, v in
            (("TTFT", s.slo_ttft_ms), ("TPOT", s.slo_tpot_ms), ("E2EL", s.slo_e2el_ms)) if v is not None]
    if not slos:
        return "- (no SLO in manifest.json; pass --slo-ttft-ms / --slo-tpot-ms / --slo-e2el-ms)"
    return (f"{num(s.goodput, 3)} req/s ({s.good_requests} of {s.successful_requests} ok requests "
            f"meet {', '.join(slos)})")


def _recovery_line(s: Summary) -> str:
    """"not recovered" in words: a dash would read as "nothing to report"."""
    faults = f"{s.fault_count} fault{'' if s.fault_count == 1 else 's'}"
    if not s.fault_count:
        return "no faults"
    if not s.recovery_count:
        return f"not recovered ({faults}, none recovered)"
    line = f"avg {num(s.avg_recovery_time)} s over {s.recovery_count} recoveries ({faults})"
    missed = s.fault_count - s.recovery_count
    return line + (f", {missed} not recovered" if missed > 0 else "")


def _affected_line(s: Summary) -> str:
    if not s.fault_count:
        return "- (no faults)"
    return (f"{s.requests_affected} requests failed, were retried or were slower than the pre-fault p99 TTFT "
            f"while exposed to the {s.fault_count} faults")


def _host_line(s: Summary) -> str:
    if s.host_saturated is None:
        return "- (not sampled: no host.csv)"
    pct = [num(v, 0, 100, "%") for v in (s.host_cpu_p50, s.host_cpu_max, s.schedctl_cpu_p50, s.schedctl_cpu_max)]
    return (f"CPU p50 {pct[0]}, max {pct[1]}; the run's processes p50 {pct[2]}, max {pct[3]} "
            f"(of all cores); {'SATURATED' if s.host_saturated else 'not saturated'}")


def _spread_grid(s: Summary) -> list[list[str]]:
    """Dispersion across alive nodes, averaged over the seconds with any load."""
    rows = [["spread", "CV", "Jain", "max/mean", "seconds"]]
    for label, prefix in (("queue depth", "queue"), ("memory util", "mem_util"), ("GPU compute", "compute_util")):
        cv, jain, peak = (getattr(s, f"{prefix}_{k}") for k in ("cv", "jain", "max_over_mean"))
        rows.append([label, num(cv), num(jain), num(peak), str(getattr(s, f"{prefix}_dispersion_seconds"))])
    return rows
