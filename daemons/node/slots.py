"""The node's slot queue: at most `max_running` requests per model go to its backend at once;
the others wait here, highest class first with aging (daemons/policy/priority.py).

A backend (TGI, the emulator) queues what it cannot batch in arrival order, blind to
classes. Holding the overflow in the node agent instead lets a higher class go first.
`max_running = 0` (the default) sends everything to the backend at once, as before.

`SlotRule` is the rule itself, without clocks or tasks (sans-IO): who takes a slot now, who
waits, who gets a slot that is given back. The agent's `SlotQueue` wraps it in asyncio
futures; the simulator's node (daemons/sim/node.py) drives the same rule with callbacks.
The ordering of the waiters is the pure `PriorityQueue`.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from daemons.policy.priority import DEFAULT_AGING_S, PriorityQueue

T = TypeVar("T")
Ticket = object  # a waiter's handle in its lane's queue, for `discard`


@dataclass
class _Lane(Generic[T]):
    queue: PriorityQueue[T]
    running: int = 0


@dataclass
class SlotRule(Generic[T]):
    """Per model: a count of requests at the backend and a priority queue of the rest."""

    max_running: int = 0  # per model; 0: no limit (nothing waits here)
    aging_s: float = DEFAULT_AGING_S
    by_priority: bool = True
    _lanes: dict[str, _Lane[T]] = field(default_factory=dict)

    def _lane(self, model: str) -> _Lane[T]:
        lane = self._lanes.get(model)
        if lane is None:
            lane = self._lanes[model] = _Lane(PriorityQueue(self.aging_s, self.by_priority))
        return lane

    def take(self, model: str, waiter: T, priority: int, now: float) -> Ticket | None:
        """A request of `model` wants a slot: None if it has one now, else its ticket in the
        queue (`waiter` comes back from `release` when a slot passes to it). A free slot goes to
        a newcomer only when nobody waits: the queue's order is never jumped."""
        lane = self._lane(model)
        if not self.max_running or (lane.running < self.max_running and not len(lane.queue)):
            lane.running += 1
            return None
        return lane.queue.push(waiter, priority, now)

    def release(self, model: str) -> T | None:
        """A request of `model` left the backend: the waiter its slot passes to (`running`
        unchanged), or None when nobody waits (one slot fewer in use)."""
        lane = self._lane(model)
        waiter = lane.queue.pop()
        if waiter is None:
            lane.running -= 1
        return waiter

    def discard(self, model: str, ticket: Ticket) -> None:
        """A waiter went away before its turn."""
        self._lane(model).queue.discard(ticket)  # type: ignore[arg-type]

    def running(self, model: str) -> int:
        lane = self._lanes.get(model)
        return lane.running if lane else 0

    def waiting(self, model: str) -> int:
        lane = self._lanes.get(model)
        return len(lane.queue) if lane else 0

    def waiting_by_priority(self) -> dict[int, int]:
        """Requests waiting here per priority, over all models."""
        out: dict[int, int] = {}
        if not self.max_running:
            return out  # nothing ever waits (the node publishes this with every state)
        for lane in self._lanes.values():
            for p, n in lane.queue.waiting_by_priority().items():
                out[p] = out.get(p, 0) + n
        return out


class SlotQueue:
    """The agent's slot queue: `SlotRule` over asyncio futures."""

    def __init__(self, max_running: int = 0, aging_s: float = DEFAULT_AGING_S, by_priority: bool = True) -> None:
        self.rule: SlotRule[asyncio.Future[None]] = SlotRule(max_running, aging_s, by_priority)

    @property
    def max_running(self) -> int:
        return self.rule.max_running

    async def acquire(self, model: str, priority: int) -> None:
        """Wait for a slot of `model`; a cancelled waiter leaves the queue."""
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        ticket = self.rule.take(model, waiter, priority, time.monotonic())
        if ticket is None:
            return
        try:
            await waiter  # `release` hands its slot over: `running` already counts us
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self.release(model)  # handed a slot as we were cancelled: pass it on
            else:
                self.rule.discard(model, ticket)
            raise

    def release(self, model: str) -> None:
        """A request of `model` left the backend: hand its slot to the next waiter, if any."""
        while (waiter := self.rule.release(model)) is not None:
            if not waiter.done():
                waiter.set_result(None)  # the slot passes on: `running` stays the same
                return
            # a waiter cancelled between its pop and now holds the slot: give it back again

    def waiting(self, model: str) -> int:
        return self.rule.waiting(model)

    def waiting_by_priority(self) -> dict[int, int]:
        return self.rule.waiting_by_priority()
