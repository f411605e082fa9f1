"""affinity-score: PROTO's rule as meant, without its herding and capacity bugs."""

from __future__ import annotations

from collections import Counter
from random import Random

from daemons.policy import ClusterView, Decision, PlacementRequest, with_placement
from daemons.policy.affinity import affinity_score
from tests.policy.helpers import node, ready, view


def decide(v: ClusterView, seed: int = 0) -> Decision:
    result = affinity_score(v, PlacementRequest("m1", 100, 50), Random(seed))
    assert isinstance(result, Decision)
    return result


def test_serves_where_the_model_is_loaded() -> None:
    d = decide(view(node("a"), node("b", ready("m1")), node("c")))
    assert (d.node, d.action) == ("b", "SERVE")
    assert "affinity score" in d.reason and d.est_wait_s == 0.0


def test_prefers_the_holder_with_the_shorter_queue() -> None:
    d = decide(view(node("a", ready("m1"), queue=5), node("b", ready("m1"), queue=2)))
    assert d.node == "b"


def test_cold_start_on_the_least_loaded_node_that_can_hold_it() -> None:
    d = decide(view(node("a", queue=3), node("b", queue=1), node("c", queue=0, extra_used_gib=70)))
    assert (d.node, d.action) == ("b", "COLD_START")
    assert d.est_wait_s == 0.5 + 5.0


def test_a_holder_a_hundred_deep_loses_to_an_idle_node() -> None:
    # The prototype split holders first, so the +1000 never mattered; as meant, it does.
    d = decide(view(node("a", ready("m1"), queue=110), node("b")))
    assert (d.node, d.action) == ("b", "COLD_START")
    d = decide(view(node("a", ready("m1"), queue=90), node("b")))
    assert (d.node, d.action) == ("a", "SERVE")


def test_ties_are_broken_at_random() -> None:
    v = view(*(node(f"n{i}", ready("m1")) for i in range(4)))
    assert {decide(v, seed).node for seed in range(40)} == {"n0", "n1", "n2", "n3"}


def test_a_burst_against_stale_state_spreads_over_the_holders() -> None:
    # State is never refreshed during the burst; only the caller's optimistic update moves.
    v = view(*(node(f"n{i}", ready("m1")) for i in range(4)), node("cold"))
    rng = Random(7)
    counts: Counter[str] = Counter()
    for _ in range(100):
        d = affinity_score(v, PlacementRequest("m1", 100, 50), rng)
        assert isinstance(d, Decision)
        counts[d.node] += 1
        v = with_placement(v, d, "m1")
    assert set(counts) == {"n0", "n1", "n2", "n3"}
    assert max(counts.values()) - min(counts.values()) <= 1


def test_a_burst_of_cold_starts_reuses_the_ordered_load() -> None:
    v = view(node("a"), node("b"), node("c"))
    first = decide(v)
    v = with_placement(v, first, "m1")
    second = decide(v, seed=1)
    assert second.node == first.node and second.action == "COLD_START"
