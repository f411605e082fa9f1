"""The host under a run: its CPU each second (host.csv) and whether it was saturated.

`schedctl experiment run` samples the machine it runs on once a second
(cli/experiment/host_sampler.py) and writes host.csv into the results directory, times in
seconds from the run's t = 0 like nodes.csv, every utilisation a fraction 0..1 of the
*whole host* (all cores):

    t_s           seconds from t = 0
    host_cpu      busy fraction of every CPU of the host (psutil.cpu_percent / 100)
    schedctl_cpu  CPU time of the run's process tree (the runner — load generator,
                  collector — and every process it started: coordinators, nodes, their
                  engines) over the second, divided by the host's CPU count
    daemons_cpu   the same for the started processes only (the runner left out)
    processes     how many processes the tree held

A run is *host-saturated* when host_cpu was above SATURATED_CPU in more than
SATURATED_FRACTION of its sampled seconds: the host, not the scheduler, then set the pace
(e.g. 2 cores shared by the emulated cluster and the load generator), and latencies
measure the host. A run without host.csv (older runs) has NaN figures and no verdict.
"""

from __future__ import annotations

import csv
import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from daemons.core.errors import ConfigError

HOST_CSV = "host.csv"
HOST_COLUMNS = ("t_s", "host_cpu", "schedctl_cpu", "daemons_cpu", "processes")
# Above 90 % busy the run queue grows and every process waits for a core: a second at that
# level measures contention. More than 5 % of the run so spent (15 s of 300 s) is more
# than a start-up blip and colours the latency tails.
SATURATED_CPU = 0.90
SATURATED_FRACTION = 0.05

NAN = math.nan


@dataclass(frozen=True)
class HostSample:
    t_s: float
    host_cpu: float
    schedctl_cpu: float


@dataclass(frozen=True)
class HostFigures:
    """The summary's host columns."""

    host_cpu_p50: float
    host_cpu_max: float
    schedctl_cpu_p50: float
    schedctl_cpu_max: float
    host_saturated_fraction: float  # of the sampled seconds with host_cpu > SATURATED_CPU
    host_saturated: bool | None  # None: not measured


def saturated_fraction(host_cpu: Sequence[float]) -> float:
    """The fraction of seconds with host CPU strictly above SATURATED_CPU; NaN without any."""
    values = [v for v in host_cpu if not math.isnan(v)]
    return sum(1 for v in values if v > SATURATED_CPU) / len(values) if values else NAN


def is_saturated(fraction: float) -> bool | None:
    """More than SATURATED_FRACTION of the seconds saturated; None when not measured."""
    return None if math.isnan(fraction) else fraction > SATURATED_FRACTION


def host_figures(samples: Sequence[HostSample]) -> HostFigures:
    host = [s.host_cpu for s in samples if not math.isnan(s.host_cpu)]
    ours = [s.schedctl_cpu for s in samples if not math.isnan(s.schedctl_cpu)]
    fraction = saturated_fraction(host)
    return HostFigures(_p50(host), max(host, default=NAN), _p50(ours), max(ours, default=NAN),
                       fraction, is_saturated(fraction))


def _p50(values: Sequence[float]) -> float:
    return float(np.percentile(values, 50, method="linear")) if values else NAN


def read_host(run_dir: Path) -> list[HostSample]:
    """host.csv's rows; [] when the run has none (it predates the sampler)."""
    path = run_dir / HOST_CSV
    if not path.is_file():
        return []
    with path.open(newline="", encoding="utf-8") as fh:
        return [_sample(row, path, i) for i, row in enumerate(csv.DictReader(fh), start=2)]


def _sample(row: dict[str, str], path: Path, line: int) -> HostSample:
    try:
        return HostSample(float(row["t_s"]), _cell(row.get("host_cpu")), _cell(row.get("schedctl_cpu")))
    except (KeyError, ValueError, TypeError):
        raise ConfigError(f"{path}:{line}: t_s, host_cpu and schedctl_cpu must be numbers; it should be written "
                          "by `schedctl experiment run`: re-run the experiment or delete the file") from None


def _cell(text: str | None) -> float:
    return float(text) if text not in (None, "") else NAN


def host_columns(run_dir: Path) -> dict[str, Any]:
    """The summary's host columns for a results directory (Summary's keyword arguments)."""
    return dataclasses.asdict(host_figures(read_host(run_dir)))


def saturation_warning(fraction: float, saturated: bool | None) -> str:
    """The one-line warning for a host-saturated run; "" when it was not (or not measured)."""
    if not saturated:
        return ""
    return (f"the host's CPU was above {SATURATED_CPU:.0%} for {fraction:.0%} of the run's seconds "
            f"(more than {SATURATED_FRACTION:.0%}): the figures measure the host, not the scheduler")
