"""round-robin, random, least-loaded."""

from __future__ import annotations

from collections import Counter
from random import Random

from daemons.policy import Decision, PlacementRequest, with_placement
from daemons.policy.baseline import least_loaded, random_choice, round_robin
from tests.policy.helpers import node, ready, view

REQ = PlacementRequest("m1", 100, 50)


def test_round_robin_cycles_in_name_order_from_the_cursor() -> None:
    v = view(node("c"), node("a", ready("m1")), node("b"))
    names = []
    for _ in range(6):
        d = round_robin(v, REQ, Random(0))
        assert isinstance(d, Decision)
        names.append(d.node)
        v = with_placement(v, d, "m1")
    assert names == ["a", "b", "c", "a", "b", "c"]


def test_round_robin_skips_nodes_that_cannot_take_the_model() -> None:
    v = view(node("a"), node("b", extra_used_gib=75), node("c"), cursor=1)
    d = round_robin(v, REQ, Random(0))
    assert isinstance(d, Decision) and d.node == "c"


def test_random_covers_the_cluster_and_is_seeded() -> None:
    v = view(*(node(f"n{i}") for i in range(5)))
    rng = Random(1)
    counts = Counter(d.node for d in (random_choice(v, REQ, rng) for _ in range(200))
                     if isinstance(d, Decision))
    assert set(counts) == {f"n{i}" for i in range(5)} and min(counts.values()) > 20


def test_random_finds_the_one_node_that_fits_among_many() -> None:
    full = [node(f"f{i}", extra_used_gib=79) for i in range(30)]
    v = view(*full, node("ok"))
    for seed in range(10):
        d = random_choice(v, REQ, Random(seed))
        assert isinstance(d, Decision) and d.node == "ok"


def test_least_loaded_prefers_holders_then_the_shortest_queue() -> None:
    v = view(node("a", ready("m1"), queue=4), node("b", ready("m1"), queue=1, in_flight=2), node("c"))
    d = least_loaded(v, REQ, Random(0))
    assert isinstance(d, Decision) and (d.node, d.action) == ("b", "SERVE")


def test_least_loaded_counts_pending_placements() -> None:
    v = view(node("a", ready("m1"), queue=1), node("b", ready("m1"), queue=0, pending=3))
    d = least_loaded(v, REQ, Random(0))
    assert isinstance(d, Decision) and d.node == "a"


def test_least_loaded_cold_starts_on_the_emptiest_node_without_holders() -> None:
    v = view(node("a", queue=2), node("b", queue=0), node("c", queue=5))
    d = least_loaded(v, REQ, Random(0))
    assert isinstance(d, Decision) and (d.node, d.action) == ("b", "COLD_START")
