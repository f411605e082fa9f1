"""Lifeguard's Local Health Multiplier (memberlist `awareness.go`).

A member that cannot get acks may be the sick one (overloaded CPU, stalled event
loop, lossy NIC) rather than its targets. Lifeguard measures that with a score
LHM in 0..max-1 and stretches the probe interval and timeout by (LHM + 1), so a
slow observer probes less often and waits longer before it accuses anyone.

Inputs (SWIM, DSN 2002; Lifeguard, arXiv 1707.00788; derived from SWIM and memberlist):
- +1 on a failed probe when no relay could nack (we cannot tell who is at fault);
- +(expected - received) nacks on a failed probe (silent relays mean *we* are cut off);
- +1 when refuting a suspicion about ourselves (others cannot hear us);
- -1 per successful probe;
- event-loop lateness: +1 when the 100 ms tick is late by more than the threshold,
  and -1 after a run of on-time ticks, but only to undo points lateness added, so a
  quiet loop cannot hide failed probes.
"""

from __future__ import annotations


class Awareness:
    """The local health score; only ever moves within [0, max_multiplier - 1]."""

    __slots__ = ("_lag_points", "_max", "_on_time", "_recovery_ticks", "_score", "_threshold")

    def __init__(self, max_multiplier: int, lag_threshold: float = 0.25, recovery_ticks: int = 10) -> None:
        if max_multiplier < 1:
            raise ValueError("max_multiplier must be >= 1")
        self._max = max_multiplier
        self._score = 0
        self._threshold = lag_threshold
        self._recovery_ticks = recovery_ticks
        self._on_time = 0
        # Points currently attributable to loop lag; on-time ticks may only remove these.
        self._lag_points = 0

    @property
    def score(self) -> int:
        """Current LHM, 0 = healthy."""
        return self._score

    def apply_delta(self, delta: int) -> int:
        """Move the score by `delta`, clamped to [0, max-1]; return the change applied."""
        before = self._score
        self._score = min(self._max - 1, max(0, before + delta))
        return self._score - before

    def scale(self, value: float) -> float:
        """`value` stretched by the current health: value * (LHM + 1)."""
        return value * (self._score + 1)

    def note_loop_lag(self, seconds: float) -> None:
        """Feed the lateness of one periodic event-loop tick (0 when on time)."""
        if seconds > self._threshold:
            self._on_time = 0
            self._lag_points += self.apply_delta(1)
            return
        self._on_time += 1
        if self._on_time >= self._recovery_ticks:
            self._on_time = 0
            if self._lag_points > 0:
                self._lag_points += self.apply_delta(-1)
        # A probe success may have consumed lag points already; never owe more than the score.
        self._lag_points = min(self._lag_points, self._score)


__all__ = ["Awareness"]
