"""Priority classes and the one queue discipline every waiting line uses: priority with aging.

Sans-IO: no clocks (every call takes `now`), no sockets. The node agent's slot queue
(daemons/node/slots.py) and the admission queue (`admission.py`, through `rank`) order
waiting requests by the same rule, so a class means the same thing wherever it waits.

The rule (linear aging, after Kleinrock's delay-dependent priorities, "A delay-dependent
queue discipline", Naval Research Logistics Quarterly 11, 1964, where a request's priority
grows linearly with its wait): a request of priority `p` that arrived at `a` has, at time
`t`, the effective priority `p + (t - a) / aging_s`. Every waiting request gains one level
per `aging_s` seconds of waiting, so at any instant the highest effective priority is the
smallest *virtual arrival* `v = a - aging_s · p`, a constant per request: the queue is a
heap on `(v, arrival order)`, O(log n) per operation, and requests of one class leave in
arrival order (FIFO within a class).

Bound on the wait (no starvation): a request R of priority `p` is overtaken only by
requests with a smaller virtual arrival, i.e. arriving before `a + aging_s · (p_max - p)`,
where `p_max` is the highest priority in use. So once R has waited `aging_s · (p_max - p)`
nothing that arrives later goes ahead of it: R waits at most
`aging_s · (p_max - p)` plus the time to serve the requests already ahead of it then
(bounded by the queue's length limit times the longest service). With the default
classes (interactive 2, standard 1, batch 0) and `aging_s` = 5 s, no interactive request
arriving more than 10 s after a batch request is served before it.

`aging_s = 0` (or `enabled = False`, the `--no-priority` switch) is plain FIFO.
"""

from __future__ import annotations

import heapq
import itertools
import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from daemons.core.errors import ConfigError

T = TypeVar("T")

# The classes a workload may use and their priority (higher is served first). The default
# workload has no class: its requests carry priority 0, like batch, so nothing changes.
CLASS_PRIORITY: dict[str, int] = {"interactive": 2, "standard": 1, "batch": 0}
DEFAULT_AGING_S = 5.0  # seconds of waiting worth one priority level


def class_priority(name: str) -> int:
    """The priority of a class name; a ConfigError naming the known classes otherwise."""
    if name not in CLASS_PRIORITY:
        raise ConfigError(f"unknown class {name!r}: use one of {', '.join(CLASS_PRIORITY)}")
    return CLASS_PRIORITY[name]


def check_aging(aging_s: object, where: str = "") -> None:
    if isinstance(aging_s, bool) or not isinstance(aging_s, int | float) or not (
            math.isfinite(aging_s) and aging_s >= 0):
        raise ConfigError(f"{where}priority_aging_s must be a number of seconds >= 0 (waiting worth one "
                          f"priority level; 0 = arrival order), got {aging_s!r}: e.g. {DEFAULT_AGING_S:g}")


def virtual_arrival(arrived: float, priority: int, aging_s: float) -> float:
    """The sort key of the module doc: smaller leaves first. aging_s 0: plain arrival order."""
    return arrived - aging_s * priority


@dataclass(slots=True)
class _Entry(Generic[T]):
    key: float
    seq: int
    item: T
    priority: int
    arrived: float
    live: bool = True

    def __lt__(self, other: _Entry[T]) -> bool:
        return (self.key, self.seq) < (other.key, other.seq)


@dataclass
class PriorityQueue(Generic[T]):
    """Waiting items, highest effective priority first (module doc: rule and wait bound).

    `push` returns a handle for `discard` (a waiter that went away); discarded entries are
    dropped lazily when they reach the top.
    """

    aging_s: float = DEFAULT_AGING_S
    enabled: bool = True  # False: arrival order whatever the priority (the --no-priority arm)
    _heap: list[_Entry[T]] = field(default_factory=list)
    _seq: Iterator[int] = field(default_factory=itertools.count)
    _live: int = 0
    _by_priority: dict[int, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        check_aging(self.aging_s)

    def __len__(self) -> int:
        return self._live

    def push(self, item: T, priority: int, now: float) -> _Entry[T]:
        weight = self.aging_s if self.enabled else 0.0
        entry = _Entry(virtual_arrival(now, priority, weight), next(self._seq), item, priority, now)
        heapq.heappush(self._heap, entry)
        self._live += 1
        self._by_priority[priority] = self._by_priority.get(priority, 0) + 1
        return entry

    def peek(self) -> T | None:
        self._drop_dead()
        return self._heap[0].item if self._heap else None

    def pop(self) -> T | None:
        """The item to serve next, or None when nothing waits."""
        self._drop_dead()
        if not self._heap:
            return None
        entry = heapq.heappop(self._heap)
        self._forget(entry)
        return entry.item

    def discard(self, entry: _Entry[T]) -> None:
        """Take out a waiting entry (its waiter went away); a no-op if it already left."""
        if entry.live:
            self._forget(entry)

    def waiting_by_priority(self) -> dict[int, int]:
        """How many wait per priority (policies count the work a new request queues behind)."""
        return {p: n for p, n in self._by_priority.items() if n}

    def _forget(self, entry: _Entry[T]) -> None:
        entry.live = False
        self._live -= 1
        self._by_priority[entry.priority] -= 1

    def _drop_dead(self) -> None:
        while self._heap and not self._heap[0].live:
            heapq.heappop(self._heap)
