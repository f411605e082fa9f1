"""`worth_waiting`: which refused requests a scheduler should hold rather than refuse."""

from __future__ import annotations

from random import Random

from daemons.policy import PlacementRequest, Refusal, get_policy
from daemons.policy.capacity import worth_waiting
from tests.policy.helpers import node, ready, view


def test_busy_memory_is_worth_waiting_for_and_the_policy_refuses_now() -> None:
    v = view(node("a", ready("m1", running=1), total_gib=24))  # m2 (16 GiB) fits once m1 is idle
    request = PlacementRequest("m2")
    assert isinstance(get_policy("affinity-score")(v, request, Random(0)), Refusal)
    assert worth_waiting(v, request)


def test_a_model_too_big_for_every_live_node_is_not() -> None:
    assert not worth_waiting(view(node("a", total_gib=8)), PlacementRequest("m1"))


def test_excluded_nodes_do_not_count_but_a_cluster_with_nobody_alive_does() -> None:
    v = view(node("a", ready("m1", running=1), total_gib=24), node("b", alive=False))
    assert not worth_waiting(v, PlacementRequest("m2", exclude=frozenset({"a"})))
    assert worth_waiting(view(node("a", alive=False)), PlacementRequest("m2"))


def test_an_unknown_model_is_not() -> None:
    assert not worth_waiting(view(node("a")), PlacementRequest("nope"))
