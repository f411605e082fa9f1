"""The admission queue's state machine: order, bounds, deadlines, and one outcome per request."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from daemons.core.errors import ConfigError
from daemons.policy.admission import OVERLOADED, QUEUE_TIMEOUT, AdmissionQueue, QueueLimits


def queue(limit: int = 3, timeout_s: float = 10.0) -> AdmissionQueue[str]:
    return AdmissionQueue(QueueLimits(limit, timeout_s))


def test_lanes_keep_arrival_order_and_heads_come_oldest_first() -> None:
    q = queue()
    for i, model in enumerate(["b", "a", "b", "a"]):
        assert q.offer(f"r{i}", model, f"item{i}", now=float(i)) is None
    assert [h.request_id for h in q.heads()] == ["r0", "r1"]
    assert q.head("b") is not None and q.head("b").request_id == "r0"  # type: ignore[union-attr]
    assert q.remove("r0") is not None
    assert q.head("b").request_id == "r2"  # type: ignore[union-attr]
    assert [h.request_id for h in q.heads()] == ["r1", "r2"]
    assert q.lengths() == {"a": 2, "b": 1} and len(q) == 3


def test_release_all_empties_every_lane_heads_first_and_counts_none_placed() -> None:
    q = queue()
    for i, model in enumerate(["b", "a", "b", "a"]):
        assert q.offer(f"r{i}", model, f"item{i}", now=float(i)) is None
    assert [e.request_id for e in q.release_all()] == ["r0", "r2", "r1", "r3"]  # lane b's head is oldest
    assert len(q) == 0 and q.heads() == [] and q.placed == 0 and "r1" not in q
    assert q.release_all() == []


def test_a_full_lane_refuses_overloaded_and_other_lanes_still_take() -> None:
    q = queue(limit=2)
    assert q.offer("a1", "a", "", 0.0) is None and q.offer("a2", "a", "", 0.0) is None
    refused = q.offer("a3", "a", "", 0.0)
    assert refused is not None and refused.code == OVERLOADED
    assert "queue_limit 2" in refused.message and "a3" not in q
    assert q.offer("b1", "b", "", 0.0) is None
    assert q.refused == 1 and q.queued == 3


def test_deadlines_expire_with_queue_timeout_in_arrival_order() -> None:
    q = queue(timeout_s=5.0)
    q.offer("r1", "a", "", now=0.0)
    q.offer("r2", "b", "", now=1.0, timeout_s=2.0)  # its own, shorter deadline: 3.0
    q.offer("r3", "a", "", now=2.0, timeout_s=60.0)  # capped by the queue's: 7.0
    assert q.next_deadline() == 3.0
    assert q.expire(2.9) == []
    late = q.expire(5.0)
    assert [(o.entry.request_id, o.code) for o in late] == [("r1", QUEUE_TIMEOUT), ("r2", QUEUE_TIMEOUT)]
    assert "waited 5.0 s" in late[0].message and "r1" not in q
    assert q.expire_one("r3", 6.9) is None and q.expire_one("r3", 7.0) is not None
    assert len(q) == 0 and q.expired == 3


def test_asked_again_keeps_its_place_and_deadline_and_takes_the_new_item() -> None:
    q = queue()
    q.offer("r1", "a", "first", now=0.0)
    q.offer("r2", "a", "", now=1.0)
    assert q.offer("r1", "a", "second", now=4.0, timeout_s=1.0) is None
    head = q.head("a")
    assert head is not None and head.request_id == "r1" and head.item == "second" and head.deadline == 10.0
    assert len(q) == 2 and q.queued == 2


@pytest.mark.parametrize("limit", [0, -1, 1.5, True, "8"])
def test_a_limit_that_cannot_work_is_one_clear_error(limit: object) -> None:
    with pytest.raises(ConfigError, match=r"queue_limit must be a whole number >= 1 .* set queue_limit = 64"):
        QueueLimits(limit, 10.0)  # type: ignore[arg-type]


@pytest.mark.parametrize("timeout_s", [0, -3.0, float("nan")])
def test_a_timeout_that_cannot_work_is_one_clear_error(timeout_s: float) -> None:
    with pytest.raises(ConfigError, match="queue_timeout_s must be a number of seconds > 0"):
        QueueLimits(4, timeout_s)


ops = st.lists(st.one_of(
    st.tuples(st.just("offer"), st.integers(0, 15), st.sampled_from("abc"), st.floats(0, 20)),
    st.tuples(st.just("place"), st.sampled_from("abc")),
    st.tuples(st.just("tick"), st.floats(0, 5)),
), max_size=60)


@settings(max_examples=200, deadline=None)
@given(ops, st.integers(1, 4))
def test_every_request_leaves_exactly_once_and_lanes_stay_fifo(script: list[tuple], limit: int) -> None:
    """Model check: whatever the interleaving, each offered request ends in exactly one of
    placed / refused / expired / still waiting, lanes never exceed the limit, and a lane's
    requests are placed in the order they arrived."""
    q: AdmissionQueue[int] = AdmissionQueue(QueueLimits(limit, 10.0))
    now = 0.0
    fate: dict[str, str] = {}
    arrival: dict[str, list[str]] = {}
    placed: dict[str, list[str]] = {}
    for op in script:
        if op[0] == "offer":
            _, n, model, timeout_s = op
            rid = f"r{n}"
            if fate.get(rid) not in (None, "waiting"):
                continue  # a request id is used once
            was_waiting = rid in q
            out = q.offer(rid, model if not was_waiting else q.get(rid).model, n, now, timeout_s)  # type: ignore[union-attr]
            if out is not None:
                assert out.code == OVERLOADED and not was_waiting
                fate[rid] = "refused"
            elif not was_waiting:
                fate[rid] = "waiting"
                arrival.setdefault(model, []).append(rid)
        elif op[0] == "place":
            head = q.head(op[1])
            if head is not None:
                q.remove(head.request_id)
                fate[head.request_id] = "placed"
                placed.setdefault(op[1], []).append(head.request_id)
        else:
            now += op[1]
            for out in q.expire(now):
                assert out.code == QUEUE_TIMEOUT and out.entry.deadline <= now
                fate[out.entry.request_id] = "expired"
        assert all(n <= limit for n in q.lengths().values())
    assert {r for r, f in fate.items() if f == "waiting"} == {r for r in fate if r in q}
    assert q.queued == sum(1 for f in fate.values() if f != "refused")
    assert q.placed + q.expired + len(q) == q.queued
    for model, ids in placed.items():
        order = [r for r in arrival[model] if r in ids]
        assert ids == order
