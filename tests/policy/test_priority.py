"""Priority classes: the aging queue's order and wait bound, class lanes in the admission
queue, the work a request queues behind (capacity.ahead) and SLO shedding."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from daemons.core.errors import ConfigError
from daemons.policy.admission import AdmissionQueue, QueueLimits
from daemons.policy.capacity import SERVICE_S, ahead, queue_wait_s
from daemons.policy.priority import CLASS_PRIORITY, PriorityQueue, class_priority
from daemons.policy.slo import SHED, admit, check_admission
from daemons.policy.view import Decision, NodeView, PlacementRequest, Refusal

BATCH, INTERACTIVE = CLASS_PRIORITY["batch"], CLASS_PRIORITY["interactive"]


def drain(q: PriorityQueue[str]) -> list[str]:
    out = []
    while (item := q.pop()) is not None:
        out.append(item)
    return out


def test_higher_class_first_and_arrival_order_within_a_class() -> None:
    q: PriorityQueue[str] = PriorityQueue(aging_s=5.0)
    q.push("b1", BATCH, now=0.0)
    q.push("i1", INTERACTIVE, now=1.0)
    q.push("b2", BATCH, now=2.0)
    q.push("i2", INTERACTIVE, now=3.0)
    assert drain(q) == ["i1", "i2", "b1", "b2"]


def test_a_waiting_request_ages_past_later_higher_class_arrivals() -> None:
    # Two levels apart at 5 s a level: batch at t=0 goes before interactive arriving after t=10.
    q: PriorityQueue[str] = PriorityQueue(aging_s=5.0)
    q.push("batch", BATCH, now=0.0)
    q.push("late-interactive", INTERACTIVE, now=10.5)
    q.push("early-interactive", INTERACTIVE, now=9.5)
    assert drain(q) == ["early-interactive", "batch", "late-interactive"]


def test_no_priority_is_arrival_order() -> None:
    q: PriorityQueue[str] = PriorityQueue(enabled=False)
    for i, p in enumerate([BATCH, INTERACTIVE, BATCH, INTERACTIVE]):
        q.push(f"r{i}", p, now=float(i))
    assert drain(q) == ["r0", "r1", "r2", "r3"]


def test_discard_and_counts_by_priority() -> None:
    q: PriorityQueue[str] = PriorityQueue()
    a = q.push("a", BATCH, now=0.0)
    q.push("b", INTERACTIVE, now=0.0)
    q.push("c", BATCH, now=1.0)
    assert q.waiting_by_priority() == {BATCH: 2, INTERACTIVE: 1} and len(q) == 3
    q.discard(a)
    q.discard(a)  # twice: a no-op
    assert q.waiting_by_priority() == {BATCH: 1, INTERACTIVE: 1} and len(q) == 2
    assert drain(q) == ["b", "c"] and len(q) == 0 and q.waiting_by_priority() == {}


def test_bad_aging_and_unknown_class_are_config_errors() -> None:
    with pytest.raises(ConfigError, match="priority_aging_s"):
        PriorityQueue(aging_s=-1.0)
    with pytest.raises(ConfigError, match=r"unknown class 'vip'.*interactive"):
        class_priority("vip")


arrivals = st.lists(st.tuples(st.floats(0, 0.6, allow_nan=False), st.sampled_from(sorted(CLASS_PRIORITY.values()))),
                    min_size=1, max_size=60)


@settings(max_examples=200, deadline=None)
@given(arrivals, st.floats(0.1, 10))
def test_no_starvation_and_fifo_within_a_class(gaps: list[tuple[float, int]], aging_s: float) -> None:
    """One server, one request served per second, arrivals faster than that (a queue builds): (a) no request
    is served after one that arrived more than aging_s * (p_max - p) later (the docstring's
    bound: nothing arriving after that overtakes it); (b) within a class, arrival order."""
    q: PriorityQueue[tuple[int, float, int]] = PriorityQueue(aging_s=aging_s)
    t, pending = 0.0, []
    for i, (gap, priority) in enumerate(gaps):
        t += gap
        pending.append((i, t, priority))
    p_max = max(CLASS_PRIORITY.values())
    served: list[tuple[int, float, int]] = []
    clock, k = 0.0, 0
    while k < len(pending) or len(q):
        while k < len(pending) and pending[k][1] <= clock:
            q.push(pending[k], pending[k][2], pending[k][1])
            k += 1
        item = q.pop()
        if item is None:
            clock = pending[k][1]
            continue
        served.append(item)
        clock += 1.0
    assert sorted(i for i, _, _ in served) == list(range(len(pending)))
    for pos, (_, arrived, priority) in enumerate(served):
        bound = arrived + aging_s * (p_max - priority)
        overtakers = [a for _, a, _ in served[:pos] if a > arrived]  # arrived after it, served before it
        assert all(a <= bound + 1e-9 for a in overtakers), "overtaken by a request arriving past the bound"
        later = [i for i, _, p in served[pos + 1:] if p == priority]
        assert all(i > served[pos][0] for i in later)  # FIFO within a class


# ----- the admission queue's class lanes -----------------------------------------------------
def test_admission_heads_go_by_class_then_arrival_and_age() -> None:
    q: AdmissionQueue[str] = AdmissionQueue(QueueLimits(8, 100.0), aging_s=5.0)
    q.offer("b0", "m", "x", now=0.0, priority=BATCH)
    q.offer("i1", "m", "x", now=1.0, priority=INTERACTIVE)
    assert [h.request_id for h in q.heads()] == ["i1", "b0"]
    assert q.is_head("b0") and q.is_head("i1")  # one lane per class
    q.offer("i2", "m", "x", now=20.0, priority=INTERACTIVE)  # too late to overtake b0 once i1 left
    q.remove("i1")
    assert [h.request_id for h in q.heads()] == ["b0", "i2"]
    assert q.waits_ahead("m", BATCH) and q.waits_ahead("m", INTERACTIVE) and not q.waits_ahead("other", BATCH)
    q.remove("b0")
    assert not q.waits_ahead("m", INTERACTIVE + 1) and q.waits_ahead("m", BATCH)


def test_admission_without_priority_is_one_lane_in_arrival_order() -> None:
    q: AdmissionQueue[str] = AdmissionQueue(QueueLimits(8, 100.0), by_priority=False)
    q.offer("b0", "m", "x", now=0.0, priority=BATCH)
    q.offer("i1", "m", "x", now=1.0, priority=INTERACTIVE)
    assert [h.request_id for h in q.heads()] == ["b0"] and not q.is_head("i1")
    assert q.waits_ahead("m", INTERACTIVE)


# ----- the work a request queues behind ------------------------------------------------------
def test_ahead_leaves_out_lower_classes_waiting_at_the_node() -> None:
    node = NodeView("n", "tcp://n", in_flight=10, waiting_by_priority={BATCH: 6, INTERACTIVE: 1})
    assert ahead(node, BATCH) == 10  # a batch request waits behind everything
    assert ahead(node, INTERACTIVE) == 4  # it overtakes the six waiting batch requests
    assert queue_wait_s(node, PlacementRequest("m", priority=INTERACTIVE)) == 4 * SERVICE_S
    assert ahead(NodeView("n", "tcp://n", in_flight=3), INTERACTIVE) == 3  # nothing waits: same as load


# ----- SLO admission -------------------------------------------------------------------------
def decision(est_wait_s: float) -> Decision:
    return Decision("n", "tcp://n", "SERVE", est_wait_s, "test")


def test_slo_admission_sheds_only_predicted_misses() -> None:
    strict = PlacementRequest("m", slo_ttft_s=0.5)
    assert admit(decision(0.4), strict, "slo") == decision(0.4)
    shed = admit(decision(0.6), strict, "slo")
    assert isinstance(shed, Refusal) and shed.code == SHED and "0.60 s" in shed.message
    assert admit(decision(0.6), strict, "queue") == decision(0.6)  # the default never sheds
    assert admit(decision(60.0), PlacementRequest("m"), "slo") == decision(60.0)  # no SLO: never shed
    refusal = Refusal("no_nodes", "none")
    assert admit(refusal, strict, "slo") is refusal
    with pytest.raises(ConfigError, match="admission 'drop' is unknown"):
        check_admission("drop")
