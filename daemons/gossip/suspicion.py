"""Lifeguard suspicion timer with confirmations (memberlist `suspicion.go`).

A suspicion starts at its longest timeout and shrinks as other members
independently confirm it, because k separate accusers make a slow-observer
false positive unlikely:

    timeout(k) = max - log(k + 1) / log(K + 1) * (max - min),  floored at min

with K the number of confirmations that bring it to `min`. With K < 1 (tiny
clusters) the timeout is simply `min`. The timer is pure data: the state machine
asks `deadline` and fires it itself, so there is no clock here.
"""

from __future__ import annotations

import math


def suspicion_timeout(confirmations: int, expected: int, min_s: float, max_s: float) -> float:
    """Total suspicion timeout after `confirmations` of `expected` (K) confirmations."""
    if expected < 1:
        return min_s
    frac = math.log(confirmations + 1) / math.log(expected + 1)
    raw = max_s - frac * (max_s - min_s)
    # memberlist truncates to whole milliseconds; keeps figures comparable with its tests.
    timeout = math.floor(1000.0 * raw) / 1000.0
    return max(min_s, timeout)


class Suspicion:
    """One member's pending suspicion: when it started and who has confirmed it."""

    __slots__ = ("_accusers", "_expected", "_max", "_min", "start")

    def __init__(self, start: float, accuser: str, expected: int, min_s: float, max_s: float) -> None:
        self.start = start
        self._expected = expected
        self._min = min_s
        self._max = max_s
        # The first accuser does not count as a confirmation: it *is* the suspicion.
        self._accusers = {accuser}

    @property
    def confirmations(self) -> int:
        """Independent confirmations received beyond the initial accusation."""
        return len(self._accusers) - 1

    @property
    def deadline(self) -> float:
        """Time at which the suspect is declared dead unless it refutes first."""
        return self.start + suspicion_timeout(
            min(self.confirmations, max(self._expected, 0)), self._expected, self._min, self._max
        )

    def confirm(self, accuser: str) -> bool:
        """Count a confirmation; True only for a new accuser (worth re-gossiping)."""
        if self.confirmations >= self._expected or accuser in self._accusers:
            return False
        self._accusers.add(accuser)
        return True


__all__ = ["Suspicion", "suspicion_timeout"]
