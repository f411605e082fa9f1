"""Unit tests of the small protocol pieces: config, suspicion, awareness, broadcast, records."""

from __future__ import annotations

import dataclasses
import math

import pytest

from daemons.gossip.awareness import Awareness
from daemons.gossip.broadcast import BroadcastQueue
from daemons.gossip.config import GossipConfig
from daemons.gossip.records import RecordPublisher, normalize_body
from daemons.gossip.suspicion import Suspicion, suspicion_timeout


# ------------------------------------------------------------------ config
def test_presets_match_memberlist() -> None:
    lan, wan, local = GossipConfig.lan(), GossipConfig.wan(), GossipConfig.local()
    assert (lan.probe_interval, lan.probe_timeout, lan.indirect_checks) == (1.0, 0.5, 3)
    assert (lan.gossip_interval, lan.gossip_nodes, lan.suspicion_mult) == (0.2, 3, 4)
    assert (lan.suspicion_max_timeout_mult, lan.retransmit_mult) == (6, 4)
    assert (lan.push_pull_interval, lan.gossip_to_the_dead_time, lan.dead_reap_time) == (15.0, 30.0, 60.0)
    assert lan.nack_timeout() == pytest.approx(0.4)
    assert (wan.probe_interval, wan.probe_timeout, wan.gossip_interval, wan.gossip_nodes) == (5.0, 3.0, 0.5, 4)
    assert (wan.suspicion_mult, wan.push_pull_interval, wan.gossip_to_the_dead_time) == (6, 60.0, 60.0)
    assert (local.probe_timeout, local.indirect_checks, local.gossip_interval) == (0.2, 1, 0.1)
    assert (local.suspicion_mult, local.retransmit_mult, local.gossip_to_the_dead_time) == (3, 2, 15.0)
    assert GossipConfig.preset("lan") == lan
    with pytest.raises(ValueError, match="unknown gossip preset"):
        GossipConfig.preset("moon")


def test_scaled_multiplies_every_time_only() -> None:
    ci = GossipConfig.ci()
    lan = GossipConfig.lan()
    assert ci.probe_interval == pytest.approx(0.1)
    assert ci.probe_timeout == pytest.approx(0.05)
    assert ci.gossip_interval == pytest.approx(0.02)
    assert ci.push_pull_interval == pytest.approx(1.5)
    assert ci.dead_reap_time == pytest.approx(6.0)
    assert ci.gossip_nodes == lan.gossip_nodes and ci.retransmit_mult == lan.retransmit_mult
    assert ci.record_interval(64) == pytest.approx(0.1 * lan.record_interval(64))
    assert ci.loop_lag_threshold == lan.loop_lag_threshold  # measures the host, not the protocol
    with pytest.raises(ValueError):
        lan.scaled(0)


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"probe_interval": 0}, "probe_interval"),
        ({"probe_timeout": 2.0}, "shorter than probe_interval"),
        ({"gossip_nodes": 0}, "gossip_nodes"),
        ({"indirect_checks": True}, "indirect_checks"),
        ({"nack_ratio": 1.0}, "nack_ratio"),
        ({"max_piggyback_bytes": 10}, "max_piggyback_bytes"),
        ({"gossip_interval": math.nan}, "gossip_interval"),
        ({"max_frame_bytes": 10**6}, "max_frame_bytes"),
    ],
)
def test_config_validation(change: dict[str, object], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        dataclasses.replace(GossipConfig.lan(), **change)  # type: ignore[arg-type]


def test_config_is_frozen() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        GossipConfig.lan().probe_interval = 2.0  # type: ignore[misc]


@pytest.mark.parametrize(
    ("n", "expected"), [(1, 4.0), (10, 4.0), (16, 4.8), (32, 6.0), (64, 7.2), (100, 8.0), (1000, 12.0)],
)
def test_suspicion_min_matches_reference(n: int, expected: float) -> None:
    cfg = GossipConfig.lan()
    assert cfg.suspicion_min(n) == pytest.approx(expected, abs=0.05)
    assert cfg.suspicion_max(n) == pytest.approx(6 * cfg.suspicion_min(n))


# memberlist's formula (util.go retransmitLimit); note ceil(log10(100)) = 2, so N = 99 still gets 8
# (a "12 for 99-998" rule of thumb is off by one at the boundary).
@pytest.mark.parametrize(
    ("n", "limit"), [(1, 4), (9, 4), (10, 8), (64, 8), (99, 8), (100, 12), (999, 12), (1000, 16)],
)
def test_retransmit_limit(n: int, limit: int) -> None:
    assert GossipConfig.lan().retransmit_limit(n) == limit


def test_push_pull_scale_and_record_interval() -> None:
    cfg = GossipConfig.lan()
    assert cfg.push_pull_period(32) == 15.0
    assert cfg.push_pull_period(64) == 30.0
    assert cfg.push_pull_period(1000) == 15.0 * 6
    assert cfg.record_interval(16) == 0.5
    assert cfg.record_interval(256) == 2.0
    assert cfg.suspicion_confirmations(3) == 0 and cfg.suspicion_confirmations(4) == 2


# ------------------------------------------------------------------ suspicion
def test_suspicion_timeout_formula() -> None:
    # N = 10 at LAN: min 4 s, max 24 s, K = 2 (hashicorp/memberlist config.go, util.go: one confirmation ≈ 11.4 s).
    assert suspicion_timeout(0, 2, 4.0, 24.0) == pytest.approx(24.0)
    assert suspicion_timeout(1, 2, 4.0, 24.0) == pytest.approx(11.381, abs=0.001)
    assert suspicion_timeout(2, 2, 4.0, 24.0) == pytest.approx(4.0)
    assert suspicion_timeout(5, 2, 4.0, 24.0) == pytest.approx(4.0)  # floored at min
    assert suspicion_timeout(0, 0, 4.0, 24.0) == 4.0  # K < 1: straight to min


def test_suspicion_dogpile_like_memberlist() -> None:
    # memberlist TestSuspicion_Timer: min 500 ms, max 2 s, K = 3.
    expected = {0: 2.0, 1: 1.25, 2: 0.811, 3: 0.5}
    for k, want in expected.items():
        s = Suspicion(10.0, "a", 3, 0.5, 2.0)
        for accuser in ["b", "c", "d"][:k]:
            assert s.confirm(accuser)
        assert s.deadline - 10.0 == pytest.approx(want, abs=0.002)


def test_suspicion_confirmations_count_distinct_accusers_up_to_k() -> None:
    s = Suspicion(0.0, "a", 2, 4.0, 24.0)
    assert not s.confirm("a")  # the original accuser is not a confirmation
    assert s.confirm("b")
    assert not s.confirm("b")
    assert s.confirm("c")
    assert not s.confirm("d")  # K reached: nothing left to shorten
    assert s.confirmations == 2
    assert s.deadline == pytest.approx(4.0)


# ------------------------------------------------------------------ awareness
def test_awareness_bounds_and_scale() -> None:
    a = Awareness(8)
    assert a.apply_delta(-1) == 0 and a.score == 0
    assert a.scale(1.0) == 1.0
    a.apply_delta(3)
    assert a.scale(0.5) == pytest.approx(2.0)
    assert a.apply_delta(100) == 4 and a.score == 7  # max - 1
    assert a.scale(1.0) == 8.0


def test_loop_lag_raises_then_recovers_only_its_own_points() -> None:
    a = Awareness(8, lag_threshold=0.25, recovery_ticks=10)
    a.note_loop_lag(0.5)
    a.note_loop_lag(0.3)
    assert a.score == 2
    a.apply_delta(1)  # a failed probe
    for _ in range(10):
        a.note_loop_lag(0.01)
    assert a.score == 2
    for _ in range(50):
        a.note_loop_lag(0.0)
    assert a.score == 1  # the failed probe's point stays until a probe succeeds


# ------------------------------------------------------------------ broadcast
def test_broadcast_retransmit_limit_and_invalidation() -> None:
    q: BroadcastQueue[str] = BroadcastQueue()
    q.queue("a", "a1", 10)
    q.queue("a", "a2", 10)  # replaces a1
    assert len(q) == 1
    for _ in range(3):
        assert q.get(100, limit=3) == ["a2"]
    assert q.get(100, limit=3) == [] and len(q) == 0


def test_broadcast_order_urgent_then_fewest_transmits_then_newest() -> None:
    q: BroadcastQueue[str] = BroadcastQueue()
    q.queue("r1", "old", 10)
    q.queue("r2", "new", 10)
    q.queue("m1", "urgent", 10, urgent=True)
    assert q.get(100, limit=5) == ["urgent", "new", "old"]
    q.queue("r3", "newest", 10)
    assert q.get(100, limit=5)[0] == "urgent"
    assert q.get(25, limit=5) == ["urgent", "newest"]  # urgent first even when repeated


def test_broadcast_byte_budget_skips_big_items_for_small_ones() -> None:
    q: BroadcastQueue[str] = BroadcastQueue()
    q.queue("small", "s", 10)
    q.queue("big", "b", 90)
    assert q.get(50, limit=5) == ["s"]
    assert q.get(95, limit=5) == ["b"]
    assert q.get(5, limit=5) == []


def test_broadcast_queue_prunes_most_transmitted() -> None:
    q: BroadcastQueue[int] = BroadcastQueue(max_items=16)
    for i in range(16):
        q.queue(i, i, 1)
    q.get(3, limit=10)  # 15, 14, 13 sent once
    q.queue(99, 99, 1)
    assert len(q) == 16
    assert q.get(1000, limit=10)[:1] == [99]


# ------------------------------------------------------------------ records
def test_record_publisher_coalesces_at_bounded_rate() -> None:
    p = RecordPublisher("n1", gen=7)
    p.stage({"q": 1})
    first = p.publish(0.0, 0.5)
    assert first is not None and (first.gen, first.ver) == (7, 1)
    p.stage({"q": 2})
    p.stage({"q": 3})
    assert p.publish(0.2, 0.5) is None
    assert p.due_at(0.5) == 0.5
    second = p.publish(0.5, 0.5)
    assert second is not None and second.ver == 2 and second.body == {"q": 3}
    assert second.newer_than(first) and not first.newer_than(second)
    p.stage({"q": 3})  # unchanged: no new version
    assert not p.pending


def test_new_generation_outranks_any_version() -> None:
    old = RecordPublisher("n1", gen=1)
    for i in range(50):
        old.stage({"i": i})
        old.publish(float(i), 0.5)
    new = RecordPublisher("n1", gen=2)
    new.stage({"i": 0})
    rec = new.publish(100.0, 0.5)
    assert rec is not None and old.current is not None
    assert rec.newer_than(old.current) and rec.ver == 1 < old.current.ver


@pytest.mark.parametrize(
    "body", [{"x": object()}, {1: "int key"}, {"x": float("nan")}, {"big": "x" * 10_000}, ["not", "a", "map"]],
)
def test_normalize_body_rejects(body: object) -> None:
    with pytest.raises(ValueError):
        normalize_body(body, 8192)  # type: ignore[arg-type]


def test_normalize_body_copies() -> None:
    src = {"models": ["a"], "gpus": [{"idx": 0}]}
    out = normalize_body(src, 8192)
    src["models"].append("b")
    assert out == {"models": ["a"], "gpus": [{"idx": 0}]}
    assert normalize_body({"t": ("a", "b")}, 8192) == {"t": ["a", "b"]}  # as receivers will see it
