"""The node's side of failover (daemons/node/fencing.py), which the agent and the simulated node share."""

from __future__ import annotations

from daemons.node.fencing import PROBE_MAX_S, PROBE_MIN_S, EpochFence, probe_window, witness_vote


def test_the_fence_refuses_only_epochs_older_than_the_newest_seen() -> None:
    fence = EpochFence()
    assert fence.stale(1) is None and fence.learn(1)
    assert fence.learn(2) and not fence.learn(1) and fence.epoch == 2
    why = fence.stale(1)
    assert why is not None and "placed in epoch 1, but epoch 2 has begun" in why
    assert fence.stale(0) is None  # a coordinator without failover is never fenced
    assert fence.stale(2) is None and fence.stale(3) is None


def test_the_witness_bounds_its_probe_and_grants_only_on_silence() -> None:
    assert probe_window(0.9) == 0.9 and probe_window(0.0) == PROBE_MIN_S and probe_window(60.0) == PROBE_MAX_S
    assert witness_vote(True, "tcp://c", 0.9) == (False, "tcp://c answered")
    assert witness_vote(False, "tcp://c", 0.9) == (True, "tcp://c silent for 0.9 s")
