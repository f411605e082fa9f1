"""The node's learning ledger (daemons/node/learning.py): what it publishes and which events it
says, fed as the node agent feeds it. tests/coordinator/test_learning.py runs it in real nodes."""

from __future__ import annotations

import pytest

from daemons.node.learning import LoadWatcher, NodeLearning
from daemons.policy.prewarm import PrewarmSettings


def test_served_requests_and_loads_become_published_estimates() -> None:
    learning = NodeLearning(PrewarmSettings())
    learning.served("m", {"load_wait_s": 3.0, "ttft_s": 3.2, "total_s": 4.2}, tokens=11)
    learning.loaded("m", 2.5)
    (est,) = learning.estimates()
    assert (est.model, est.requests, est.loads) == ("m", 1, 1)
    assert est.ttft_s == pytest.approx(0.2) and est.tpot_s == pytest.approx(0.1) and est.load_s == 2.5


def test_eviction_order_is_lru_without_prewarming_and_least_expected_use_with_it() -> None:
    off, on = NodeLearning(PrewarmSettings()), NodeLearning(PrewarmSettings(enabled=True))
    for learning in (off, on):
        for t in (0.1, 0.2, 0.3, 1.1, 1.2, 1.3):
            learning.arrived("hot", t)
    # "hot" was used longest ago but is expected to be used again: only pre-warming keeps it.
    assert min(["hot", "cold"], key=lambda m: off.victim_key(m, {"hot": 1.0, "cold": 5.0}[m], 2.0)) == "hot"
    assert min(["hot", "cold"], key=lambda m: on.victim_key(m, {"hot": 1.0, "cold": 5.0}[m], 2.0)) == "cold"


def test_a_prewarm_counts_one_hit_or_one_unused_and_evictions_are_events() -> None:
    said: list[tuple[str, str]] = []
    learning = NodeLearning(PrewarmSettings(enabled=True))
    watcher = LoadWatcher(learning, lambda kind, detail: said.append((kind, detail)), lambda: 0.0)
    learning.prewarm_started("a")
    assert learning.first_use("a", ready=True) and not learning.first_use("a", ready=True)  # once
    learning.prewarm_started("b")
    watcher.evicted("b")
    assert [k for k, _ in said] == ["evict", "prewarm_unused"] and "why=least_expected_use" in said[0][1]
    assert not learning.first_use("c", ready=True)  # never pre-warmed


def test_a_prewarmed_model_is_expected_at_its_forecast_until_the_horizon() -> None:
    learning = NodeLearning(PrewarmSettings(enabled=True))  # horizon 5 s
    learning.prewarm_started("warm", forecast_rps=3.0, now=10.0)
    # No request for it reached this node yet: without the promise it would be the first victim.
    assert learning.victim_key("warm", 0.0, 12.0) > learning.victim_key("other", 1.0, 12.0)
    assert learning.victim_key("warm", 0.0, 16.0) < learning.victim_key("other", 1.0, 16.0)  # horizon passed
