"""The simulator spaces out the cycle collector for one run and gives the process its
thresholds back afterwards, also when the run fails."""

from __future__ import annotations

import gc

import pytest

from daemons.sim.engine import SIM_GC_THRESHOLD, fewer_collections


def test_threshold_is_raised_during_the_run_and_restored_after() -> None:
    before = gc.get_threshold()
    with fewer_collections():
        assert gc.get_threshold()[0] == SIM_GC_THRESHOLD
        assert gc.get_threshold()[1:] == before[1:]
    assert gc.get_threshold() == before


def test_threshold_is_restored_when_the_run_raises() -> None:
    before = gc.get_threshold()
    with pytest.raises(RuntimeError), fewer_collections():
        raise RuntimeError("the simulation failed")
    assert gc.get_threshold() == before
