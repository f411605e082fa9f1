"""`schedctl experiment validate-sim`: the simulator against the real engine, metric by metric.

For each cluster size and load, both arms run the same spec and the same planned schedule
(the same seed) twice, once with the real daemons and once simulated, each arm with one
node killed at 40 % of the run (so recovery is measured). The table gives, per metric, the
simulated value, the real value and their ratio, and whether the ratio is within the
tolerance (15 %: the goal of the simulator). Where the real run's host was saturated
(summary `host_saturated`, cli/report/host.py) the real figures measure the host, not the
scheduler: the row says so instead of judging the ratio.

Loads are per node, so a size keeps its meaning: `light` offers LIGHT_RPS_PER_NODE requests a
second per node, `high` HIGH_RPS_PER_NODE.
"""

from __future__ import annotations

import csv
import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from cli.experiment.spec import ExperimentSpec, scaled_nodes
from cli.report.summary import Summary
from daemons.core.errors import ConfigError
from daemons.loadgen.workload import from_dict as workload_from_dict

LIGHT_RPS_PER_NODE = 0.25
HIGH_RPS_PER_NODE = 1.0
LOADS = {"light": LIGHT_RPS_PER_NODE, "high": HIGH_RPS_PER_NODE}
TOLERANCE = 0.15
METRICS = ("p50_ttft", "p99_ttft", "p50_tpot", "p99_tpot", "cache_hit_rate", "cold_start_count",
           "avg_recovery_time")
COLUMNS = ("nodes", "load", "rps", "arm", "metric", "sim", "real", "ratio", "verdict")

Runner = Callable[[ExperimentSpec], list[Summary]]  # runs one spec, both arms: their summaries


@dataclass(frozen=True)
class Row:
    nodes: int
    load: str
    rps: float
    arm: str
    metric: str
    sim: float
    real: float
    ratio: float
    verdict: str  # within | outside | host saturated | only sim | only real | no value


def point_spec(base: ExperimentSpec, nodes: int, load: str, duration_s: float, engine: str) -> ExperimentSpec:
    """The experiment of one (size, load) point on one engine: one random node killed at 40 %."""
    if load not in LOADS:
        raise ConfigError(f"load {load!r} is unknown; use {' or '.join(LOADS)} (--loads)")
    rps = round(LOADS[load] * nodes, 3)
    workload = workload_from_dict({**base.workload.to_dict(), "duration_s": duration_s, "rps": rps})
    fault = f"{round(0.4 * duration_s, 1):g}:kill:random-node"
    return dataclasses.replace(base, name=f"validate_{nodes}n_{load}_{engine}", workload=workload,
                               nodes=scaled_nodes(base.nodes, nodes), faults=(fault,), engine=engine)


def compare(nodes: int, load: str, rps: float, sim: Summary, real: Summary) -> list[Row]:
    rows = []
    for metric in METRICS:
        s, r = float(getattr(sim, metric)), float(getattr(real, metric))
        ratio = s / r if r and not (math.isnan(s) or math.isnan(r)) else math.nan
        if real.host_saturated:
            verdict = "host saturated"
        elif math.isnan(s) != math.isnan(r):
            # One engine has the figure and the other not (a recovery one of them never saw):
            # a disagreement to show, not a missing value.
            verdict = "only real" if math.isnan(s) else "only sim"
        elif math.isnan(ratio):
            verdict = "no value"
        else:
            verdict = "within" if abs(ratio - 1.0) <= TOLERANCE else "outside"
        rows.append(Row(nodes, load, rps, real.scheduler_type, metric, s, r, ratio, verdict))
    return rows


def validate(base: ExperimentSpec, sizes: list[int], loads: list[str], duration_s: float, run: Runner,
             say: Callable[[str], None]) -> list[Row]:
    """Every (size, load) point on both engines; the comparison rows."""
    rows: list[Row] = []
    for nodes in sizes:
        for load in loads:
            specs = {engine: point_spec(base, nodes, load, duration_s, engine) for engine in ("sim", "real")}
            rps = specs["sim"].workload.rps
            say(f"validate: {nodes} nodes, {load} load ({rps:g} req/s): simulated, then real")
            sim = {s.scheduler_type: s for s in run(specs["sim"])}
            real = {s.scheduler_type: s for s in run(specs["real"])}
            for arm in base.schedulers:
                if arm in sim and arm in real:
                    rows += compare(nodes, load, rps, sim[arm], real[arm])
    return rows


def write_rows(path: Path, rows: list[Row]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(COLUMNS)
        for r in rows:
            writer.writerow([r.nodes, r.load, f"{r.rps:g}", r.arm, r.metric, _cell(r.sim), _cell(r.real),
                             _cell(r.ratio), r.verdict])
    return path


def format_rows(rows: list[Row]) -> str:
    lines = [f"{'nodes':>5} {'load':<5} {'arm':<11} {'metric':<18} {'sim':>10} {'real':>10} {'ratio':>6}  verdict"]
    for r in rows:
        lines.append(f"{r.nodes:>5} {r.load:<5} {r.arm:<11} {r.metric:<18} {_cell(r.sim):>10} {_cell(r.real):>10} "
                     f"{_cell(r.ratio, 2):>6}  {r.verdict}")
    judged = [r for r in rows if r.verdict in ("within", "outside")]
    within = sum(r.verdict == "within" for r in judged)
    lines.append(f"{within} of {len(judged)} judged rows within {TOLERANCE:.0%} of the real engine "
                 f"({len(rows) - len(judged)} not judged: host saturated, a value in one engine only, or none)")
    return "\n".join(lines) + "\n"


def _cell(value: float, digits: int = 4) -> str:
    if math.isnan(value):
        return ""
    return f"{value:.{digits}g}" if abs(value) < 1e4 else f"{value:.0f}"
