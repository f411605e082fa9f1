"""How evenly load is spread over the nodes: per second across nodes, then averaged over time.

For each collector tick (one sample per node, about a second apart: summary.collector_ticks)
and each quantity — queue depth, GPU memory utilisation, GPU compute utilisation — the
values of the nodes *alive* in that tick (a dead node cannot take load, and its zeros would
read as an idle node) with a value (NaN = not measured) are reduced to three figures:

- coefficient of variation  CV = σ / μ, σ the *population* standard deviation (ddof 0:
  the nodes are the whole cluster, not a sample of it). 0 when every node carries the same;
  grows as one node carries more than the rest (√(n − 1) when one node carries everything);
- Jain's fairness index  J = (Σx)² / (n · Σx²) (R. Jain, D. Chiu, W. Hawe, "A Quantitative
  Measure of Fairness and Discrimination for Resource Allocation in Shared Computer
  Systems", DEC-TR-301, 1984). 1 when every node carries the same, 1/n when one node
  carries everything; higher is more even;
- max / mean  (the peak-to-average ratio): 1 when even, n when one node carries everything.

The values must be non-negative (they are loads). A second in which every node's value is
0 (an idle cluster) has nothing to distribute: the three figures are 0/0 there, so that
second is NaN and left out of the time average rather than counted as perfectly even,
which would make an arm look fairer merely for being idle more often. `*_seconds` counts
the seconds that entered the average. A second with one node is trivially even (CV 0,
J 1, max/mean 1).

The time average of each figure is the mean over the ticks where it is defined (ticks are
one second apart, so this is the time average); NaN when there is none.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from daemons.rundir import NodeSample

NAN = math.nan


def coefficient_of_variation(values: Iterable[float]) -> float:
    """σ / μ with the population σ; NaN for no values or an all-zero set."""
    arr = np.asarray(list(values), dtype=float)
    if arr.size == 0 or arr.sum() == 0:
        return NAN
    return float(arr.std() / arr.mean())


def jain_index(values: Iterable[float]) -> float:
    """(Σx)² / (n · Σx²), in [1/n, 1]; NaN for no values or an all-zero set."""
    arr = np.asarray(list(values), dtype=float)
    squares = float((arr * arr).sum())
    if arr.size == 0 or squares == 0:
        return NAN
    return float(arr.sum() ** 2 / (arr.size * squares))


def max_over_mean(values: Iterable[float]) -> float:
    """max / mean, in [1, n]; NaN for no values or an all-zero set."""
    arr = np.asarray(list(values), dtype=float)
    if arr.size == 0 or arr.sum() == 0:
        return NAN
    return float(arr.max() / arr.mean())


@dataclass(frozen=True)
class Dispersion:
    """One quantity's spread over the nodes, averaged over the seconds where it is defined."""

    cv: float
    jain: float
    max_over_mean: float
    seconds: int  # ticks with at least one non-zero value: the ones averaged


@dataclass(frozen=True)
class SecondDispersion:
    """One tick's spread of one quantity over the alive nodes (NaN: all zero or no value)."""

    t_s: float
    cv: float
    jain: float
    max_over_mean: float


Quantity = Callable[[NodeSample], float]

# The quantities compared across nodes, by the prefix of their summary columns.
QUANTITIES: dict[str, Quantity] = {
    "queue": lambda n: n.queue_depth,
    "mem_util": lambda n: n.memory_utilization,
    "compute_util": lambda n: n.gpu_utilization,
}


def per_second(ticks: Sequence[Sequence[NodeSample]], quantity: Quantity) -> list[SecondDispersion]:
    """Each tick's CV, Jain index and max/mean of `quantity` over its alive nodes with a value."""
    out = []
    for tick in ticks:
        values = [v for v in (quantity(n) for n in tick if n.alive) if not math.isnan(v)]
        out.append(SecondDispersion(tick[0].t_s if tick else NAN, coefficient_of_variation(values),
                                    jain_index(values), max_over_mean(values)))
    return out


def time_average(seconds: Sequence[SecondDispersion]) -> Dispersion:
    """The mean of each figure over the seconds where it is defined."""
    defined = [s for s in seconds if not math.isnan(s.jain)]
    if not defined:
        return Dispersion(NAN, NAN, NAN, 0)
    return Dispersion(float(np.mean([s.cv for s in defined])), float(np.mean([s.jain for s in defined])),
                      float(np.mean([s.max_over_mean for s in defined])), len(defined))


def dispersion_columns(ticks: Sequence[Sequence[NodeSample]]) -> dict[str, Any]:
    """The summary columns `<quantity>_cv`, `_jain`, `_max_over_mean`, `_dispersion_seconds`
    (Any: they are Summary's keyword arguments, a float or an int each)."""
    out: dict[str, Any] = {}
    for prefix, quantity in QUANTITIES.items():
        d = time_average(per_second(ticks, quantity))
        out.update({f"{prefix}_cv": d.cv, f"{prefix}_jain": d.jain, f"{prefix}_max_over_mean": d.max_over_mean,
                    f"{prefix}_dispersion_seconds": d.seconds})
    return out
