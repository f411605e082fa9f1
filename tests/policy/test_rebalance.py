"""The periodic rebalancer (Llumnix pair migration), on hand-made views."""

from __future__ import annotations

from daemons.policy.rebalance import Move, rebalance
from tests.policy.helpers import node, ready, view


def test_most_loaded_pairs_with_least_loaded_when_the_move_narrows_the_gap() -> None:
    v = view(node("a", ready("m1", running=6), in_flight=6), node("b", ready("m1", running=1), in_flight=1),
             node("c", ready("m1", running=3), in_flight=3), node("d", ready("m1", running=3), in_flight=3))
    assert rebalance(v) == [Move("a", "tcp://a:5560", "b", "tcp://b:5560", "m1", "rebalance: load 6 vs 1")]


def test_no_move_that_would_only_swap_the_imbalance_or_overload_the_destination() -> None:
    gap_two = view(node("a", ready("m1", running=3), in_flight=3), node("b", ready("m1", running=1), in_flight=1))
    assert rebalance(gap_two) == []  # after the move b would hold 2 and a 2: 0 is no longer > 0
    full = view(node("a", ready("m1", running=12), in_flight=12), node("b", ready("m1", running=7), in_flight=7))
    assert rebalance(full, threshold=7) == [] and len(rebalance(full, threshold=8)) == 1


def test_the_destination_must_have_the_model_ready_and_busy_nodes_sit_out() -> None:
    other = view(node("a", ready("m1", running=6), in_flight=6), node("b", ready("m2"), in_flight=0))
    assert rebalance(other) == []
    loading = view(node("a", ready("m1", running=6), in_flight=6), node("b", ready("m1", state="loading")))
    assert rebalance(loading) == []
    v = view(node("a", ready("m1", running=6), in_flight=6), node("b", ready("m1")),
             node("c", ready("m1", running=6), in_flight=6))
    assert [m.source for m in rebalance(v)] == ["a"]
    assert [(m.source, m.destination) for m in rebalance(v, busy={"a"})] == [("c", "b")]


def test_dead_nodes_are_neither_sources_nor_destinations() -> None:
    v = view(node("a", ready("m1", running=6), in_flight=6), node("b", ready("m1"), alive=False))
    assert rebalance(v) == []
