"""Whether the host under a run was saturated, and the summary's host CPU figures.

`schedctl experiment run` samples the machine it runs on once a second into host.csv
(its columns: daemons/rundir/hosts.py), every utilisation a fraction 0..1 of the whole
host. A run is *host-saturated* when host_cpu was above SATURATED_CPU in more than
SATURATED_FRACTION of its sampled seconds: the host, not the scheduler, then set the pace
(e.g. 2 cores shared by the emulated cluster and the load generator), and latencies
measure the host. A run without host.csv (older runs) has NaN figures and no verdict.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from daemons.rundir import HostSample

# Above 90 % busy the run queue grows and every process waits for a core: a second at that
# level measures contention. More than 5 % of the run so spent (15 s of 300 s) is more
# than a start-up blip and colours the latency tails.
SATURATED_CPU = 0.90
SATURATED_FRACTION = 0.05

NAN = math.nan


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


def host_columns(samples: Sequence[HostSample]) -> dict[str, Any]:
    """The summary's host columns for a run's host samples (Summary's keyword arguments)."""
    return dataclasses.asdict(host_figures(samples))


def saturation_warning(fraction: float, saturated: bool | None) -> str:
    """The one-line warning for a host-saturated run; "" when it was not (or not measured)."""
    if not saturated:
        return ""
    return (f"the host's CPU was above {SATURATED_CPU:.0%} for {fraction:.0%} of the run's seconds "
            f"(more than {SATURATED_FRACTION:.0%}): the figures measure the host, not the scheduler")
