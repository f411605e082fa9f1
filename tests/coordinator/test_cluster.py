"""The coordinator's book: gen/seq ordering, liveness, pending placements."""

from __future__ import annotations

import dataclasses

from daemons.coordinator import ClusterBook
from daemons.coordinator.testing import node_state
from daemons.core.messages import ModelState
from daemons.policy import ClusterView, Decision


def book() -> ClusterBook:
    return ClusterBook(dead_after_s=3.0, settle_s=0.25)


def test_first_state_joins_and_builds_the_view() -> None:
    b = book()
    events = b.ingest(node_state("n0", ready=["m1"]), now=0.0)
    assert [e[0] for e in events] == ["node_joined"]
    view = b.view()
    assert view.order == ("n0",) and view.holders == {"m1": ("n0",)}
    assert view.nodes["n0"].memory_total == 80 << 30


def test_old_or_repeated_seq_is_ignored() -> None:
    b = book()
    b.ingest(node_state("n0", seq=5, queue=1), 0.0)
    assert b.ingest(node_state("n0", seq=5, queue=9), 0.1) == []
    assert b.ingest(node_state("n0", seq=4, queue=9), 0.1) == []
    assert b.view().nodes["n0"].queue_depth == 1 and b.stale_frames == 2
    b.ingest(node_state("n0", seq=6, queue=2), 0.2)
    assert b.view().nodes["n0"].queue_depth == 2


def test_new_gen_is_a_restart_and_old_gen_frames_are_stale() -> None:
    b = book()
    b.ingest(node_state("n0", gen=77, seq=100, ready=["m1"]), 0.0)
    b.placed(Decision("n0", "", "SERVE", 0, ""), "m1", 0.0)
    events = b.ingest(node_state("n0", gen=12, seq=1), 0.5)
    assert events == [("node_restarted", "n0", "gen 77 -> 12")]
    assert b.view().nodes["n0"].pending == 0 and "m1" not in b.view().holders
    assert b.ingest(node_state("n0", gen=77, seq=101, ready=["m1"]), 0.6) == []  # late frame of the old life
    assert b.records["n0"].state.gen == 12


def test_silence_kills_and_a_new_frame_recovers() -> None:
    b = book()
    b.ingest(node_state("n0"), 0.0)
    b.ingest(node_state("n1"), 0.0)
    assert b.expire(2.9) == []
    b.ingest(node_state("n1", seq=2), 2.0)
    events = b.expire(3.5)
    assert [(e[0], e[1]) for e in events] == [("node_dead", "n0")]
    assert b.view().order == ("n1",) and not b.view().nodes["n0"].alive
    assert b.expire(3.6) == []  # reported once
    assert [e[0] for e in b.ingest(node_state("n0", seq=2), 4.0)] == ["node_recovered"]
    assert b.view().order == ("n0", "n1")


def test_a_dead_node_coming_back_with_a_new_gen_is_a_restart() -> None:
    b = book()
    b.ingest(node_state("n0", gen=1), 0.0)
    b.expire(10.0)
    assert [e[0] for e in b.ingest(node_state("n0", gen=2), 11.0)] == ["node_restarted"]
    assert b.view().nodes["n0"].alive


def test_pending_counts_until_newer_state_settles_it() -> None:
    b = book()
    b.ingest(node_state("n0", ready=["m1"]), 0.0)
    for t in (1.0, 1.1, 1.2):
        b.placed(Decision("n0", "", "SERVE", 0, ""), "m1", t)
    assert b.view().nodes["n0"].pending == 3 and b.view().cursor == 3
    b.ingest(node_state("n0", seq=2, ready=["m1"]), 1.4)  # 1.0 and 1.1 are older than 0.25 s
    assert b.view().nodes["n0"].pending == 1
    assert b.view().nodes["n0"].pending_models == frozenset({"m1"})


def rebuilt(b: ClusterBook) -> ClusterView:
    return ClusterView.build([r.view() for r in b.records.values()], b.view().cursor)


def test_the_patched_view_equals_a_rebuilt_one_through_every_kind_of_change() -> None:
    b = book()
    b.ingest(node_state("n0"), 0.0)
    b.ingest(node_state("n1", ready=["m1"]), 0.0)
    b.placed(Decision("n0", "", "COLD_START", 0, ""), "m2", 0.1)
    assert b.view() == rebuilt(b) and b.view().holders["m2"] == ("n0",)
    b.ingest(node_state("n1", seq=2, ready=["m3"], catalog=["m3"]), 0.2)  # models and catalog change
    assert b.view() == rebuilt(b) and "m1" not in b.view().holders
    b.ingest(node_state("n0", seq=2, ready=["m2"]), 0.5)  # the ordered load shows up; pending settles
    assert b.view() == rebuilt(b) and b.view().nodes["n0"].pending == 0
    b.expire(10.0)
    assert b.view() == rebuilt(b) and b.view().order == ()
    b.ingest(node_state("n1", gen=9, ready=["m1"]), 11.0)
    assert b.view() == rebuilt(b) and b.view().holders == {"m1": ("n1",)}


def test_status_rows_show_liveness_memory_and_models() -> None:
    b = book()
    s = node_state("n0", ready=["m1"])
    s = dataclasses.replace(s, models=[ModelState("m1", "ready", 2, 1, 16 << 30, 0.0)])
    b.ingest(s, 0.0)
    b.expire(5.0)
    (row,) = b.status_rows(5.0)
    assert row["alive"] is False and row["last_heard_s"] == 5.0
    assert row["memory_used"] == 16 << 30 and row["memory_total"] == 80 << 30
    assert row["models"] == [{"model": "m1", "state": "ready", "queue_depth": 2, "running": 1,
                              "memory_bytes": 16 << 30}]
