"""Which loaded model makes room for another: the node's eviction rule, pure.

A node evicts only idle ready instances (no request running or waiting on them), least
recently used first; a model fits once the free memory plus those idle instances' memory
covers its footprint. The node agent's ModelManager (instances.py) and the simulator's
node (daemons/sim/node.py) both ask these functions.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, Protocol, TypeVar


class Held(Protocol):
    """What the rule reads of one instance."""

    @property
    def running(self) -> int: ...
    @property
    def state(self) -> str: ...
    @property
    def last_used(self) -> float: ...
    @property
    def footprint(self) -> int: ...


H = TypeVar("H", bound=Held)


def evictable(instance: Held) -> bool:
    return instance.running == 0 and instance.state == "ready"


def lru_idle(instances: Iterable[H], key: Callable[[H], Any] | None = None) -> H | None:
    """The idle ready instance to evict next: the one used least recently, or the least by `key`
    (with pre-warming on, least expected use: daemons/policy/prewarm.py); None if all are busy."""
    return min((i for i in instances if evictable(i)), key=key or _last_used, default=None)


def _last_used(instance: Held) -> float:
    return instance.last_used


def fits_after_eviction(footprint: int, memory_total: int, instances: Iterable[Held]) -> bool:
    """A model of `footprint` bytes fits once the idle instances are evicted."""
    held = list(instances)
    used = sum(i.footprint for i in held)
    idle = sum(i.footprint for i in held if evictable(i))
    return footprint <= memory_total - used + idle
