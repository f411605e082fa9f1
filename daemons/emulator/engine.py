"""Continuous batching over the step-time model (TGI docs, launcher.md).

- Admission: `acquire()` takes one of `max_concurrent_requests` permits, which cover
  queued + running requests; none left → `Overloaded`.  A permit is given back when its
  request finishes or its client goes away.
- Queue: FIFO.  Before every step the loop admits waiting requests into the running
  batch while their prompts fit the prefill budget (`max_batch_prefill_tokens` minus one
  token per running request, as with TGI v3's chunked prefill; the head of the queue
  is always let in so a long prompt cannot starve) and their `input + max_new_tokens`
  fit the KV budget (`max_batch_total_tokens`).
- Step: prefill of the admitted requests + one decode token of every running one, for
  `latency.step_seconds(...)`, slept against absolute monotonic deadlines so that
  scheduling jitter does not accumulate (a loop more than `MAX_LAG_S` behind gives up
  catching up and starts again from now).  Each step emits one token per running
  request; the prefill step yields the request's first token.
- Finish (TGI's order): `length` at max_new_tokens, then `eos_token`, then
  `stop_sequence` when the generated text ends with a stop string.
- Accounting: the sequences of one `best_of` request form a `Group`; the request is
  recorded once (success of the best sequence, or one `dropped`), as TGI's router does.
- Busy ratio: the fraction of the last second of wall time covered by modelled steps
  (`busy_ratio()`), what an emulated GPU reports as its compute utilisation.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from dataclasses import dataclass, field

from daemons.emulator import tokens
from daemons.emulator.batch_rule import joins, prefill_budget
from daemons.emulator.latency import step_seconds_from_sums
from daemons.emulator.metrics import DURATION_BUCKETS, Histogram, Metrics
from daemons.emulator.validation import ValidRequest
from daemons.profiles import LatencyCoefficients

#: Behind schedule by more than this, the loop stops catching up (it is overloaded).
MAX_LAG_S = 0.25
#: Stop sequences are matched against this many trailing characters (as TGI's server).
STOP_TAIL_CHARS = 300
#: The window of `Engine.busy_ratio`.
BUSY_WINDOW_S = 1.0


class Overloaded(Exception):
    error_type = "overloaded"

    def __init__(self) -> None:
        super().__init__("Model is overloaded")

    @property
    def message(self) -> str:
        return str(self)


@dataclass(frozen=True, slots=True)
class EngineLimits:
    max_concurrent_requests: int
    max_batch_prefill_tokens: int
    max_batch_total_tokens: int


@dataclass(slots=True)
class RequestTimes:
    """Monotonic timestamps of one request, for TGI's timing headers and histograms."""

    start: float
    queued: float = 0.0
    batch_start: float = 0.0
    first_token: float = 0.0
    end: float = 0.0


@dataclass(frozen=True, slots=True)
class StreamToken:
    """One generated token as the engine hands it to a streaming route."""

    index: int  # 1-based, as in TGI's stream events
    token: tokens.Token
    top_tokens: list[tokens.Token]
    finish_reason: str | None  # set on the last token only


class Permit:
    """One of the `max_concurrent_requests` slots; releasing twice is harmless."""

    __slots__ = ("_engine", "_held")

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._held = True

    def release(self) -> None:
        if self._held:
            self._held = False
            self._engine.in_flight -= 1


@dataclass(eq=False, slots=True)
class Group:
    """The sequences of one request (several with best_of); recorded once, when all are done."""

    members: list[Generation] = field(default_factory=list)
    recorded: bool = False

    def finished(self) -> bool:
        return all(g.finish_reason is not None for g in self.members)


def pick_best(generations: list[Generation]) -> Generation:
    """TGI's best_of pick: the highest mean token logprob."""

    def mean_logprob(g: Generation) -> float:
        return sum(t.logprob for t in g.generated) / max(len(g.generated), 1)

    return max(generations, key=mean_logprob)


@dataclass(eq=False, slots=True)
class Generation:
    """A request inside the engine: its state, its output, and how the route waits on it."""

    request: ValidRequest
    times: RequestTimes
    permit: Permit
    stream: tokens.TokenStream
    streaming: bool
    queue: asyncio.Queue[StreamToken] = field(default_factory=asyncio.Queue)
    done: asyncio.Event = field(default_factory=asyncio.Event)
    generated: list[tokens.Token] = field(default_factory=list)
    top_tokens: list[list[tokens.Token]] = field(default_factory=list)
    tail: str = ""
    finish_reason: str | None = None
    cancelled: bool = False
    running: bool = False  # admitted into the batch: holds KV slots
    group: Group | None = None

    @property
    def reserved_tokens(self) -> int:
        """KV slots this request holds while running: its whole possible length."""
        return self.request.input_length + self.request.max_new_tokens

    @property
    def generated_text(self) -> str:
        return "".join(t.text for t in self.generated if not t.special)

    def cancel(self) -> None:
        """The client went away: the engine drops the request at its next step."""
        if self.finish_reason is None:
            self.cancelled = True


class Engine:
    """One model on one GPU: the waiting queue, the running batch and the step loop."""

    def __init__(
        self,
        coefficients: LatencyCoefficients,
        limits: EngineLimits,
        metrics: Metrics,
        *,
        seed: int = 0,
        eos_rate: float = 0.0,
    ) -> None:
        self.coefficients = coefficients
        self.limits = limits
        self.metrics = metrics
        self.seed = seed
        self.eos_rate = eos_rate
        self.in_flight = 0
        self.step_lag = Histogram(DURATION_BUCKETS)
        self._waiting: deque[Generation] = deque()
        self._running: list[Generation] = []
        self._kv_used = 0
        self._wake = asyncio.Event()
        self._steps: deque[tuple[float, float]] = deque()  # (start, end) of recent steps

    # -- admission ---------------------------------------------------------------------

    def acquire(self) -> Permit:
        """Take a concurrency permit or raise Overloaded (TGI's `try_acquire_owned`)."""
        if self.in_flight >= self.limits.max_concurrent_requests:
            raise Overloaded()
        self.in_flight += 1
        return Permit(self)

    def submit(self, request: ValidRequest, times: RequestTimes, permit: Permit, *, streaming: bool,
               group: Group | None = None) -> Generation:
        """Queue a validated request; the caller waits on `.queue` (streaming) or `.done`."""
        seed = request.seed if request.sampling else tokens.greedy_seed(self.seed, request.inputs)
        stream = tokens.TokenStream(seed, self.eos_rate)
        group = group if group is not None else Group()
        gen = Generation(request, times, permit, stream, streaming, group=group)
        group.members.append(gen)
        times.queued = time.monotonic()
        self._waiting.append(gen)
        self.metrics.queue_size = len(self._waiting)
        self._wake.set()
        return gen

    def _admit(self) -> list[Generation]:
        budget = prefill_budget(self.limits.max_batch_prefill_tokens, len(self._running))
        admitted: list[Generation] = []
        while self._waiting:
            gen = self._waiting[0]
            if gen.cancelled:
                self._waiting.popleft()
                self._drop(gen)
                continue
            n = gen.request.input_length
            if not joins(not admitted, n, gen.reserved_tokens, budget, self._kv_used,
                         self.limits.max_batch_total_tokens):
                break
            self._waiting.popleft()
            gen.running = True
            self._kv_used += gen.reserved_tokens
            budget -= n
            admitted.append(gen)
        return admitted

    # -- the step loop -----------------------------------------------------------------

    async def run(self) -> None:
        """The batching task: runs until cancelled."""
        deadline: float | None = None
        while True:
            if not self._running and not self._waiting:
                deadline = None
                self._wake.clear()
                await self._wake.wait()
            now = time.monotonic()
            admitted = self._admit()
            decoding = self._running
            if not admitted and not decoding:  # only cancelled requests were waiting
                self._publish_gauges()
                continue
            step = self._step_time(admitted, decoding)
            for gen in admitted:
                gen.times.batch_start = now
            self._running = decoding + admitted
            self._publish_gauges()
            if deadline is None or now - deadline > MAX_LAG_S:
                deadline = now
            self.step_lag.observe(max(now - deadline, 0.0))
            self._mark_busy(max(deadline, now), deadline + step)
            deadline += step
            await asyncio.sleep(deadline - time.monotonic())
            self._emit()
            self._count_step(admitted, decoding, step)

    def _mark_busy(self, start: float, end: float) -> None:
        self._steps.append((start, end))
        horizon = time.monotonic() - BUSY_WINDOW_S
        while self._steps and self._steps[0][1] < horizon:
            self._steps.popleft()

    def busy_ratio(self, now: float | None = None) -> float:
        """Fraction of the last `BUSY_WINDOW_S` of wall time spent in (modelled) steps, 0..1."""
        now = time.monotonic() if now is None else now
        since = now - BUSY_WINDOW_S
        busy = sum(max(min(end, now) - max(start, since), 0.0) for start, end in self._steps)
        return min(max(busy / BUSY_WINDOW_S, 0.0), 1.0)

    def _step_time(self, admitted: list[Generation], decoding: list[Generation]) -> float:
        n_prefill = 0
        sum_sq = 0
        for gen in admitted:
            n = gen.request.input_length
            n_prefill += n
            sum_sq += n * n
        sum_ctx = 0
        for gen in decoding:
            sum_ctx += gen.request.input_length + len(gen.generated)
        return step_seconds_from_sums(self.coefficients, n_prefill, sum_sq, sum_ctx, len(decoding))

    def _emit(self) -> None:
        still: list[Generation] = []
        now = time.monotonic()
        for gen in self._running:
            if gen.cancelled:
                self._drop(gen)
            elif self._next_token(gen, now):
                still.append(gen)
        self._running = still
        self._publish_gauges()

    def _next_token(self, gen: Generation, now: float) -> bool:
        """Produce one token for `gen`; False once it is finished."""
        token = gen.stream.next()
        top_n = gen.request.params.top_n_tokens or 0
        top = gen.stream.alternatives(token, top_n)
        gen.generated.append(token)
        if top:
            gen.top_tokens.append(top)
        if len(gen.generated) == 1:
            gen.times.first_token = now
        reason = self._finish_reason(gen, token)
        if gen.streaming:
            gen.queue.put_nowait(StreamToken(len(gen.generated), token, top, reason))
        if reason is None:
            return True
        gen.finish_reason = reason
        gen.times.end = now
        self._release(gen)
        group = gen.group
        if group is not None and group.finished() and not group.recorded:
            group.recorded = True
            self._record_success(pick_best(group.members))
        gen.done.set()
        return False

    def _finish_reason(self, gen: Generation, token: tokens.Token) -> str | None:
        if len(gen.generated) >= gen.request.max_new_tokens:
            return "length"
        if token.special and token.id == tokens.EOS_ID:
            return "eos_token"
        stops = gen.request.params.stop
        if stops:
            gen.tail = (gen.tail + token.text)[-STOP_TAIL_CHARS:]
            if any(gen.tail.endswith(s) for s in stops if s):
                return "stop_sequence"
        return None

    # -- bookkeeping -------------------------------------------------------------------

    def _release(self, gen: Generation) -> None:
        if gen.running:
            gen.running = False
            self._kv_used -= gen.reserved_tokens
        gen.permit.release()

    def _drop(self, gen: Generation) -> None:
        """Forget a request whose client went away (TGI counts it as `dropped`, once per request)."""
        self._release(gen)
        if gen.group is None or not gen.group.recorded:
            if gen.group is not None:
                gen.group.recorded = True
            self.metrics.fail("dropped")
        gen.done.set()

    def _publish_gauges(self) -> None:
        m = self.metrics
        m.queue_size = len(self._waiting)
        m.batch_current_size = len(self._running)
        m.batch_current_max_tokens = self._kv_used

    def _count_step(self, admitted: list[Generation], decoding: list[Generation], step: float) -> None:
        m = self.metrics
        if admitted:
            m.batch_inference_count["prefill"] += 1
            m.batch_inference_success["prefill"] += 1
            m.batch_next_size.observe(len(admitted))
            if decoding:  # new requests joined a running batch (TGI v3 chunked prefill)
                m.batch_concat["chunking"] += 1
                m.batch_durations["concat"]["prefill"].observe(0.0)
        if decoding:
            m.batch_inference_count["decode"] += 1
            m.batch_inference_success["decode"] += 1
        method = "prefill" if admitted else "decode"
        m.batch_durations["inference"][method].observe(step)
        m.batch_durations["forward"][method].observe(step)
        m.batch_durations["decode"][method].observe(0.0)  # detokenizing costs the emulator nothing
        m.batch_durations["filter"][method].observe(0.0)

    def _record_success(self, gen: Generation) -> None:
        m = self.metrics
        t = gen.times
        n = len(gen.generated)
        m.request_success += 1
        m.durations["duration"].observe(t.end - t.start)
        m.durations["validation_duration"].observe(t.queued - t.start)
        m.durations["queue_duration"].observe(t.batch_start - t.queued)
        m.durations["inference_duration"].observe(t.end - t.batch_start)
        m.durations["mean_time_per_token_duration"].observe((t.end - t.batch_start) / n)
        m.input_length.observe(gen.request.input_length)
        m.generated_tokens.observe(n)
        m.max_new_tokens.observe(gen.request.max_new_tokens)
        m.skipped_tokens.observe(0)
