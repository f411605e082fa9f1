"""Which coordinator the load generator asks: the Binary Star client side, without sockets.

With a standby (ZeroMQ Guide, ch. 4), schedule requests go to the coordinator that placed the
last request. One that leaves a request unplaced for `coordinator_timeout_s` is suspected
for `suspect_s` and the other is asked; one that answers `not_active` makes us switch to
the other unless that one is suspected (then we keep asking, after a back-off, until the
passive one takes over). Placements carry their coordinator's epoch: a placement from an
epoch older than the newest seen comes from a deposed coordinator and is not followed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field


@dataclass
class CoordinatorSet:
    endpoints: tuple[str, ...]
    suspect_s: float = 10.0
    active: str = ""
    epoch: int = 0  # the newest epoch any placement carried
    _suspect_until: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.endpoints:
            raise ValueError("at least one coordinator endpoint")
        self.active = self.active or self.endpoints[0]

    def placed(self, endpoint: str, epoch: int) -> bool:
        """A placement arrived from `endpoint`; False if its epoch is stale (do not follow it)."""
        if epoch < self.epoch:
            return False
        self.epoch = epoch
        if endpoint in self.endpoints:
            self.active = endpoint
            self._suspect_until.pop(endpoint, None)
        return True

    def timed_out(self, endpoint: str, now: float) -> None:
        """`endpoint` left a request unplaced: suspect it and ask the other."""
        self._suspect_until[endpoint] = now + self.suspect_s
        if endpoint == self.active:
            self.active = self._best_other(endpoint, now)

    def refused(self, endpoint: str, now: float) -> None:
        """`endpoint` is passive or deposed: switch, unless the other is suspected."""
        if endpoint != self.active:
            return
        other = self._best_other(endpoint, now)
        if not self._suspected(other, now):
            self.active = other

    def _best_other(self, endpoint: str, now: float) -> str:
        others = [e for e in self.endpoints if e != endpoint] or [endpoint]
        fine = [e for e in others if not self._suspected(e, now)]
        return fine[0] if fine else min(others, key=lambda e: self._suspect_until.get(e, -math.inf))

    def _suspected(self, endpoint: str, now: float) -> bool:
        return self._suspect_until.get(endpoint, -math.inf) > now
