"""SentPlacements.by_node (a whole view's pending at once) answers what models() answers for
each node, and keeps answering the same afterwards: settled nodes are forgotten, not lost."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from daemons.node.gossip_mode import SETTLE_S, SentPlacements

sends = st.lists(st.tuples(st.sampled_from("abc"), st.sampled_from(("m1", "m2")),
                           st.floats(0.0, 3 * SETTLE_S)), max_size=20)


@settings(max_examples=200, deadline=None)
@given(sends, st.lists(st.floats(0.0, 4 * SETTLE_S), min_size=1, max_size=4))
def test_by_node_is_models_of_every_node(sent: list[tuple[str, str, float]], asks: list[float]) -> None:
    by_node, one_by_one = SentPlacements(), SentPlacements()
    for node, model, at in sorted(sent, key=lambda s: s[2]):
        by_node.add(node, model, at)
        one_by_one.add(node, model, at)
    for now in sorted(asks):
        whole = by_node.by_node(now)
        each = {node: one_by_one.models(node, now) for node in "abc"}
        assert whole == {node: models for node, models in each.items() if models}
        assert {node: by_node.models(node, now) for node in "abc"} == each


def test_a_settled_node_is_forgotten_and_a_new_send_counts_again() -> None:
    sent = SentPlacements()
    sent.add("a", "m1", 0.0)
    assert sent.by_node(SETTLE_S / 2) == {"a": ["m1"]}
    assert sent.by_node(SETTLE_S * 2) == {}
    sent.add("a", "m2", SETTLE_S * 2)
    assert sent.by_node(SETTLE_S * 2) == {"a": ["m2"]}
