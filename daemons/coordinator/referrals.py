"""The coordinator's side of hybrid scheduling: its model -> nodes map, for the peers.

Hybrid peers (daemons/node/hybrid_mode.py) refer to the coordinator only what needs its
global view: a cold start, an eviction or a migration, as an ordinary `Schedule` which it
decides as any other. What it adds is the map, Eagle's Succinct State Sharing (Delgado et
al., SoCC 2016) turned to model placement: a `ModelMap` (model -> the alive nodes holding it:
ready, loading, or a load just placed; daemons/policy/hybrid.py `model_map`) on the events
PUB every `model_map_s`, and at most MIN_GAP_S after a placement that loads a model, so the
peers place the requests that follow it on the node it chose.

`MapPublisher` is sans-IO: the server asks `due(now)` in its loop and sends `frame(...)`.
"""

from __future__ import annotations

import time

from daemons.bus import encode
from daemons.core.messages import ModelMap
from daemons.policy.hybrid import model_map
from daemons.policy.view import SERVE, ClusterView

MIN_GAP_S = 0.05  # maps at most this often however many loads are placed (a burst sends one)


class MapPublisher:
    """When the map is due, and its frames. `every_s` 0: never (no hybrid peers listen)."""

    def __init__(self, name: str, every_s: float) -> None:
        self.name, self.every_s = name, every_s
        self.seq = 0
        self._next = 0.0  # the next periodic map
        self._last = -MIN_GAP_S
        self._dirty = False

    def placed(self, action: str) -> None:
        """A placement was sent: one that loads or moves a model changes the map."""
        if action != SERVE:
            self._dirty = True

    def due(self, now: float) -> bool:
        if not self.every_s:
            return False
        return now >= self._next or (self._dirty and now >= self._last + MIN_GAP_S)

    def frame(self, view: ClusterView, epoch: int, now: float) -> bytes:
        """The map of `view` as a frame for the events PUB; the next is due `every_s` later."""
        return encode(ModelMap(self.name, epoch, self.sent(now), model_map(view), time.time()), self.name)

    def sent(self, now: float) -> int:
        """A map goes out now: its sequence number; the next is due `every_s` later, or sooner
        after a load (the simulator's coordinator sends its map without a frame)."""
        self.seq += 1
        self._dirty, self._last, self._next = False, now, now + self.every_s
        return self.seq
