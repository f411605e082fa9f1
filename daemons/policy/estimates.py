"""Learned affinity: what each node has observed of each model, and the TTFT it predicts.

Every node keeps, per model, exponentially weighted moving averages (EWMA) of its own
observations: the warm time to first token (TTFT less the wait for a load or a slot, so
it measures this GPU's prefill for that model and not our scheduling), the time per output
token (TPOT) and the load time. It publishes them with its state (`NodeState.estimates`,
which gossip peers receive in the node's record), and `--affinity learned` ranks the
candidates of a request by the TTFT predicted from them instead of by static scores
(`learned.py`). This is the prototype's "track which workers perform best with which
models" (future enhancement 3), measured rather than configured: a slower GPU shows up
as a larger TTFT there after its first few requests, whatever the profiles say.

Why an EWMA: one number and one weight per figure (constant memory and work per
observation), it follows a node whose speed drifts (thermal throttling, a noisy neighbour)
and it forgets a cold outlier geometrically. ALPHA = 0.3 weighs the last ~5 observations
(the mean age of an EWMA's weight is (1 - α)/α ≈ 2.3 samples), fast enough to learn a
node in a few requests, slow enough that one outlier moves it by under a third. The first
observation sets the average (no bias towards a zero start).

Pure and clock-free: the node agent feeds it observations, the simulator can too.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, replace

ALPHA = 0.3


@dataclass(frozen=True, slots=True)
class Estimate:
    """One node's running averages for one model; a count of 0 means "never observed"."""

    ttft_s: float = 0.0  # warm: first token less the wait for a load or a slot
    tpot_s: float = 0.0  # seconds per output token after the first
    load_s: float = 0.0  # seconds from launch to ready
    requests: int = 0  # observations behind ttft_s
    tpots: int = 0  # observations behind tpot_s (requests of 2+ tokens)
    loads: int = 0  # observations behind load_s


def ewma(average: float, sample: float, seen: int, alpha: float = ALPHA) -> float:
    """The average after one more `sample`; the first sample (`seen` == 0) sets it."""
    if seen <= 0:
        return sample
    return average + alpha * (sample - average)


def observe_request(est: Estimate, ttft_s: float, tpot_s: float | None, alpha: float = ALPHA) -> Estimate:
    """`est` after one served request: its warm TTFT and, if it made 2+ tokens, its TPOT.

    Nonsense figures (negative, NaN, infinite) are ignored rather than poisoning the average."""
    if not _sane(ttft_s):
        return est
    est = replace(est, ttft_s=ewma(est.ttft_s, ttft_s, est.requests, alpha), requests=est.requests + 1)
    if tpot_s is None or not _sane(tpot_s):
        return est
    return replace(est, tpot_s=ewma(est.tpot_s, tpot_s, est.tpots, alpha), tpots=est.tpots + 1)


def observe_load(est: Estimate, load_s: float, alpha: float = ALPHA) -> Estimate:
    """`est` after one completed load of the model that took `load_s` seconds."""
    if not _sane(load_s):
        return est
    return replace(est, load_s=ewma(est.load_s, load_s, est.loads, alpha), loads=est.loads + 1)


def request_figures(timings: Mapping[str, float], tokens: int) -> tuple[float, float | None] | None:
    """(warm TTFT, TPOT or None) from a node's `Done.timings`, or None without a TTFT.

    `load_wait_s` is the wait for the model's instance and a slot; `ttft_s` and `total_s`
    count from the same start, so their differences are this GPU's own figures."""
    ttft = timings.get("ttft_s")
    if ttft is None:
        return None
    warm = ttft - timings.get("load_wait_s", 0.0)
    total = timings.get("total_s")
    tpot = (total - ttft) / (tokens - 1) if total is not None and tokens > 1 else None
    return max(0.0, warm), tpot


def _sane(x: float) -> bool:
    return math.isfinite(x) and x >= 0.0


__all__ = ["ALPHA", "Estimate", "ewma", "observe_load", "observe_request", "request_figures"]
