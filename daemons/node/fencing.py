"""A node's side of coordinator failover, without sockets: the epoch fence and the witness vote.

Epoch fence (daemons/coordinator/failover.py): every placement carries the epoch of the
coordinator that made it; the node keeps the newest epoch it has seen (from placements and
`EpochNotice`) and refuses a placement of an older one with `stale_epoch`, so a deposed
coordinator (woken from a pause, or behind a healed partition) places nothing.

Witness vote: a standby about to take over asks the live nodes whether they cannot reach the
primary either. The node probes the primary's request endpoint for a window the query names,
bounded here, and grants the takeover only if the primary stays silent that long.

The real node (server.py) and the simulated one (daemons/sim/node.py) both apply these rules.
"""

from __future__ import annotations

from dataclasses import dataclass

PROBE_MIN_S = 0.05
PROBE_MAX_S = 5.0  # a query cannot hold a node's probe open longer than this


@dataclass
class EpochFence:
    epoch: int = 0  # the newest coordinator epoch seen

    def stale(self, epoch: int) -> str | None:
        """Why a placement made in `epoch` must not run (`stale_epoch`), or None when it may.
        Epoch 0: a coordinator without failover, which is never fenced."""
        if epoch and epoch < self.epoch:
            return f"placed in epoch {epoch}, but epoch {self.epoch} has begun: ask the active coordinator"
        return None

    def learn(self, epoch: int) -> bool:
        """Take `epoch` if it is newer; True when it was."""
        if epoch <= self.epoch:
            return False
        self.epoch = epoch
        return True


def probe_window(asked_s: float) -> float:
    """How long a witness waits for the coordinator it probes (the query's `probe_s`, bounded)."""
    return min(max(asked_s, PROBE_MIN_S), PROBE_MAX_S)


def witness_vote(answered: bool, endpoint: str, window_s: float) -> tuple[bool, str]:
    """(granted, why) once the probe of `endpoint` answered or stayed silent for `window_s`."""
    if answered:
        return False, f"{endpoint} answered"
    return True, f"{endpoint} silent for {window_s:g} s"
