"""The step-time model: how long one forward pass of a continuous batch takes.

One step runs the prefill of the requests admitted this step together with one decode
token of every request already running (a mixed step, as TGI v3 does with chunked
prefill).  Its duration, in seconds, is

    t_step = α + β·N_prefill_tokens + γ·Σ prefill_len² + δ·Σ context_len(decoding) + ε·B_decode

(DistServe simdistserve/estimators/time_estimator.py: its prefill and decode closed forms merged into one step; the
coefficients per model × GPU live in the profiles).  α is the memory-bound floor of
reading the weights once, β the compute cost of a prefill token, γ prefill attention,
δ reading one token of KV cache, ε the per-sequence cost of a decode slot.

The engine calls `step_seconds` for every step it sleeps; the benchmark and the node
agent call the closed forms below to predict what a client should observe.
"""

from __future__ import annotations

from collections.abc import Iterable

from daemons.profiles import LatencyCoefficients


def step_seconds(
    c: LatencyCoefficients, prefill_lens: Iterable[int], decode_contexts: Iterable[int]
) -> float:
    """Duration of one step that prefills `prefill_lens` and decodes at `decode_contexts`."""
    n_prefill = 0
    sum_sq = 0
    for n in prefill_lens:
        n_prefill += n
        sum_sq += n * n
    n_decode = 0
    sum_ctx = 0
    for ctx in decode_contexts:
        n_decode += 1
        sum_ctx += ctx
    return step_seconds_from_sums(c, n_prefill, sum_sq, sum_ctx, n_decode)


def step_seconds_from_sums(
    c: LatencyCoefficients, n_prefill: int, sum_prefill_sq: int, sum_context: int, n_decode: int
) -> float:
    """`step_seconds` from the four sums the formula needs (the engine's hot path)."""
    return (
        c.alpha
        + c.beta * n_prefill
        + c.gamma * sum_prefill_sq
        + c.delta * sum_context
        + c.epsilon * n_decode
    )


def ttft_seconds(c: LatencyCoefficients, batch: int, prompt_tokens: int) -> float:
    """Time to first token of `batch` prompts prefilled together in one step, no queueing.

    The prefill step yields each request's first token, so TTFT is that step's length.
    """
    return step_seconds(c, [prompt_tokens] * batch, ())


def tpot_seconds(c: LatencyCoefficients, batch: int, context_tokens: int) -> float:
    """Time per output token: one decode step of `batch` requests at `context_tokens` each."""
    return step_seconds_from_sums(c, 0, 0, batch * context_tokens, batch)


def mean_tpot_seconds(c: LatencyCoefficients, batch: int, prompt_tokens: int, new_tokens: int) -> float:
    """Mean time per output token after the first, for `batch` requests decoding in lockstep.

    Token k (k ≥ 2) is produced by a decode step whose context is prompt + k − 1 tokens,
    so the context grows by one per step; this averages the steps for tokens 2..new_tokens.
    """
    if new_tokens < 2:
        return 0.0
    steps = [tpot_seconds(c, batch, prompt_tokens + k - 1) for k in range(2, new_tokens + 1)]
    return sum(steps) / len(steps)


def e2e_seconds(c: LatencyCoefficients, batch: int, prompt_tokens: int, new_tokens: int) -> float:
    """End-to-end latency of `batch` identical requests admitted together: TTFT + (n − 1) steps."""
    ttft = ttft_seconds(c, batch, prompt_tokens)
    return ttft + mean_tpot_seconds(c, batch, prompt_tokens, new_tokens) * max(new_tokens - 1, 0)
