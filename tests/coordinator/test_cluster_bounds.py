"""The coordinator's book is bounded: a node cap, dead nodes reaped, status cut to its frame."""

from __future__ import annotations

from daemons.bus import decode, encode
from daemons.bus.envelope import MAX_FRAME_BYTES
from daemons.coordinator.cluster import ClusterBook
from daemons.coordinator.testing import node_state
from daemons.core.messages import StatusReply


def test_new_names_beyond_the_cap_are_refused_and_the_dead_make_room() -> None:
    book = ClusterBook(dead_after_s=1.0, settle_s=0.1, max_nodes=5, reap_after_s=100.0)
    for i in range(10):
        book.ingest(node_state(f"n{i}"), now=0.0)
    assert sorted(book.records) == [f"n{i}" for i in range(5)] and book.refused_nodes == 5
    assert {n.name for n in book.view().alive()} == set(book.records)
    # n0..n4 die; at the cap, a newcomer reaps the dead instead of being refused
    assert [e[0] for e in book.expire(2.0)] == ["node_dead"] * 5
    events = book.ingest(node_state("late"), now=3.0)
    assert [e[0] for e in events] == ["node_reaped"] * 5 + ["node_joined"]
    assert list(book.records) == ["late"] and [n.name for n in book.view().alive()] == ["late"]


def test_dead_nodes_are_reaped_after_reap_after_s() -> None:
    book = ClusterBook(dead_after_s=1.0, settle_s=0.1, reap_after_s=30.0)
    book.ingest(node_state("a"), now=0.0)
    book.ingest(node_state("b"), now=0.0)
    book.ingest(node_state("b", seq=2), now=20.0)
    assert [e[:2] for e in book.expire(2.0)] == [("node_dead", "a")]
    assert book.expire(25.0) == [("node_dead", "b", "silent for 5.0 s (limit 1.0 s)")]
    assert [e[:2] for e in book.expire(31.0)] == [("node_reaped", "a")]
    assert sorted(book.records) == ["b"]
    assert [e[:2] for e in book.expire(51.0)] == [("node_reaped", "b")]
    assert book.records == {} and book.view().alive() == []


def test_a_status_reply_at_a_large_cluster_stays_under_the_frame_limit() -> None:
    book = ClusterBook(dead_after_s=1.0, settle_s=0.1)
    models = [f"org/model-{j:02d}" for j in range(40)]
    n = 800
    for i in range(n):
        state = node_state(f"node-{i:05d}", ready=models)
        book.ingest(state, now=0.0)
    book.records["node-00000"].alive = False  # the dead come after the alive
    rows, omitted = book.status_page(0.5)
    assert omitted > 0 and len(rows) + omitted == n
    assert "node-00000" not in {r["node"] for r in rows}
    frame = encode(StatusReply("coordinator", rows, {"omitted_nodes": omitted}), "coordinator")
    assert len(frame) <= MAX_FRAME_BYTES
    assert decode(frame).body.info["omitted_nodes"] == omitted


def test_the_caps_are_configurable_and_checked() -> None:
    import pytest

    from daemons.coordinator.config import CoordinatorConfig
    from daemons.core.errors import ConfigError
    from daemons.node.config import NodeConfig

    assert CoordinatorConfig(max_nodes=50, reap_after_s=5.0).max_nodes == 50
    assert NodeConfig(gossip_max_members=64).gossip_max_members == 64
    with pytest.raises(ConfigError, match="max_nodes"):
        CoordinatorConfig(max_nodes=0)
    with pytest.raises(ConfigError, match="reap_after_s"):
        CoordinatorConfig(reap_after_s=-1.0)
    with pytest.raises(ConfigError, match="gossip_max_members"):
        NodeConfig(gossip_max_members=1)
