"""The batching engine in-process: admission, budgets, step timing, finish rules."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import AsyncIterator

import pytest

from daemons.emulator.engine import Engine, EngineLimits, Generation, Overloaded, RequestTimes
from daemons.emulator.metrics import Metrics
from daemons.emulator.validation import GenerateParams, Limits, validate
from daemons.profiles import LatencyCoefficients

LIMITS = Limits(max_input_tokens=100, max_total_tokens=200)
STEP = 0.02  # alpha only: every step lasts 20 ms


def flat(alpha: float = STEP, epsilon: float = 0.0) -> LatencyCoefficients:
    return LatencyCoefficients(alpha=alpha, beta=0.0, gamma=0.0, delta=0.0, epsilon=epsilon)


def make_engine(coefficients: LatencyCoefficients | None = None, *, concurrent: int = 8,
                prefill: int = 150, kv: int = 10_000, eos_rate: float = 0.0) -> Engine:
    metrics = Metrics(LIMITS.max_input_tokens, LIMITS.max_total_tokens, kv)
    return Engine(coefficients or flat(), EngineLimits(concurrent, prefill, kv), metrics, seed=7,
                  eos_rate=eos_rate)


@pytest.fixture
async def engine() -> AsyncIterator[Engine]:
    async with running(make_engine()) as e:
        yield e


class running:
    """Run an engine's step loop for the duration of an `async with`."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Engine:
        self.task = asyncio.create_task(self.engine.run())
        return self.engine

    async def __aexit__(self, *exc: object) -> None:
        assert self.task is not None
        self.task.cancel()
        await asyncio.gather(self.task, return_exceptions=True)


def submit(engine: Engine, prompt: str = "one two three four five", *, streaming: bool = False,
           **params: object) -> Generation:
    valid = validate(prompt, GenerateParams(**params), LIMITS, random.Random(0))  # type: ignore[arg-type]
    return engine.submit(valid, RequestTimes(start=time.monotonic()), engine.acquire(), streaming=streaming)


async def test_first_token_comes_from_the_prefill_step(engine: Engine) -> None:
    gen = submit(engine, max_new_tokens=5)
    await asyncio.wait_for(gen.done.wait(), 5)
    t = gen.times
    assert gen.finish_reason == "length" and len(gen.generated) == 5
    assert STEP * 0.9 <= t.first_token - t.batch_start <= STEP + 0.015
    assert 4 * STEP * 0.9 <= t.end - t.first_token <= 4 * STEP + 0.03


async def test_steps_do_not_drift(engine: Engine) -> None:
    gen = submit(engine, max_new_tokens=60)
    await asyncio.wait_for(gen.done.wait(), 10)
    elapsed = gen.times.end - gen.times.batch_start
    assert elapsed + 0.001 >= 60 * STEP
    assert elapsed < 60 * STEP + 0.03  # jitter is not accumulated step after step


async def test_streaming_yields_every_token_in_order(engine: Engine) -> None:
    gen = submit(engine, streaming=True, max_new_tokens=4)
    seen = [await asyncio.wait_for(gen.queue.get(), 2) for _ in range(4)]
    assert [s.index for s in seen] == [1, 2, 3, 4]
    assert [s.finish_reason for s in seen] == [None, None, None, "length"]
    assert [s.token for s in seen] == gen.generated


async def test_permits_cover_queued_and_running() -> None:
    async with running(make_engine(concurrent=2)) as engine:
        first = submit(engine, max_new_tokens=3)
        submit(engine, max_new_tokens=3)
        with pytest.raises(Overloaded, match="Model is overloaded"):
            engine.acquire()
        await asyncio.wait_for(first.done.wait(), 2)
        engine.acquire().release()


async def test_kv_budget_holds_requests_in_the_queue() -> None:
    # Each request reserves 5 input + 10 new = 15 KV slots; 30 fit two at a time.
    async with running(make_engine(kv=30)) as engine:
        gens = [submit(engine, max_new_tokens=10) for _ in range(3)]
        await asyncio.sleep(STEP / 2)
        m = engine.metrics
        assert (m.batch_current_size, m.queue_size, m.batch_current_max_tokens) == (2, 1, 30)
        await asyncio.wait_for(gens[2].done.wait(), 5)
        assert gens[2].times.batch_start >= gens[0].times.end - 0.001
        assert (m.batch_current_size, m.queue_size, m.batch_current_max_tokens) == (0, 0, 0)


async def test_prefill_budget_spreads_admission_over_steps() -> None:
    async with running(make_engine(prefill=8)) as engine:
        gens = [submit(engine, max_new_tokens=3) for _ in range(2)]  # 5 prompt tokens each
        await asyncio.wait_for(gens[1].done.wait(), 5)
        assert gens[1].times.batch_start - gens[0].times.batch_start >= STEP * 0.9


async def test_step_time_follows_the_batch() -> None:
    # epsilon = 10 ms per decoding request: 4 requests make 40 ms decode steps.
    async with running(make_engine(flat(alpha=0.005, epsilon=0.01))) as engine:
        gens = [submit(engine, max_new_tokens=6) for _ in range(4)]
        await asyncio.wait_for(asyncio.gather(*(g.done.wait() for g in gens)), 5)
        g = gens[0]
        per_token = (g.times.end - g.times.first_token) / 5
        assert per_token == pytest.approx(0.045, abs=0.01)


async def test_greedy_output_is_deterministic_and_seeded_sampling_too(engine: Engine) -> None:
    a, b = submit(engine, max_new_tokens=6), submit(engine, max_new_tokens=6)
    c = submit(engine, "another prompt entirely", max_new_tokens=6)
    s1, s2 = (submit(engine, max_new_tokens=6, do_sample=True, seed=s) for s in (1, 1))
    s3 = submit(engine, max_new_tokens=6, do_sample=True, seed=2)
    await asyncio.wait_for(asyncio.gather(*(g.done.wait() for g in (a, b, c, s1, s2, s3))), 5)
    assert a.generated_text == b.generated_text != c.generated_text
    assert s1.generated_text == s2.generated_text != s3.generated_text


async def test_stop_sequence_ends_generation(engine: Engine) -> None:
    probe = submit(engine, max_new_tokens=6)
    await asyncio.wait_for(probe.done.wait(), 5)
    third = probe.generated[2].text.strip()
    gen = submit(engine, max_new_tokens=6, stop=(third,))
    await asyncio.wait_for(gen.done.wait(), 5)
    assert gen.finish_reason == "stop_sequence"
    assert gen.generated_text.endswith(third)
    assert len(gen.generated) <= 3


async def test_eos_rate_ends_with_a_special_token() -> None:
    async with running(make_engine(flat(alpha=0.001), eos_rate=0.5)) as engine:
        gen = submit(engine, max_new_tokens=50)
        await asyncio.wait_for(gen.done.wait(), 5)
    assert gen.finish_reason == "eos_token"
    assert gen.generated[-1].special and gen.generated[-1].text == "</s>"
    assert "</s>" not in gen.generated_text


async def test_cancelled_request_is_dropped_and_frees_its_permit() -> None:
    async with running(make_engine(concurrent=1)) as engine:
        gen = submit(engine, streaming=True, max_new_tokens=100)
        await asyncio.wait_for(gen.queue.get(), 2)
        gen.cancel()
        await asyncio.wait_for(gen.done.wait(), 2)
        assert engine.metrics.request_failure["dropped"] == 1
        engine.acquire().release()
        assert engine.metrics.batch_current_max_tokens == 0
