"""The heap-backed broadcast queue picks exactly what sorting the whole queue would:
same items, same order, same transmit counting and pruning, after any sequence of
queue / get / drop / clear (the oracle below is the queue's rule written as a full sort)."""

from __future__ import annotations

from dataclasses import dataclass

from hypothesis import given, settings
from hypothesis import strategies as st

from daemons.gossip.broadcast import BroadcastQueue


@dataclass
class Item:
    item: str
    size: int
    order: int
    urgent: bool
    transmits: int = 0


class SortingOracle:
    """memberlist's rule, directly: sort everything by (not urgent, transmits, newest first)."""

    def __init__(self, max_items: int) -> None:
        self.entries: dict[str, Item] = {}
        self.max_items, self.order = max_items, 0

    def queue(self, key: str, item: str, size: int, urgent: bool) -> None:
        self.order += 1
        self.entries.pop(key, None)
        self.entries[key] = Item(item, size, self.order, urgent)
        if len(self.entries) > self.max_items:
            for k in self._sorted()[self.max_items:]:
                del self.entries[k]

    def get(self, budget: int, limit: int) -> list[str]:
        if not self.entries or budget <= 0:
            return []
        picked, used = [], 0
        for key in self._sorted():
            e = self.entries[key]
            if e.size + used <= budget:
                used += e.size
                picked.append(e.item)
                e.transmits += 1
                if e.transmits >= limit:
                    del self.entries[key]
        return picked

    def _sorted(self) -> list[str]:
        return sorted(self.entries, key=lambda k: (not self.entries[k].urgent, self.entries[k].transmits,
                                                   -self.entries[k].order))


keys = st.sampled_from("abcdefghij")
ops = st.lists(st.one_of(
    st.tuples(st.just("queue"), keys, st.integers(1, 60), st.booleans()),
    st.tuples(st.just("get"), st.integers(0, 150), st.integers(1, 4)),
    st.tuples(st.just("drop"), keys),
    st.tuples(st.just("clear"),),
), max_size=60)


@settings(max_examples=300, deadline=None)
@given(ops, st.integers(2, 8))
def test_heap_queue_picks_what_a_full_sort_picks(steps: list[tuple[object, ...]], max_items: int) -> None:
    q: BroadcastQueue[str] = BroadcastQueue(max_items)
    oracle = SortingOracle(max_items)
    for n, op in enumerate(steps):
        if op[0] == "queue":
            _, key, size, urgent = op
            q.queue(key, f"{key}{n}", int(str(size)), bool(urgent))
            oracle.queue(str(key), f"{key}{n}", int(str(size)), bool(urgent))
        elif op[0] == "get":
            _, budget, limit = op
            assert q.get(int(str(budget)), int(str(limit))) == oracle.get(int(str(budget)), int(str(limit)))
        elif op[0] == "drop":
            q.drop(op[1])
            oracle.entries.pop(str(op[1]), None)
        else:
            q.clear()
            oracle.entries.clear()
        assert len(q) == len(oracle.entries)


def test_stale_slots_are_compacted() -> None:
    q: BroadcastQueue[str] = BroadcastQueue()
    for n in range(10_000):
        q.queue("same", str(n), 10)  # each replaces the last: one live entry
    assert len(q) == 1
    assert len(q._heap) <= 2 * len(q) + 64 + 1  # the bound is the point
    assert q.get(100, 3) == ["9999"]
