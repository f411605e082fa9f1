"""Transmit-limited broadcast queue (memberlist `broadcast.go` / `queue.go`).

Every update a member learns or makes (ALIVE, SUSPECT, DEAD, STATE) goes into
this queue and is piggybacked on outgoing messages until it has been sent
`retransmit_limit(N)` times. Rules, and why:

- one entry per key (e.g. ("member", id), ("record", id)): a newer update about the
  same subject *invalidates* the older one, which would only waste bytes;
- membership news (urgent) first, then fewest transmissions first, then newest
  first: fresh news spreads before we repeat old news, which is what makes
  epidemic dissemination take O(log N) rounds;
- a byte budget per message: an item that does not fit is skipped, not split, and a
  smaller one behind it may still go;
- a bound on the queue length: the most-transmitted items are pruned first, and the
  periodic push/pull repairs anything that was pruned.

The queue stores opaque items with their encoded size, so it knows nothing of the
wire format.

Cost. `get` runs for every message sent, so the entries live in a heap on that priority
(stale heap slots of replaced, dropped or re-counted entries are skipped when popped and
compacted away in bulk) and the smallest size is kept in a second heap: a message costs
O(k log n) for the k entries it looks at, not a sort of the whole queue (which made the
queue most of a gossip simulation's time at 300 nodes). tests/gossip/test_broadcast_heap.py
checks it picks exactly what a full sort would.
"""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass
from heapq import heapify, heappop, heappush
from typing import Generic, TypeVar

T = TypeVar("T")


@dataclass(slots=True)
class _Entry(Generic[T]):
    key: Hashable
    item: T
    size: int
    order: int  # insertion counter: larger = newer
    urgent: bool  # liveness news goes before record news
    transmits: int = 0


# A heap slot: (not urgent, transmits, -order, entry). `order` is unique, so the entry
# itself is never compared; the slot is current only while the entry is still queued
# under its key with that many transmits.
_Slot = tuple[bool, int, int, _Entry[T]]


class BroadcastQueue(Generic[T]):
    """Updates waiting to be piggybacked, each sent at most `limit` times."""

    __slots__ = ("_entries", "_heap", "_max_items", "_next_order", "_size_heap", "_sizes")

    def __init__(self, max_items: int = 4096) -> None:
        self._entries: dict[Hashable, _Entry[T]] = {}
        self._heap: list[_Slot[T]] = []
        self._sizes: dict[int, int] = {}  # size -> how many queued entries have it
        self._size_heap: list[int] = []  # the sizes, lazily: some may be gone from _sizes
        self._max_items = max_items
        self._next_order = 0

    def __len__(self) -> int:
        return len(self._entries)

    def queue(self, key: Hashable, item: T, size: int, urgent: bool = False) -> None:
        """Add `item` (encoded `size` bytes), replacing any queued item with the same key.

        `urgent` items (membership changes) go before the others: a refutation stuck behind
        record chatter would turn into a false DEAD.
        """
        self._next_order += 1
        old = self._entries.pop(key, None)
        if old is not None:
            self._forget_size(old.size)
        entry = self._entries[key] = _Entry(key, item, size, self._next_order, urgent)
        heappush(self._heap, (not urgent, 0, -entry.order, entry))
        count = self._sizes.get(size, 0)
        if not count:
            heappush(self._size_heap, size)
        self._sizes[size] = count + 1
        if len(self._entries) > self._max_items:
            self._prune(self._max_items)
        self._compact()

    def get(self, budget: int, limit: int) -> list[T]:
        """Items fitting in `budget` bytes, in priority order; each use counts a transmission.

        Items reaching `limit` transmissions leave the queue.
        """
        if not self._entries or budget <= 0:
            return []
        picked: list[T] = []
        used = 0
        smallest = self._smallest()
        heap, entries = self._heap, self._entries
        back: list[_Slot[T]] = []  # looked at and still queued: back in the heap afterwards
        while heap and budget - used >= smallest:  # else nothing else can fit
            slot = heappop(heap)
            entry = slot[3]
            if entries.get(entry.key) is not entry or entry.transmits != slot[1]:
                continue  # stale: replaced, dropped, or already re-counted
            if entry.size + used > budget:
                back.append(slot)
                continue
            used += entry.size
            picked.append(entry.item)
            entry.transmits += 1
            if entry.transmits >= limit:
                del entries[entry.key]
                self._forget_size(entry.size)
            else:
                back.append((slot[0], entry.transmits, slot[2], entry))
        for slot in back:
            heappush(heap, slot)
        return picked

    def drop(self, key: Hashable) -> None:
        """Forget the queued item for `key`, if any."""
        entry = self._entries.pop(key, None)
        if entry is not None:
            self._forget_size(entry.size)

    def clear(self) -> None:
        """Forget every queued item."""
        self._entries.clear()
        self._heap.clear()
        self._sizes.clear()
        self._size_heap.clear()

    def _prune(self, keep: int) -> None:
        # The most-transmitted (then oldest) entries carry the least news. One over the
        # bound (the usual case) is one scan, not a sort.
        extra = len(self._entries) - keep
        if extra == 1:
            doomed = [max(self._entries.values(), key=_priority)]
        else:
            doomed = sorted(self._entries.values(), key=_priority)[keep:]
        for entry in doomed:
            del self._entries[entry.key]
            self._forget_size(entry.size)

    def _forget_size(self, size: int) -> None:
        count = self._sizes[size] - 1
        if count:
            self._sizes[size] = count
        else:
            del self._sizes[size]

    def _smallest(self) -> int:
        sizes, heap = self._sizes, self._size_heap
        while heap[0] not in sizes:
            heappop(heap)
        return heap[0]

    def _compact(self) -> None:
        """Drop stale heap slots once they outnumber the live ones (amortised O(1))."""
        live = len(self._entries)
        if len(self._heap) > 2 * live + 64:
            entries = self._entries
            self._heap = [slot for slot in self._heap
                          if entries.get(slot[3].key) is slot[3] and slot[3].transmits == slot[1]]
            heapify(self._heap)
        if len(self._size_heap) > 2 * len(self._sizes) + 64:
            self._size_heap = list(self._sizes)
            heapify(self._size_heap)


def _priority(entry: _Entry[T]) -> tuple[bool, int, int]:
    return (not entry.urgent, entry.transmits, -entry.order)


__all__ = ["BroadcastQueue"]
