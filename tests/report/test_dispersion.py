"""Dispersion across nodes: CV, Jain's index and max/mean against hand-computed values."""

from __future__ import annotations

import math

import pytest

from cli.report.dispersion import (
    coefficient_of_variation,
    dispersion_columns,
    jain_index,
    max_over_mean,
    per_second,
    time_average,
)
from daemons.rundir import NodeSample

approx = pytest.approx


def test_equal_loads_are_perfectly_even() -> None:
    assert coefficient_of_variation([2, 2, 2, 2]) == 0
    assert jain_index([2, 2, 2, 2]) == 1
    assert max_over_mean([2, 2, 2, 2]) == 1


@pytest.mark.parametrize("n", [2, 4, 10])
def test_one_loaded_node_among_n(n: int) -> None:
    loads = [5.0] + [0.0] * (n - 1)
    assert jain_index(loads) == approx(1 / n)
    assert max_over_mean(loads) == approx(n)
    # mean 5/n; population variance ((5 - 5/n)^2 + (n-1)(5/n)^2) / n = 25 (n-1) / n^2
    assert coefficient_of_variation(loads) == approx(math.sqrt(n - 1))


def test_two_nodes_one_and_three() -> None:
    # mean 2, population sigma 1; (1+3)^2 / (2 * (1+9)) = 0.8; 3 / 2
    assert coefficient_of_variation([1, 3]) == 0.5
    assert jain_index([1, 3]) == 0.8
    assert max_over_mean([1, 3]) == 1.5


@pytest.mark.parametrize("values", [[], [0, 0, 0]])
def test_nothing_to_distribute_is_undefined(values: list[float]) -> None:
    for f in (coefficient_of_variation, jain_index, max_over_mean):
        assert math.isnan(f(values))


def test_one_node_is_trivially_even() -> None:
    assert (coefficient_of_variation([7]), jain_index([7]), max_over_mean([7])) == (0, 1, 1)


def sample(t: float, node: str, queue: float, alive: bool = True, mem: float = 0.5,
           gpu: float = math.nan) -> NodeSample:
    return NodeSample(t_s=t, node=node, memory_utilization=mem, queue_depth=queue, alive=alive, gpu_utilization=gpu)


# t=0 idle (left out); t=1 queues 1 and 3; t=2 queues 2 and 2, node c dead with 9 (left out).
TICKS = [
    [sample(0, "a", 0), sample(0, "b", 0)],
    [sample(1, "a", 1, gpu=0.2), sample(1, "b", 3, gpu=0.6)],
    [sample(2, "a", 2, gpu=0.5), sample(2, "b", 2), sample(2, "c", 9, alive=False, mem=0.0)],
]


def test_per_second_skips_dead_nodes_and_idle_seconds() -> None:
    seconds = per_second(TICKS, lambda n: n.queue_depth)
    assert [s.t_s for s in seconds] == [0, 1, 2]
    assert math.isnan(seconds[0].jain) and math.isnan(seconds[0].cv)
    assert (seconds[1].cv, seconds[1].jain, seconds[1].max_over_mean) == (0.5, 0.8, 1.5)
    assert (seconds[2].cv, seconds[2].jain, seconds[2].max_over_mean) == (0, 1, 1)
    d = time_average(seconds)
    assert (d.cv, d.jain, d.max_over_mean, d.seconds) == (0.25, 0.9, 1.25, 2)


def test_summary_columns() -> None:
    cols = dispersion_columns(TICKS)
    assert (cols["queue_cv"], cols["queue_jain"], cols["queue_max_over_mean"]) == (0.25, 0.9, 1.25)
    assert cols["queue_dispersion_seconds"] == 2
    # memory 0.5 on every alive node each second: even throughout, 3 seconds measured
    assert (cols["mem_util_cv"], cols["mem_util_jain"], cols["mem_util_dispersion_seconds"]) == (0, 1, 3)
    # compute: t=1 0.2 and 0.6 (CV .5, Jain .8, max/mean 1.5); t=2 only node a measured (trivially even)
    assert cols["compute_util_jain"] == approx(0.9) and cols["compute_util_dispersion_seconds"] == 2
    assert time_average([]).seconds == 0 and math.isnan(time_average([]).jain)
