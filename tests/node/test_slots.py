"""The node's slot queue: at most max_running per model at the backend, the rest by class."""

from __future__ import annotations

import asyncio

from daemons.node.slots import SlotQueue, SlotRule
from daemons.policy.priority import CLASS_PRIORITY

BATCH, INTERACTIVE = CLASS_PRIORITY["batch"], CLASS_PRIORITY["interactive"]


async def _order(slots: SlotQueue) -> list[str]:
    """One slot, held by a first request; three more wait; the order they get the slot in."""
    started: list[str] = []

    async def request(name: str, priority: int) -> None:
        await slots.acquire("m", priority)
        started.append(name)
        await asyncio.sleep(0.01)
        slots.release("m")

    first = asyncio.create_task(request("first", BATCH))
    await asyncio.sleep(0)
    rest = []
    for name, priority in (("b1", BATCH), ("b2", BATCH), ("i1", INTERACTIVE)):
        rest.append(asyncio.create_task(request(name, priority)))
        await asyncio.sleep(0)
    assert slots.waiting("m") == 3 and slots.waiting_by_priority() == {BATCH: 2, INTERACTIVE: 1}
    await asyncio.gather(first, *rest)
    return started


def test_a_higher_class_takes_the_next_free_slot() -> None:
    assert asyncio.run(_order(SlotQueue(max_running=1))) == ["first", "i1", "b1", "b2"]


def test_no_priority_serves_in_arrival_order() -> None:
    assert asyncio.run(_order(SlotQueue(max_running=1, by_priority=False))) == ["first", "b1", "b2", "i1"]


def test_no_limit_never_waits_and_a_cancelled_waiter_leaves() -> None:
    async def scenario() -> None:
        free = SlotQueue()
        for _ in range(100):
            await asyncio.wait_for(free.acquire("m", BATCH), 0.1)  # max_running 0: never waits
        slots = SlotQueue(max_running=1)
        await slots.acquire("m", BATCH)
        waiter = asyncio.create_task(slots.acquire("m", INTERACTIVE))
        await asyncio.sleep(0)
        assert slots.waiting("m") == 1
        waiter.cancel()
        await asyncio.sleep(0)
        assert slots.waiting("m") == 0
        slots.release("m")  # the slot frees, nobody waits: the next request goes straight in
        await asyncio.wait_for(slots.acquire("m", BATCH), 0.1)
    asyncio.run(scenario())


def test_the_rule_without_futures_hands_a_released_slot_to_the_next_waiter() -> None:
    """SlotRule (what SlotQueue and the simulator's node both run): a free slot never jumps the
    queue, a released one passes to the best waiter (still counted running), a discarded
    waiter is skipped, and the slot is freed only when nobody waits."""
    rule: SlotRule[str] = SlotRule(max_running=1)
    assert rule.take("m", "a", BATCH, 0.0) is None and rule.running("m") == 1
    b = rule.take("m", "b", BATCH, 1.0)
    i = rule.take("m", "i", INTERACTIVE, 2.0)
    assert b is not None and i is not None and rule.waiting("m") == 2
    rule.discard("m", i)
    assert rule.release("m") == "b" and rule.running("m") == 1
    assert rule.release("m") is None and rule.running("m") == 0
    assert rule.take("m", "c", BATCH, 3.0) is None
    assert SlotRule[str]().take("m", "x", BATCH, 0.0) is None  # max_running 0: never waits
