"""The node's slot queue: at most `max_running` requests per model go to its backend at once;
the others wait here, highest class first with aging (daemons/policy/priority.py).

A backend (TGI, the emulator) queues what it cannot batch in arrival order, blind to
classes. Holding the overflow in the node agent instead lets a higher class go first.
`max_running = 0` (the default) sends everything to the backend at once, as before.
The ordering itself is the pure `PriorityQueue`; this file only wakes waiters.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

from daemons.policy.priority import DEFAULT_AGING_S, PriorityQueue


@dataclass
class _Lane:
    queue: PriorityQueue[asyncio.Future[None]]
    running: int = 0


@dataclass
class SlotQueue:
    """Per model: a count of requests at the backend and a priority queue of the rest."""

    max_running: int = 0  # per model; 0: no limit (nothing waits here)
    aging_s: float = DEFAULT_AGING_S
    by_priority: bool = True
    _lanes: dict[str, _Lane] = field(default_factory=dict)

    def _lane(self, model: str) -> _Lane:
        lane = self._lanes.get(model)
        if lane is None:
            lane = self._lanes[model] = _Lane(PriorityQueue(self.aging_s, self.by_priority))
        return lane

    async def acquire(self, model: str, priority: int) -> None:
        """Wait for a slot of `model`; a cancelled waiter leaves the queue."""
        lane = self._lane(model)
        if not self.max_running or (lane.running < self.max_running and not len(lane.queue)):
            lane.running += 1
            return
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        entry = lane.queue.push(waiter, priority, time.monotonic())
        try:
            await waiter  # `release` hands its slot over: `running` already counts us
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self.release(model)  # handed a slot as we were cancelled: pass it on
            else:
                lane.queue.discard(entry)
            raise

    def release(self, model: str) -> None:
        """A request of `model` left the backend: hand its slot to the next waiter, if any."""
        lane = self._lane(model)
        while (waiter := lane.queue.pop()) is not None:
            if not waiter.done():
                waiter.set_result(None)  # the slot passes on: `running` stays the same
                return
        lane.running -= 1

    def waiting(self, model: str) -> int:
        lane = self._lanes.get(model)
        return len(lane.queue) if lane else 0

    def waiting_by_priority(self) -> dict[int, int]:
        """Requests waiting here per priority, over all models."""
        out: dict[int, int] = {}
        for lane in self._lanes.values():
            for p, n in lane.queue.waiting_by_priority().items():
                out[p] = out.get(p, 0) + n
        return out
