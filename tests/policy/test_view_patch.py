"""The patched view (`with_node`, `with_placement`) equals a full rebuild after any sequence
of node updates, deaths, catalog changes and placements: the coordinator keeps its view by
patching, and the policies must see exactly what `ClusterView.build` would give them."""

from __future__ import annotations

import dataclasses

from hypothesis import given, settings
from hypothesis import strategies as st

from daemons.policy import CatalogItem, ClusterView, Decision, LoadedModel, NodeView, with_placement
from daemons.policy.view import rebuilt_view, with_node

NAMES = ("a", "b", "c", "d")
MODELS = ("m1", "m2", "m3")
STATES = ("ready", "loading", "failed", "evicting")

loaded = st.dictionaries(st.sampled_from(MODELS), st.sampled_from(STATES), max_size=3)
catalogs = st.dictionaries(st.sampled_from(MODELS), st.sampled_from((1.0, 2.0, 5.0)), max_size=3)
node_updates = st.tuples(st.just("node"), st.sampled_from(NAMES), st.booleans(), loaded, catalogs,
                         st.frozensets(st.sampled_from(MODELS), max_size=2))
placements = st.tuples(st.just("place"), st.sampled_from(NAMES), st.sampled_from(MODELS))
steps = st.lists(st.one_of(node_updates, placements), max_size=30)


def make_node(name: str, alive: bool, models: dict[str, str], cat: dict[str, float],
              pending: frozenset[str]) -> NodeView:
    return NodeView(name, f"tcp://{name}", alive, {m: LoadedModel(m, s, memory_bytes=1) for m, s in models.items()},
                    pending=len(pending), pending_models=pending, memory_total=10,
                    catalog={m: CatalogItem(m, 1, load_s) for m, load_s in cat.items()})


def rebuilt(view: ClusterView) -> ClusterView:
    return ClusterView.build(view.nodes.values(), view.cursor)


@settings(max_examples=300, deadline=None)
@given(steps)
def test_patched_view_equals_a_full_rebuild(ops: list[tuple[object, ...]]) -> None:
    view = ClusterView.build([])
    for op in ops:
        if op[0] == "node":
            _, name, alive, models, cat, pending = op
            old = view.nodes.get(str(name))
            new = make_node(str(name), bool(alive), dict(models), dict(cat), frozenset(pending))  # type: ignore[call-overload]
            # The hint is honest: False only when catalog and liveness are unchanged.
            same = old is not None and old.alive == new.alive and old.catalog == new.catalog
            view = with_node(view, new, catalog_changed=not same)
        else:
            _, name, model = op
            view = with_placement(view, Decision(str(name), "", "SERVE", 0.0, ""), str(model))
        assert view == rebuilt(view)


def test_a_dead_node_leaves_the_listing_and_the_fastest_load_time() -> None:
    fast = make_node("a", True, {}, {"m1": 1.0}, frozenset())
    slow = make_node("b", True, {}, {"m1": 5.0}, frozenset())
    view = with_node(with_node(ClusterView.build([]), fast), slow)
    assert view.catalog.fastest_load_s["m1"] == 1.0
    view = with_node(view, make_node("a", False, {}, {"m1": 1.0}, frozenset()))
    assert view.catalog.listing["m1"] == ("b",)
    assert view.catalog.fastest_load_s["m1"] == 5.0
    assert view.order == ("b",)
    assert "m1" in view.catalog.known  # a dead node's catalog is still known


@given(st.sampled_from(NAMES), st.booleans(), loaded, catalogs, st.frozensets(st.sampled_from(MODELS), max_size=2),
       st.sampled_from(MODELS), st.integers(0, 5), st.integers(0, 5))
def test_one_more_pending_equals_the_node_built_afresh(name: str, alive: bool, models: dict[str, str],
                                                       cat: dict[str, float], pending: frozenset[str], model: str,
                                                       queue: int, in_flight: int) -> None:
    # with_pending copies a node whose model is already pending instead of deriving it again
    node = dataclasses.replace(make_node(name, alive, models, cat, pending), queue_depth=queue, in_flight=in_flight)
    more = node.with_pending(model)
    fresh = dataclasses.replace(node, pending=node.pending + 1, pending_models=node.pending_models | {model})
    assert more == fresh
    assert all(getattr(more, f.name) == getattr(fresh, f.name) for f in dataclasses.fields(NodeView))


# A peer's successive views (rebuilt_view): members come, go and change, most keep their
# NodeView object; the result must be the full build of the new list, in its order.
member_steps = st.lists(st.tuples(st.sampled_from((*NAMES, "e", "f")), st.booleans(), loaded, catalogs,
                                  st.frozensets(st.sampled_from(MODELS), max_size=2), st.booleans()), max_size=12)


@settings(max_examples=300, deadline=None)
@given(st.lists(member_steps, max_size=8), st.randoms(use_true_random=False), st.sampled_from((0.25, 1.0)))
def test_a_rebuilt_view_equals_a_full_build_in_the_same_order(rounds: list[list[tuple[object, ...]]],
                                                             rng: object, most: float) -> None:
    members: dict[str, NodeView] = {}
    view: ClusterView | None = None
    for changes in rounds:
        for name, alive, models, cat, pending, leave in changes:
            if leave:
                members.pop(str(name), None)
            else:
                members[str(name)] = make_node(str(name), bool(alive), dict(models), dict(cat),  # type: ignore[call-overload]
                                               frozenset(pending))  # type: ignore[arg-type]
        nodes = list(members.values())
        rng.shuffle(nodes)  # type: ignore[attr-defined]
        view = rebuilt_view(view, nodes, most)
        built = ClusterView.build(nodes)
        assert view == built
        assert list(view.nodes) == [n.name for n in nodes]


def test_a_rebuilt_view_patches_only_the_nodes_that_changed() -> None:
    nodes = [make_node(n, True, {"m1": "ready"}, {"m1": 1.0}, frozenset()) for n in "abcdefgh"]
    first = rebuilt_view(None, nodes)
    busy = dataclasses.replace(nodes[2], models={"m1": LoadedModel("m1", "ready", 3, 1, 1)})
    again = rebuilt_view(first, [*nodes[:2], busy, *nodes[3:]])
    assert again.nodes["c"] is busy
    assert again.holders is first.holders  # c held m1 before and does still: no holder list copied
    assert again == ClusterView.build([*nodes[:2], busy, *nodes[3:]])
