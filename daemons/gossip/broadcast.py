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
"""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass
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


class BroadcastQueue(Generic[T]):
    """Updates waiting to be piggybacked, each sent at most `limit` times."""

    __slots__ = ("_entries", "_max_items", "_next_order")

    def __init__(self, max_items: int = 4096) -> None:
        self._entries: dict[Hashable, _Entry[T]] = {}
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
        self._entries.pop(key, None)
        self._entries[key] = _Entry(key, item, size, self._next_order, urgent)
        if len(self._entries) > self._max_items:
            self._prune(self._max_items)

    def get(self, budget: int, limit: int) -> list[T]:
        """Items fitting in `budget` bytes, in priority order; each use counts a transmission.

        Items reaching `limit` transmissions leave the queue.
        """
        if not self._entries or budget <= 0:
            return []
        picked: list[T] = []
        used = 0
        smallest = min(e.size for e in self._entries.values())
        for entry in sorted(self._entries.values(), key=_priority):
            if entry.size + used > budget:
                if budget - used < smallest:
                    break  # nothing else can fit
                continue
            used += entry.size
            picked.append(entry.item)
            entry.transmits += 1
            if entry.transmits >= limit:
                del self._entries[entry.key]
        return picked

    def drop(self, key: Hashable) -> None:
        """Forget the queued item for `key`, if any."""
        self._entries.pop(key, None)

    def clear(self) -> None:
        """Forget every queued item."""
        self._entries.clear()

    def _prune(self, keep: int) -> None:
        # The most-transmitted (then oldest) entries carry the least news.
        doomed = sorted(self._entries.values(), key=_priority)[keep:]
        for entry in doomed:
            del self._entries[entry.key]


def _priority(entry: _Entry[T]) -> tuple[bool, int, int]:
    return (not entry.urgent, entry.transmits, -entry.order)


__all__ = ["BroadcastQueue"]
