"""affinity-score: PROTO's rule as meant, without its herding and capacity bugs."""

from __future__ import annotations

from collections import Counter
from random import Random
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from daemons.policy import ClusterView, Decision, PlacementRequest, Refusal, with_placement
from daemons.policy.affinity import _est_wait, _reason, affinity_score, score
from daemons.policy.capacity import cold_nodes, holder_nodes, option_for, pick_min, refusal
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


# ----- the hot path's inlined scan decides as the plain rule does ---------------------------------
def reference(v: ClusterView, request: PlacementRequest, rng: Random) -> Decision | Refusal:
    """The rule written plainly (as before the holder scan was inlined): score every usable
    holder, add the nodes that could cold-start it when no holder scores >= 0, pick the best."""
    nodes = holder_nodes(v, request)
    scores = [score(n, True) for n in nodes]
    if not nodes or max(scores) < 0.0:
        cold = cold_nodes(v, request)
        nodes += cold
        scores += [score(n, False) for n in cold]
    if not nodes:
        return refusal(v, request)
    winner, best = pick_min(nodes, [-s for s in scores], rng)
    option = option_for(winner, request.model)
    return option.decide(_est_wait(option, request), _reason(option, -best))


holders_of = st.fixed_dictionaries({
    "state": st.sampled_from(["ready", "loading", "failed", "absent"]),
    # few distinct values, so that ties are common; 100 queued: score 0, the edge
    "queue": st.sampled_from([0, 0, 1, 99, 100, 101, 200]),
    "model_gib": st.sampled_from([0, 16]),  # 0 with 100 queued: a holder's score is exactly 0
    "used_gib": st.sampled_from([0, 0, 16, 79]),  # 79 of 80: a 16 GiB model does not fit
    "alive": st.booleans(),
})


@settings(max_examples=400)  # ~1 ms each
@given(st.lists(holders_of, min_size=0, max_size=7), st.frozensets(st.sampled_from("abcdefg"), max_size=2),
       st.integers(0, 3))
def test_property_the_inlined_scan_places_as_the_plain_rule(specs: list[dict[str, Any]], exclude: frozenset[str],
                                                             seed: int) -> None:
    nodes = []
    for name, spec in zip("abcdefg", specs, strict=False):
        loaded = {} if spec["state"] == "absent" else ready("m1", spec["model_gib"], state=spec["state"])
        nodes.append(node(name, loaded, queue=spec["queue"], alive=spec["alive"], extra_used_gib=spec["used_gib"]))
    v, request = view(*nodes), PlacementRequest("m1", 100, 50, exclude=exclude)
    fast_rng, plain_rng = Random(seed), Random(seed)
    for _ in range(3):  # and after placements, with the same random draws
        fast, plain = affinity_score(v, request, fast_rng), reference(v, request, plain_rng)
        assert fast == plain
        if not isinstance(fast, Decision):
            return
        v = with_placement(v, fast, "m1")


def test_a_holder_scoring_exactly_zero_still_beats_every_idle_node_without_the_model() -> None:
    # 1000 - 10 x 100 queued - 100 x 0 util = 0: non-holders (at most 0) are not even scored
    v = view(node("a", ready("m1", 0), queue=100), node("b"), node("c"))
    for seed in range(8):
        assert decide(v, seed).node == "a"
        assert affinity_score(v, PlacementRequest("m1", 100, 50), Random(seed)) == \
            reference(v, PlacementRequest("m1", 100, 50), Random(seed))


def test_ties_among_nodes_without_the_model_are_drawn_as_the_plain_rule_draws() -> None:
    # the one holder is 200 deep (a score far below 0): the idle nodes compete, tied at 0
    v = view(node("a", ready("m1"), queue=200), node("b"), node("c"), node("d", extra_used_gib=79), node("e"))
    request = PlacementRequest("m1", 100, 50, exclude=frozenset({"e"}))
    seen = set()
    for seed in range(16):
        d = affinity_score(v, request, Random(seed))
        assert d == reference(v, request, Random(seed))
        assert isinstance(d, Decision) and d.action == "COLD_START"
        seen.add(d.node)
    assert seen == {"b", "c"}  # d: no room; e: excluded; a: its score is far below 0
