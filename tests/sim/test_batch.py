"""The simulated batch against a step-by-step replay of the emulator's batching rules.

SimBatch jumps over runs of decode steps in closed form; the reference below takes every
step as the emulator's engine does (batch_rule.joins, step_seconds_from_sums, one token
per running request per step). Both must give every request the same first-token and
completion times, with newcomers arriving in the middle of decode runs.
"""

from __future__ import annotations

import pytest

from daemons.emulator.batch_rule import joins, prefill_budget
from daemons.emulator.engine import EngineLimits
from daemons.emulator.latency import step_seconds_from_sums
from daemons.gossip.config import GossipConfig
from daemons.profiles import load_gpu, load_model
from daemons.sim.batch import Seq, SimBatch
from daemons.sim.clock import Clock

COEF = load_model("meta-llama/Llama-2-7b-hf").latency_on(load_gpu("a100-80gb"))
LIMITS = EngineLimits(max_concurrent_requests=8, max_batch_prefill_tokens=1200, max_batch_total_tokens=6000)
# (arrival s, prompt tokens, new tokens): arrivals inside decode runs, a long prompt, a KV-bound wait
ARRIVALS = [(0.0, 300, 40), (0.05, 500, 10), (0.06, 900, 25), (0.3, 100, 60), (0.31, 1000, 5), (0.9, 2000, 30),
            (1.0, 50, 1)]


def reference(arrivals: list[tuple[float, int, int]]) -> dict[int, tuple[float, float]]:
    """Step by step, as daemons/emulator/engine.py runs: request index -> (first token, done)."""
    pending = sorted(enumerate(arrivals), key=lambda x: x[1][0])
    waiting: list[tuple[int, int, int]] = []  # (index, prompt, new)
    running: list[list[int]] = []  # [index, prompt, new, generated]
    kv, now, out = 0, 0.0, {}
    first: dict[int, float] = {}
    while pending or waiting or running:
        while pending and pending[0][1][0] <= now + 1e-12:
            i, (_, p, n) = pending.pop(0)
            waiting.append((i, p, n))
        if not waiting and not running:
            now = pending[0][1][0]
            continue
        budget = prefill_budget(LIMITS.max_batch_prefill_tokens, len(running))
        admitted = []
        while waiting and joins(not admitted, waiting[0][1], waiting[0][1] + waiting[0][2], budget, kv,
                                LIMITS.max_batch_total_tokens):
            i, p, n = waiting.pop(0)
            kv += p + n
            budget -= p
            admitted.append([i, p, n, 0])
        step = step_seconds_from_sums(COEF, sum(a[1] for a in admitted), sum(a[1] ** 2 for a in admitted),
                                      sum(r[1] + r[3] for r in running), len(running))
        now += step
        running += admitted
        still = []
        for r in running:
            r[3] += 1
            if r[3] == 1:
                first[r[0]] = now
            if r[3] >= r[2]:
                kv -= r[1] + r[2]
                out[r[0]] = (first[r[0]], now)
            else:
                still.append(r)
        running = still
    return out


def simulated(arrivals: list[tuple[float, int, int]]) -> dict[int, tuple[float, float]]:
    clock = Clock(GossipConfig.preset("lan"), 0, (0.001, 0.001))
    batch = SimBatch(clock, COEF, LIMITS)
    firsts: dict[int, float] = {}
    out: dict[int, tuple[float, float]] = {}
    for i, (t, p, n) in enumerate(arrivals):
        def arrive(i: int = i, p: int = p, n: int = n) -> None:
            seq = Seq(p, n, lambda at: firsts.__setitem__(i, at), lambda at, _: out.__setitem__(i, (firsts[i], at)))
            assert batch.submit(seq)
        clock.at(t, arrive)
    clock.run_until(60.0)
    return out


def test_closed_form_decode_runs_match_the_engine_step_by_step() -> None:
    want, got = reference(ARRIVALS), simulated(ARRIVALS)
    assert set(got) == set(want) == set(range(len(ARRIVALS)))
    for i in want:
        assert got[i] == pytest.approx(want[i], abs=1e-9), i


def test_a_full_batch_refuses_like_tgi_overloaded() -> None:
    clock = Clock(GossipConfig.preset("lan"), 0, (0.001, 0.001))
    batch = SimBatch(clock, COEF, EngineLimits(2, 1200, 6000))
    seqs = [Seq(100, 10, lambda _: None, lambda *_: None) for _ in range(3)]
    assert [batch.submit(s) for s in seqs] == [True, True, False]
    clock.run_until(5.0)
    assert batch.in_flight == 0 and batch.kv_used == 0 and batch.submit(seqs[2])


def test_requests_submitted_at_one_instant_share_the_first_step() -> None:
    # The waiters of a model that has just loaded reach its instance together: the engine's
    # step loop (its own task) wakes after all of them, so one prefill step serves them all,
    # as the emulator does (validation: a cold start's SERVE_LOADING requests got their first
    # token at once on the real engine, one step later each on the simulated one).
    together = [(0.5, 219, 20), (0.5, 600, 10), (0.5, 190, 5), (0.7, 300, 3)]  # within the prefill budget
    want, got = reference(together), simulated(together)
    assert got[0][0] == got[1][0] == got[2][0]
    for i in want:
        assert got[i] == pytest.approx(want[i], abs=1e-9), i
