"""What an experiment run says while it runs: its expected length up front, then one line
every `every_s` seconds naming the scheduler, elapsed and remaining time and success so far,
and one line per fault as it is injected.

Sans-IO: `Ticker` turns the load generator's once-a-second `Progress` beats and the fault
injector's records into the lines to print (or None); the runner prints them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from daemons.loadgen.results import Progress

EVERY_S = 10.0  # one line per 10 s of arrivals: 6 lines for a default 60 s arm, not 60
START_S = 10.0  # a local cluster's start-up (measured 3..8 s on 2 cores), rounded up
STOP_S = 10.0  # teardown, collection, summary and plots of one arm
# The injector's records that are worth a line as they happen (events.csv keeps every one).
FAULT_WORDS = {"fault": "fault", "resumed": "resumed", "healed": "healed", "started_again": "started again",
               "injection_failed": "fault injection failed"}


def expected_s(duration_s: float, arms: int) -> float:
    """About how long a run takes: per arm, start-up, the arrivals and the teardown. The drain of
    the last requests (up to the per-request timeout) comes on top when the cluster falls behind."""
    return arms * (START_S + duration_s + STOP_S)


def expected_line(duration_s: float, arms: list[str], timeout_s: float) -> str:
    total = expected_s(duration_s, len(arms))
    per_arm = f"{duration_s:g} s of arrivals" + (f" per arm ({', '.join(arms)})" if len(arms) > 1 else "")
    return (f"expected duration: about {_clock(total)}: {per_arm}, plus start-up and teardown; up to "
            f"{timeout_s:g} s more per arm while the last requests finish")


@dataclass
class Ticker:
    """Progress lines of one arm."""

    scheduler: str
    duration_s: float
    every_s: float = EVERY_S
    _next_s: float = 0.0
    _faults: list[str] = field(default_factory=list)

    def beat(self, p: Progress) -> str | None:
        """The line for this beat, or None between lines; the last beat (all answered) always prints."""
        done = p.sent == p.total and p.in_flight == 0
        if p.elapsed_s < self._next_s and not done:
            return None
        self._next_s = (math.floor(p.elapsed_s / self.every_s) + 1) * self.every_s
        return self.line(p)

    def line(self, p: Progress) -> str:
        answered = p.ok + p.error + p.timeout
        success = f"{100.0 * p.ok / answered:.1f} %" if answered else "-"
        left = self.duration_s - p.elapsed_s
        when = (f"{_clock(p.elapsed_s)} of {_clock(self.duration_s)} ({_clock(left)} of arrivals left)" if left > 0
                else f"{_clock(p.elapsed_s)}, arrivals done, " +
                (f"draining {p.in_flight} in flight" if p.in_flight else "all answered"))
        faults = f"  faults: {'; '.join(self._faults)}" if self._faults else ""
        return (f"[{self.scheduler}] {when}  "
                f"sent {p.sent}/{p.total}  ok {p.ok} ({success})  error {p.error}  timeout {p.timeout}"
                f"{faults}")

    def fault(self, kind: str, target: str, detail: str, at: float) -> str | None:
        """A line for a fault record `at` seconds after t = 0, as it happens (also named in the
        following progress lines); None for records that are not worth a line."""
        word = FAULT_WORDS.get(kind)
        if word is None:
            return None
        what = detail.split(";")[0].removeprefix("kind=") if kind == "fault" else ""
        text = f"{what or word} {target} at {at:.0f} s"
        self._faults.append(text)
        label = "fault: " if kind == "fault" else ""
        return f"[{self.scheduler}] {label}{text}" + (f": {detail}" if kind == "injection_failed" else "")


def _clock(seconds: float) -> str:
    seconds = max(0.0, seconds)
    minutes, secs = divmod(round(seconds), 60)
    return f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"
