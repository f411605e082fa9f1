"""One model instance's continuous batching on the virtual clock.

The same rules as the emulator's engine (daemons/emulator/engine.py): a request takes one
of `max_concurrent_requests` permits or is refused (`overloaded`); before each step
waiting requests join by `batch_rule.joins`; a step prefills the newcomers and decodes one
token of every running request, for `latency.step_seconds_from_sums`; each request's first
token comes at the end of its prefill step, and it finishes at `max_new_tokens`.

What differs is only how time passes (as in the engine, the step loop starts after every
request submitted at the same instant, so they share its first step). The engine sleeps
step by step; here a run of decode-only steps with an unchanged batch is one event: with
k requests decoding at total context S, step i (from 0) lasts a + δ·k·i where
a = α + δ·S + ε·k, so m steps take m·a + δ·k·m(m−1)/2 (the closed form of the same sum).
The run ends when the first of its requests finishes, or, when a newcomer arrives
meanwhile, at the end of the step under way, so the newcomer joins exactly where the
engine would have let it in.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from daemons.emulator.batch_rule import joins, prefill_budget
from daemons.emulator.engine import EngineLimits
from daemons.emulator.latency import step_seconds_from_sums
from daemons.profiles import LatencyCoefficients
from daemons.sim.clock import Clock

BUSY_WINDOW_S = 1.0  # as the engine's busy_ratio


@dataclass(eq=False, slots=True)
class Seq:
    """A request inside the batch."""

    input_tokens: int
    max_new: int
    on_first: Callable[[float], None]
    on_done: Callable[[float, int], None]
    generated: int = 0
    queued_at: float = 0.0

    @property
    def reserved(self) -> int:
        return self.input_tokens + self.max_new


class SimBatch:
    """The waiting queue, the running batch and its steps, for one instance."""

    def __init__(self, clock: Clock, coefficients: LatencyCoefficients, limits: EngineLimits) -> None:
        self.clock = clock
        self.c = coefficients
        self.limits = limits
        self.waiting: deque[Seq] = deque()
        self.running: list[Seq] = []
        self.kv_used = 0
        self.in_flight = 0  # permits taken: waiting + running
        self.steps = 0  # modelled steps, for the benchmark
        self._busy: deque[tuple[float, float]] = deque()
        self._version = 0  # bumps on every (re)scheduled end: stale end events are ignored
        self._run: tuple[float, float, float, int] | None = None  # decode run: start, a, increment, steps
        self._stepping = False
        self.closed = False

    # ----- admission --------------------------------------------------------------------
    def submit(self, seq: Seq) -> bool:
        """Queue `seq`; False (nothing queued) when every permit is taken: TGI's `overloaded`."""
        if self.in_flight >= self.limits.max_concurrent_requests:
            return False
        self.in_flight += 1
        seq.queued_at = self.clock.now
        self.waiting.append(seq)
        if not self._stepping:
            # The engine's step loop is its own task, woken by a submit (engine.py `run`): it
            # runs after every submit of this instant, so they all share its first step (the
            # waiters of a model that just loaded are prefilled together, as on the emulator).
            self._stepping = True
            self.clock.at(self.clock.now, self._step)
        elif self._run is not None:
            self._cut_run()
        return True

    def close(self) -> None:
        """The instance is gone (its node died): nothing more happens, nobody is told."""
        self.closed = True
        self._version += 1

    @property
    def queue_size(self) -> int:
        return len(self.waiting)

    def busy_ratio(self) -> float:
        now = self.clock.now
        since = now - BUSY_WINDOW_S
        while self._busy and self._busy[0][1] < since:
            self._busy.popleft()
        busy = sum(max(min(end, now) - max(start, since), 0.0) for start, end in self._busy)
        return min(max(busy / BUSY_WINDOW_S, 0.0), 1.0)

    # ----- steps -----------------------------------------------------------------------------
    def _admit(self) -> list[Seq]:
        budget = prefill_budget(self.limits.max_batch_prefill_tokens, len(self.running))
        admitted: list[Seq] = []
        while self.waiting:
            seq = self.waiting[0]
            if not joins(not admitted, seq.input_tokens, seq.reserved, budget, self.kv_used,
                         self.limits.max_batch_total_tokens):
                break
            self.waiting.popleft()
            self.kv_used += seq.reserved
            budget -= seq.input_tokens
            admitted.append(seq)
        return admitted

    def _step(self) -> None:
        """Start the next step (a prefill step, or a run of decode steps) from now."""
        if self.closed:
            return
        now = self.clock.now
        admitted = self._admit()
        decoding = self.running
        if not admitted and not decoding:
            self._stepping = False
            return
        self._stepping = True
        self._version += 1
        version = self._version
        if admitted:
            n_prefill = sum(s.input_tokens for s in admitted)
            sum_sq = sum(s.input_tokens * s.input_tokens for s in admitted)
            sum_ctx = sum(s.input_tokens + s.generated for s in decoding)
            step = step_seconds_from_sums(self.c, n_prefill, sum_sq, sum_ctx, len(decoding))
            self.running = decoding + admitted
            self._run = None
            self._mark_busy(now, now + step)
            self.clock.at(now + step, lambda: self._end(version, 1, admitted))
            return
        k = len(decoding)
        sum_ctx = sum(s.input_tokens + s.generated for s in decoding)
        a = self.c.alpha + self.c.delta * sum_ctx + self.c.epsilon * k
        inc = self.c.delta * k
        m = min(s.max_new - s.generated for s in decoding)
        self._run = (now, a, inc, m)
        end = now + _run_seconds(a, inc, m)
        self._mark_busy(now, end)
        self.clock.at(end, lambda: self._end(version, m, []))

    def _cut_run(self) -> None:
        """A newcomer arrived during a decode run: end the run with the step under way."""
        assert self._run is not None
        start, a, inc, m = self._run
        done = _steps_within(a, inc, self.clock.now - start)
        cut = min(m, done + 1)
        if cut >= m:
            return  # the run ends with this step anyway
        self._version += 1
        version = self._version
        self._run = (start, a, inc, cut)
        end = start + _run_seconds(a, inc, cut)
        if self._busy:
            self._busy[-1] = (self._busy[-1][0], end)
        self.clock.at(end, lambda: self._end(version, cut, []))

    def _end(self, version: int, steps: int, admitted: list[Seq]) -> None:
        if version != self._version or self.closed:
            return
        now = self.clock.now
        self.steps += steps
        self._run = None
        still: list[Seq] = []
        for seq in self.running:
            seq.generated += steps
            if seq.generated == steps and seq in admitted:
                seq.on_first(now)
            if seq.generated >= seq.max_new:
                self.kv_used -= seq.reserved
                self.in_flight -= 1
                seq.on_done(now, seq.generated)
            else:
                still.append(seq)
        self.running = still
        self._step()

    def _mark_busy(self, start: float, end: float) -> None:
        self._busy.append((start, end))


def _run_seconds(a: float, inc: float, m: int) -> float:
    """Duration of m decode steps whose i-th (from 0) lasts a + inc·i."""
    return m * a + inc * m * (m - 1) / 2


def _steps_within(a: float, inc: float, elapsed: float) -> int:
    """How many whole steps of a run fit in `elapsed` seconds (the largest j with T(j) <= elapsed)."""
    if elapsed <= 0:
        return 0
    if inc <= 0:
        return int(elapsed // a) if a > 0 else 0
    # inc/2·j² + (a − inc/2)·j − elapsed = 0
    half = inc / 2
    b = a - half
    j = int((-b + math.sqrt(b * b + 4 * half * elapsed)) / (2 * half))
    while j > 0 and _run_seconds(a, inc, j) > elapsed:
        j -= 1
    while _run_seconds(a, inc, j + 1) <= elapsed:
        j += 1
    return j
