"""The view: derived memory figures, indices, and the optimistic update."""

from __future__ import annotations

import dataclasses

from daemons.policy import LoadedModel, with_placement
from daemons.policy.view import Decision
from tests.policy.helpers import GIB, node, ready, view


def test_derived_memory_counts_idle_models_as_reclaimable() -> None:
    n = node("a", {**ready("m1", 16), **ready("m2", 16, running=1)}, total_gib=80)
    assert n.free_bytes == 48 * GIB
    assert n.reclaimable_bytes == 64 * GIB  # m1 is idle, m2 is running
    assert n.gpu_util == 0.4


def test_ordered_loads_count_as_used_memory_and_protect_models() -> None:
    n = dataclasses.replace(node("a", ready("m1", 16)), pending=2, pending_models=frozenset({"m1", "m2"}))
    assert n.free_bytes == (80 - 16 - 16) * GIB  # m2's load is ordered: its footprint is taken
    assert n.reclaimable_bytes == n.free_bytes  # m1 has requests on the way: not evictable
    assert n.has_model("m2") and not n.is_ready("m2")
    assert n.load == 2


def test_indices_cover_alive_nodes_only_but_know_dead_nodes_models() -> None:
    v = view(node("b", ready("m1")), node("a", ready("m1")), node("c", ready("m2"), alive=False,
                                                                  cat={}))
    assert v.holders == {"m1": ("a", "b")}
    assert v.order == ("a", "b")
    assert "m2" in v.catalog.known
    assert v.catalog.listing["m3"] == ("a", "b")


def test_failed_and_evicting_models_are_not_holders() -> None:
    v = view(node("a", ready("m1", state="failed")), node("b", ready("m1", state="evicting")),
             node("c", ready("m1", state="loading")))
    assert v.holders["m1"] == ("c",)


def test_with_placement_adds_pending_and_a_holder_without_touching_the_old_view() -> None:
    v = view(node("a"), node("b", ready("m1")))
    after = with_placement(v, Decision("a", "tcp://a:5560", "COLD_START", 5.0, "x"), "m1")
    assert after.nodes["a"].pending == 1 and after.nodes["a"].has_model("m1")
    assert after.holders["m1"] == ("a", "b")
    assert after.cursor == 1
    assert v.nodes["a"].pending == 0 and v.holders["m1"] == ("b",)
    again = with_placement(after, Decision("a", "tcp://a:5560", "COLD_START", 5.0, "x"), "m1")
    assert again.nodes["a"].pending == 2 and again.holders["m1"] == ("a", "b")


def test_with_placement_on_an_unknown_node_only_moves_the_cursor() -> None:
    v = view(node("a"))
    assert with_placement(v, Decision("zz", "", "SERVE", 0, ""), "m1").nodes == v.nodes


def test_busy_means_running_queued_or_loading() -> None:
    assert LoadedModel("m", "ready", running=1).busy
    assert LoadedModel("m", "ready", queue_depth=1).busy
    assert LoadedModel("m", "loading").busy
    assert not LoadedModel("m", "ready").busy


def test_one_more_pending_placement_equals_the_node_built_afresh() -> None:
    # with_pending copies a node whose model is pending already instead of deriving it again:
    # the copy must be the node __init__ would build, derived fields included.
    from daemons.policy.view import CatalogItem, LoadedModel, NodeView

    node = NodeView("n0", "tcp://x:1", True, {"a": LoadedModel("a", "ready", 1, 1, 10), "b": LoadedModel("b", "ready")},
                    queue_depth=2, in_flight=3, memory_total=100, memory_used=40,
                    catalog={"c": CatalogItem("c", 30, 1.0)}, waiting_by_priority={0: 1})
    once = node.with_pending("c")
    twice = once.with_pending("c")
    fresh = NodeView("n0", "tcp://x:1", True, node.models, 2, 3, 2, frozenset({"c"}), 100, 40, node.catalog, {0: 1})
    assert twice == fresh
    assert (twice.load, twice.free_bytes, twice.reclaimable_bytes, twice.gpu_util) == \
        (fresh.load, fresh.free_bytes, fresh.reclaimable_bytes, fresh.gpu_util) == (5, 30, 30, 0.4)
    assert once.load == 4 and node.load == 3  # the originals are untouched
